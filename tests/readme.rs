//! The documentation's snippets (README.md, docs/CLI.md, docs/DEPLOYMENT.md), run as written
//! against live servers, so that the documentation and the binaries cannot drift apart. Each
//! tested snippet follows a `<!-- readme-test: NAME -->` marker:
//!
//! - `console` blocks: every `$ ` line runs under a pseudo-terminal (`script`), after the
//!   block's `export` lines, against one fresh server, and what follows the line in the README
//!   must be what it printed, as a terminal shows it. Allowed differences: durations (`1m` vs
//!   `59s`) and seconds fields, which count down while the test runs, and lease tokens, which
//!   the server picks (a token the README shows is replaced by the real one in the commands
//!   that follow);
//! - the Python quick start: the stub generation commands, then the program;
//! - the CLI's variables table, against `mintcache --help`;
//! - the Helm installs, rendered with the chart.
//!
//! And every relative link between the project's Markdown files leads to a file, and to a
//! heading of it when it names one.
//!
//! `127.0.0.1:50051` in a snippet is replaced by the address of the test's server. Needs
//! `script` (util-linux), and grpcurl and grpcio-tools from `scripts/install-test-deps.sh`;
//! fails, never skips, without them.

mod harness;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use harness::ServerProcess;
use regex::Regex;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A documentation file of the repository and its text.
struct Doc {
    path: &'static str,
    text: String,
}

impl Doc {
    fn read(path: &'static str) -> Self {
        let text =
            std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        Self { path, text }
    }

    /// The fenced block (or table) after `<!-- readme-test: NAME -->`.
    fn block(&self, name: &str) -> String {
        let marker = format!("<!-- readme-test: {name} -->\n");
        let start = self
            .text
            .find(&marker)
            .unwrap_or_else(|| panic!("no {marker:?} in {}", self.path))
            + marker.len();
        let rest = &self.text[start..];
        if rest.starts_with('|') {
            // A table: up to the first blank line.
            return rest.split("\n\n").next().unwrap_or_default().to_owned();
        }
        let body = rest
            .strip_prefix("```")
            .and_then(|b| b.split_once('\n'))
            .map(|(_, body)| body)
            .unwrap_or_else(|| panic!("{marker:?} is not followed by a fenced block"));
        body.split("\n```").next().unwrap_or_default().to_owned()
    }

    /// The text between two markers.
    fn section(&self, from: &str, to: &str) -> &str {
        let start = self
            .text
            .find(from)
            .unwrap_or_else(|| panic!("no {from:?} in {}", self.path));
        let end = self.text[start..]
            .find(to)
            .map(|i| start + i)
            .unwrap_or_else(|| panic!("no {to:?} after {from:?} in {}", self.path));
        &self.text[start..end]
    }
}

fn readme() -> Doc {
    Doc::read("README.md")
}

/// The `mintcache` binary (built by `cargo test --workspace`; built here otherwise).
fn cli_binary() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_mintcache-server"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let binary = dir.join("mintcache");
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "build",
            "--quiet",
            "-p",
            "mintcache-cli",
            "--bin",
            "mintcache",
        ])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build -p mintcache-cli failed");
    assert!(binary.exists(), "{} was not built", binary.display());
    binary
}

fn tools_path() -> String {
    let bin = cli_binary();
    let venv = root().join("target/tools/venv/bin");
    format!(
        "{}:{}:{}",
        bin.parent().expect("dir").display(),
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A command of a console block and the lines it should print.
struct Step {
    command: String,
    expected: Vec<String>,
}

fn steps(console: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in console.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_owned(),
                expected: Vec::new(),
            });
        } else {
            steps
                .last_mut()
                .expect("a console block starts with a `$ ` line")
                .expected
                .push(line.to_owned());
        }
    }
    steps
}

/// Runs one command on a pseudo-terminal after the session's setup lines (`export ...`):
/// what it printed, stdout and stderr interleaved as a terminal shows them.
fn run_on_terminal(
    setup: &[String],
    command: &str,
    addr: &str,
    path: &str,
    home: &Path,
) -> Vec<String> {
    let mut script = String::new();
    for line in setup {
        script.push_str(&line.replace("127.0.0.1:50051", addr));
        script.push('\n');
    }
    script.push_str("printf '@@start@@\\n'\n");
    script.push_str(&command.replace("127.0.0.1:50051", addr));
    script.push_str("\nprintf '@@end@@\\n'\n");
    let file = home.join("step.sh");
    std::fs::write(&file, script).expect("write script");
    let out = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("bash {}", file.display()))
        .arg("/dev/null")
        .current_dir(root())
        .env("PATH", path)
        .env("HOME", home)
        .env("TERM", "dumb")
        .env("MINTCACHECLI_ENDPOINT", addr)
        .stdin(Stdio::null())
        .output()
        .expect("run `script` (util-linux): install it (apt-get install util-linux)");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let body = text
        .split_once("@@start@@\n")
        .and_then(|(_, rest)| rest.split_once("@@end@@"))
        .map(|(body, _)| body)
        .unwrap_or_else(|| panic!("`{command}` did not finish:\n{text}"));
    body.lines().map(str::to_owned).collect()
}

