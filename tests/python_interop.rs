//! A Python client generated from `proto/` with grpcio-tools works against the server:
//! Set/Get/Delete with version metadata, a REFRESH round with a lease token, error codes
//! (`tests/python/interop.py`). Uses `target/tools/venv/bin/python` (made by
//! `scripts/install-test-deps.sh`) when present, else `python3`; fails, never skips, when
//! grpcio-tools is missing.

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{Memcached, ServerProcess};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let venv = root().join("target/tools/venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {what} ({e}): install Python 3 and run scripts/install-test-deps.sh")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn generated_python_client_works_against_the_server() {
    let python = python();
    run(
        Command::new(&python).args(["-c", "import grpc, grpc_tools"]),
        &format!(
            "{} with grpcio and grpcio-tools (run scripts/install-test-deps.sh)",
            python.display()
        ),
    );
    let stubs = tempfile::tempdir().expect("tempdir");
    run(
        Command::new(&python)
            .current_dir(root())
            .args(["-m", "grpc_tools.protoc", "-I", "proto"])
            .arg(format!("--python_out={}", stubs.path().display()))
            .arg(format!("--grpc_python_out={}", stubs.path().display()))
            .arg("proto/mintcache/v1/cache.proto"),
        "grpc_tools.protoc",
    );
    assert!(stubs.path().join("mintcache/v1/cache_pb2_grpc.py").exists());

    let mc = Memcached::start();
    let server = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", mc.addr())]);
    let output = run(
        Command::new(&python)
            .env("PYTHONPATH", stubs.path())
            .arg(root().join("tests/python/interop.py"))
            .arg(server.addr.to_string()),
        "tests/python/interop.py",
    );
    assert!(output.ends_with("all checks passed\n"), "{output}");
    assert!(!output.contains("FAIL"), "{output}");
    assert_eq!(
        output.lines().filter(|l| l.starts_with("ok   ")).count(),
        16,
        "{output}"
    );
}
