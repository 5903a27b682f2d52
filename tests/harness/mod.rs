//! Test harness: real memcached processes on free loopback ports, mintcache servers (in-process
//! or as the real binary), and gRPC clients. memcached missing is a test failure, never a skip.
#![allow(dead_code, unreachable_pub)]

pub mod calls;
pub mod pki;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mintcache::config::Config;
use mintcache_client::proto::cache_client::CacheClient;
use mintcache_client::{NAMESPACE_HEADER, VERSION_HEADER};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// memcached operation timeout of test servers: generous, so that a loaded test machine does
/// not turn reads into fail-open misses. Tests about timeouts set their own.
pub const TEST_MEMCACHED_TIMEOUT_MS: u64 = 5000;

/// How long a process gets to start answering.
const STARTUP: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + STARTUP;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited during startup: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within {STARTUP:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A memcached process on a free port, killed on drop.
pub struct Memcached {
    child: Option<Child>,
    pub port: u16,
}

impl Memcached {
    /// Starts `memcached` (64 MiB, TCP only, loopback). Panics with instructions when the
    /// binary is missing: these tests must fail, not skip, without memcached.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts memcached on a given port (e.g. to restart one that was stopped).
    pub fn start_on(port: u16) -> Self {
        let mut cmd = Command::new("memcached");
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
            "-t",
            "2",
        ]);
        if running_as_root() {
            cmd.args(["-u", "root"]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start memcached ({e}); install it (apt-get install memcached) — see README")
            });
        wait_for_port(port, &mut child, "memcached");
        Self {
            child: Some(child),
            port,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The output of memcached's `stats` command.
    pub fn stats(&self) -> HashMap<String, String> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to memcached");
        stream.write_all(b"stats\r\n").expect("write stats");
        let mut stats = HashMap::new();
        for line in BufReader::new(stream).lines() {
            let line = line.expect("read stats");
            if line == "END" {
                break;
            }
            let mut parts = line.splitn(3, ' ');
            if let (Some("STAT"), Some(k), Some(v)) = (parts.next(), parts.next(), parts.next()) {
                stats.insert(k.to_owned(), v.to_owned());
            }
        }
        stats
    }

    /// Items currently stored, not counting the marker mintcache keeps in every server it
    /// connects to (`mintcache@instance`, which tells apart the server's restarts).
    pub fn curr_items(&self) -> u64 {
        let all: u64 = self.stats()["curr_items"]
            .parse()
            .expect("numeric curr_items");
        let marker = self
            .raw("mg mintcache@instance\r\n", "\r\n")
            .starts_with("HD");
        all - u64::from(marker)
    }

    /// Sends raw protocol text and returns the reply up to `until`.
    pub fn raw(&self, command: &str, until: &str) -> String {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to memcached");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.write_all(command.as_bytes()).expect("write");
        let mut reader = BufReader::new(stream);
        let mut out = String::new();
        while !out.ends_with(until) {
            let mut line = String::new();
            if reader.read_line(&mut line).expect("read") == 0 {
                break;
            }
            out.push_str(&line);
        }
        out
    }

    /// Kills the process.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A configuration for tests: the given memcached servers (none = embedded store).
pub fn config(memcached: &[&Memcached]) -> Config {
    let mut config = Config::default();
    config.memcached.timeout_ms = TEST_MEMCACHED_TIMEOUT_MS;
    config.memcached.servers = memcached
        .iter()
        .map(|m| m.addr().parse().expect("valid server spec"))
        .collect();
    config
}

/// Sends the server's logs to the test output (shown for failing tests).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A mintcache server running in this process on free ports; stops on drop.
pub struct TestServer {
    /// The gRPC address.
    pub addr: SocketAddr,
    /// The admin HTTP address (`/metrics`, `/healthz`, `/readyz`).
    pub admin: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Serves `config` on 127.0.0.1 with ephemeral gRPC and admin ports.
    pub async fn start(config: Config) -> Self {
        init_logs();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = grpc.local_addr().expect("local addr");
        let admin_addr = admin.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let listeners = mintcache::Listeners { grpc, admin };
            mintcache::run(config, listeners, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            addr,
            admin: admin_addr,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Asks the server to shut down and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task");
        }
    }

    /// `GET http://<admin><path>`: the status code and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).await
    }

    /// A gRPC client connected to this server.
    pub async fn client(&self) -> CacheClient<Channel> {
        connect(self.addr).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Connects a client, retrying briefly while the server starts.
pub async fn connect(addr: SocketAddr) -> CacheClient<Channel> {
    let deadline = Instant::now() + STARTUP;
    loop {
        match CacheClient::connect(format!("http://{addr}")).await {
            Ok(client) => return client,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The `mintcache-server` binary running as a child process; killed on drop.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the binary with `MINTCACHE_*` variables (the listen address is chosen here).
    pub fn start(env: &[(&str, String)]) -> Self {
        Self::start_on(free_port(), env)
    }

    /// Starts the binary listening on `port` (e.g. to restart a server on its old address).
    pub fn start_on(port: u16, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mintcache-server"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MINTCACHE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "MINTCACHE_ADMIN__LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("MINTCACHE_LOG__LEVEL", "warn")
            .env(
                "MINTCACHE_MEMCACHED__TIMEOUT_MS",
                TEST_MEMCACHED_TIMEOUT_MS.to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start mintcache-server");
        wait_for_port(port, &mut child, "mintcache-server");
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// A gRPC client connected to this process.
    pub async fn client(&self) -> CacheClient<Channel> {
        connect(self.addr).await
    }
}

impl ServerProcess {
    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wraps a message with optional version and namespace metadata.
pub fn req<T>(message: T, version: Option<&str>, namespace: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(v) = version {
        request
            .metadata_mut()
            .insert(VERSION_HEADER, v.parse().expect("ascii metadata"));
    }
    if let Some(ns) = namespace {
        request
            .metadata_mut()
            .insert(NAMESPACE_HEADER, ns.parse().expect("ascii metadata"));
    }
    request
}

/// A minimal HTTP/1.1 GET over loopback: the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to admin port");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("HTTP status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