/// A line with what may differ between runs masked: seconds fields (they count down),
/// durations (`1m` vs `59s`), lease tokens (the server picks them); and the tokens found.
fn masked(line: &str) -> (String, Vec<String>) {
    let seconds = Regex::new(r#"(?i)(seconds"?\s*:\s*"?)\d+"#).expect("regex");
    let duration = Regex::new(r"\b(?:\d+[dhms])+\b").expect("regex");
    let hex = Regex::new(r"\b[0-9a-f]{16,}\b").expect("regex");
    // grpcurl shows `bytes` in base64: a lease token there is the field's whole value.
    let json_lease = Regex::new(r#""leaseToken": "[A-Za-z0-9+/=]+""#).expect("regex");
    let tokens = hex.find_iter(line).map(|m| m.as_str().to_owned()).collect();
    let line = hex.replace_all(line, "<token>");
    let line = json_lease.replace_all(&line, r#""leaseToken": "<token>""#);
    let line = seconds.replace_all(&line, "${1}<n>");
    let line = duration.replace_all(&line, "<duration>");
    (line.into_owned(), tokens)
}

/// Whether a README line matches a printed one; learns README token -> real token.
fn same_line(expected: &str, actual: &str, leases: &mut Vec<(String, String)>) -> bool {
    let ((e, e_tokens), (a, a_tokens)) = (masked(expected), masked(actual));
    if e != a {
        return false;
    }
    leases.extend(e_tokens.into_iter().zip(a_tokens).filter(|(e, a)| e != a));
    true
}

/// Runs a console block step by step against a fresh server and compares every output.
fn check_console(doc: &Doc, name: &str) {
    let steps = steps(&doc.block(name));
    assert!(!steps.is_empty(), "{name}: no steps");
    let home = tempfile::tempdir().expect("tempdir");
    let path = tools_path();
    let server = ServerProcess::start(&[]);
    let addr = server.addr.to_string();
    let is_setup = Regex::new(r"^(export [A-Z_]+=|[A-Z_]+=)").expect("regex");
    let mut setup: Vec<String> = Vec::new();
    let mut leases: Vec<(String, String)> = Vec::new();
    let mut mismatches = Vec::new();
    for step in steps {
        let mut command = step.command.clone();
        for (from, to) in &leases {
            command = command.replace(from.as_str(), to.as_str());
        }
        if is_setup.is_match(&command) && step.expected.is_empty() {
            setup.push(command);
            continue;
        }
        let actual = run_on_terminal(&setup, &command, &addr, &path, home.path());
        let ok = step.expected.len() == actual.len()
            && step
                .expected
                .iter()
                .zip(&actual)
                .all(|(e, a)| same_line(e, a, &mut leases));
        if !ok {
            mismatches.push(format!(
                "$ {command}\n  {}:\n    {}\n  printed:\n    {}",
                doc.path,
                step.expected.join("\n    "),
                actual.join("\n    ")
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} block `{name}` differs from what its commands print:\n{}",
        doc.path,
        mismatches.join("\n")
    );
}

#[test]
fn the_quick_start_cli_session_prints_what_the_readme_shows() {
    check_console(&readme(), "cli-first-get");
}

#[test]
fn the_readme_cli_example_prints_what_it_shows() {
    check_console(&readme(), "cli-example");
}

#[test]
fn the_cli_reference_session_prints_what_it_shows() {
    check_console(&Doc::read("docs/CLI.md"), "cli");
}

#[test]
fn the_grpcurl_session_prints_what_the_readme_shows() {
    check_console(&readme(), "grpcurl");
}

#[test]
fn the_python_quick_start_works_as_written() {
    let readme = readme();
    let generate = readme.block("python-generate");
    let program = readme.block("python-first-get");
    let expected = Regex::new(r"It prints `([^`]+)`")
        .expect("regex")
        .captures(
            &readme.text[readme
                .text
                .find("<!-- readme-test: python-first-get -->")
                .expect("marker")..],
        )
        .map(|c| c[1].to_owned())
        .expect("the README says what the program prints");

    // A fresh folder with the repository's proto/, as after a clone.
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&root().join("proto"), &dir.path().join("proto"));
    let path = tools_path();
    let out = Command::new("bash")
        .args(["-euc", &generate])
        .current_dir(dir.path())
        .env("PATH", &path)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "the README's generation commands failed (grpcio-tools: scripts/install-test-deps.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = ServerProcess::start(&[]);
    let program = program.replace("127.0.0.1:50051", &server.addr.to_string());
    std::fs::write(dir.path().join("first_get.py"), program).expect("write");
    let out = Command::new("python")
        .arg("first_get.py")
        .current_dir(dir.path())
        .env("PATH", &path)
        .env("PYTHONPATH", "gen")
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "first_get.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), expected);
}

#[test]
fn the_variables_table_lists_every_global_flag() {
    let table = Doc::read("docs/CLI.md").block("cli-variables");
    let flag = Regex::new(r"`(--[a-z-]+)`").expect("regex");
    let var = Regex::new(r"`(MINTCACHECLI_[A-Z_]+)`").expect("regex");
    let documented: BTreeSet<(String, String)> = table
        .lines()
        .skip(2)
        .filter_map(|row| {
            let cells: Vec<&str> = row.split(" | ").collect();
            let f = flag.captures_iter(cells.first()?).last()?[1].to_owned();
            let v = var.captures(cells.get(1)?)?[1].to_owned();
            Some((f, v))
        })
        .collect();
    let help = Command::new(cli_binary())
        .arg("--help")
        .env_clear()
        .output()
        .expect("mintcache --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    // clap prints each option's variable under it: `--flag ...` then `[env: VAR=]`.
    let option = Regex::new(r"^\s+(?:-\w, )?(--[a-z-]+)").expect("regex");
    let env = Regex::new(r"\[env: (MINTCACHECLI_[A-Z_]+)").expect("regex");
    let mut shown = BTreeSet::new();
    let mut current = None;
    for line in help.lines() {
        if let Some(c) = option.captures(line) {
            current = Some(c[1].to_owned());
        } else if let (Some(c), Some(flag)) = (env.captures(line), &current) {
            shown.insert((flag.clone(), c[1].to_owned()));
        }
    }
    assert!(shown.len() >= 15, "{shown:?}\n{help}");
    assert_eq!(
        documented, shown,
        "docs/CLI.md's table vs `mintcache --help`"
    );
}

#[test]
fn the_quick_start_builds_the_server_and_the_cli_in_one_command() {
    let readme = readme();
    let build = readme.block("quick-start-build");
    let cargo: Vec<&str> = build
        .lines()
        .filter(|l| l.trim_start().starts_with("cargo "))
        .collect();
    assert_eq!(cargo.len(), 1, "one cargo command:\n{build}");
    assert!(
        cargo[0].starts_with("cargo build --release "),
        "{}",
        cargo[0]
    );
    assert!(
        build.contains("export PATH=\"$PWD/target/release:$PATH\""),
        "{build}"
    );
    // No other build until the first Get: a second `cargo` would only wait on the first
    // one's lock (and run one more build).
    let steps = readme.section("## Quick start", "<!-- readme-test: cli-first-get -->");
    let commands = steps.matches("\ncargo ").count() + steps.matches("\n$ cargo ").count();
    assert_eq!(commands, 1, "cargo commands before the first Get:\n{steps}");
    // The command, as written but in the test's (debug) profile, builds both binaries.
    let args: Vec<&str> = cargo[0]
        .split_whitespace()
        .skip(1)
        .filter(|a| *a != "--release")
        .collect();
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(&args)
        .arg("--message-format=json")
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(out.status.success(), "`{}` failed", cargo[0]);
    let executables: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["executable"].as_str().map(str::to_owned))
        .filter_map(|p| {
            Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .collect();
    for binary in ["mintcache-server", "mintcache"] {
        assert!(
            executables.contains(binary),
            "{binary} not built by `{}`: {executables:?}",
            cargo[0]
        );
    }
    // The quick start's Python stubs stay out of git.
    let gitignore = std::fs::read_to_string(root().join(".gitignore")).expect(".gitignore");
    assert!(gitignore.lines().any(|l| l == "/gen/"), "{gitignore}");
    assert!(
        readme.block("python-generate").contains("--python_out=gen"),
        "the folder .gitignore names"
    );
}

#[test]
fn the_local_cluster_ports_are_documented_as_the_script_reads_them() {
    let readme = readme();
    let example = readme.block("local-cluster-ports");
    let variables: BTreeSet<&str> = example
        .split_whitespace()
        .filter_map(|w| w.split_once('=').map(|(name, _)| name))
        .collect();
    assert_eq!(
        variables,
        BTreeSet::from(["MEMCACHED_PORT", "MINTCACHE_PORT"]),
        "{example}"
    );
    let script = std::fs::read_to_string(root().join("examples/local-cluster.sh")).expect("script");
    let default = |name: &str| -> u16 {
        let pattern = Regex::new(&format!(r#"{name}="\$\{{{name}:-(\d+)\}}""#)).expect("regex");
        pattern
            .captures(&script)
            .unwrap_or_else(|| panic!("{name} with a default in the script"))[1]
            .parse()
            .expect("port")
    };
    let (memcached, mintcache) = (default("MEMCACHED_PORT"), default("MINTCACHE_PORT"));
    let quick_start = readme.section(
        "**6. Next: a cluster",
        "<!-- readme-test: local-cluster-ports",
    );
    for range in [
        format!("{memcached}–{}", memcached + 2),
        format!("{mintcache}–{}", mintcache + 3),
    ] {
        assert!(quick_start.contains(&range), "{range} in:\n{quick_start}");
    }
    // And the script says so itself.
    let help = Command::new("bash")
        .arg(root().join("examples/local-cluster.sh"))
        .arg("--help")
        .output()
        .expect("bash");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for name in ["MEMCACHED_PORT", "MINTCACHE_PORT"] {
        assert!(help.contains(name), "{name} in --help:\n{help}");
    }
}

#[test]
fn every_helm_install_in_the_docs_uses_an_image_of_ones_own() {
    // No public image is published: the chart's default repository is a placeholder, so an
    // install as docs/DEPLOYMENT.md writes it must name another one.
    const PLACEHOLDER: &str = "ghcr.io/mintcache/mintcache";
    let deployment = Doc::read("docs/DEPLOYMENT.md");
    let block = deployment.block("helm-install");
    let commands: Vec<String> = block
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("helm install") || l.starts_with("helm upgrade --install"))
        .map(str::to_owned)
        .collect();
    assert_eq!(commands.len(), 3, "{block}");
    let helm = root().join("target/tools/bin/helm");
    for command in commands {
        // The same release rendered: `helm template` takes the same arguments; the copy of
        // values-production.yaml the docs ask for is values-production.yaml itself.
        let args: Vec<&str> = command
            .split_whitespace()
            .skip(1)
            .filter(|a| {
                !matches!(
                    *a,
                    "install" | "upgrade" | "--install" | "--create-namespace"
                )
            })
            .map(|a| {
                if a == "my-values.yaml" {
                    "deploy/helm/mintcache/values-production.yaml"
                } else {
                    a
                }
            })
            .collect();
        let out = Command::new(&helm)
            .current_dir(root())
            .arg("template")
            .args(&args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "run {} (scripts/install-deploy-tools.sh installs it): {e}",
                    helm.display()
                )
            });
        let manifests = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`{command}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let images: Vec<&str> = manifests
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
            .map(|i| i.trim_matches('"'))
            .filter(|i| !i.starts_with("memcached"))
            .collect();
        assert!(!images.is_empty(), "`{command}` renders no image");
        for image in images {
            assert!(
                !image.starts_with(PLACEHOLDER),
                "`{command}` deploys the placeholder image {image}"
            );
        }
    }
    // And the docs say so.
    let image = deployment.section("## Container image", "## Install with Helm");
    assert!(image.contains("No public image is published"), "{image}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// GitHub's anchor of a heading: lower case, spaces to hyphens, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings (code blocks left out).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && let Some(heading) = line.strip_prefix('#') {
            found.insert(anchor(heading.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn relative_links_between_the_docs_resolve() {
    // The Python package's own files are left to its checks.
    let files = [
        "README.md",
        "client/README.md",
        "client/lib/README.md",
        "deploy/README.md",
        "deploy/helm/mintcache/README.md",
        "docs/BENCHMARKS.md",
        "docs/CLI.md",
        "docs/CONFIGURATION.md",
        "docs/CONTRIBUTING.md",
        "docs/DEPLOYMENT.md",
        "docs/OPERATIONS.md",
    ];
    let link = Regex::new(r"\]\(([^)\s]+)\)").expect("regex");
    let mut broken = Vec::new();
    for file in files {
        let doc = Doc::read(file);
        let dir = Path::new(file).parent().expect("dir");
        for target in link.captures_iter(&doc.text).map(|c| c[1].to_owned()) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if path.is_empty() {
                root().join(file)
            } else {
                root().join(dir).join(path)
            };
            if !resolved.exists() {
                broken.push(format!("{file}: {target}: no such file"));
            } else if !fragment.is_empty() && resolved.extension().is_some_and(|e| e == "md") {
                let text = std::fs::read_to_string(&resolved).expect("read");
                if !anchors(&text).contains(fragment) {
                    broken.push(format!("{file}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
