//! Test harness: real memcached processes on loopback ports, mintcache servers (in this process,
//! or the real binary as a child process) on ports they bind themselves, stand-ins for servers
//! that hang or are down, gRPC clients, and waits on observable state. memcached missing is a
//! test failure, never a skip.
#![allow(dead_code, unreachable_pub)]

pub mod calls;
pub mod cases;
pub mod pki;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener as StdListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mintcache::clock::Clock;
use mintcache::config::Config;
use mintcache_client::proto::cache_client::CacheClient;
use mintcache_client::{NAMESPACE_HEADER, VERSION_HEADER};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// memcached operation timeout of test servers: generous, so that a loaded test machine does
/// not turn reads into fail-open misses. Tests about timeouts set their own.
pub const TEST_MEMCACHED_TIMEOUT_MS: u64 = 5000;

/// How long a process gets to start answering, and a wait to see its state change: bounds on
/// waiting for something that is broken, never measures of speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// How often waits look at the state they wait for.
const POLL: Duration = Duration::from_millis(20);

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A loopback port nothing listens on right now: for tests of calling a port where nothing
/// listens, and for programs that cannot bind port 0 and report the port they got (memcached),
/// which must cope with losing it to another process, as [`Memcached::start`] does. Servers of
/// our own bind port 0 instead.
pub fn closed_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Waits (blocking) until `check` holds, failing with `what` and `describe()` after
/// [`PATIENCE`].
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool, describe: impl FnOnce() -> String) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; {}",
            describe()
        );
        std::thread::sleep(POLL);
    }
}

/// Waits until `check` resolves to true.
pub async fn wait_for<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for_or(what, check, || async { String::new() }).await;
}

/// Waits until `check` resolves to true, failing with `describe()` after [`PATIENCE`].
pub async fn wait_for_or<F, Fut, D, DFut>(what: &str, mut check: F, describe: D)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
    D: FnOnce() -> DFut,
    DFut: std::future::Future<Output = String>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}; {}", describe().await);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A memcached process on a loopback port, killed on drop.
pub struct Memcached {
    child: Option<Child>,
    /// The loopback address it listens on (`127.0.0.1` unless started with
    /// [`Memcached::start_at`]).
    pub host: String,
    pub port: u16,
}

impl Memcached {
    /// Starts `memcached` (64 MiB, TCP only, loopback) on a port nobody uses, trying another
    /// port if another process takes it first. Panics with instructions when the binary is
    /// missing: these tests must fail, not skip, without memcached.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// As [`Memcached::start`], with more command-line options (e.g. `-I 512k`).
    pub fn start_with(options: &[&str]) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(closed_port(), options) {
                Ok(memcached) => return memcached,
                Err(why) => last = why,
            }
        }
        panic!("memcached did not start on any of 5 ports; last: {last}")
    }

    /// Starts memcached on a given port (e.g. to restart one that was stopped).
    pub fn start_on(port: u16) -> Self {
        Self::try_start(port, &[]).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Starts memcached on another loopback address (`127.0.0.2`, …) and the given port: a
    /// second server with the same port, as a name that moves from one host to another sees.
    pub fn start_at(host: &str, port: u16) -> Self {
        Self::try_start_at(host, port, &[]).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Starts memcached on `port`; ready once the memcached answering there is this one.
    fn try_start(port: u16, options: &[&str]) -> Result<Self, String> {
        Self::try_start_at("127.0.0.1", port, options)
    }

    fn try_start_at(host: &str, port: u16, options: &[&str]) -> Result<Self, String> {
        let mut cmd = Command::new("memcached");
        cmd.args([
            "-l",
            host,
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
            "-t",
            "2",
        ]);
        cmd.args(options);
        if running_as_root() {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start memcached ({e}); install it (apt-get install memcached) — see docs/CONTRIBUTING.md")
            });
        let mut memcached = Self {
            child: Some(child),
            host: host.to_owned(),
            port,
        };
        let pid = memcached.child.as_ref().map(Child::id).unwrap_or_default();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(Ok(Some(status))) = memcached.child.as_mut().map(Child::try_wait) {
                memcached.child = None;
                return Err(format!("memcached on port {port} exited: {status}"));
            }
            // Someone else's memcached may hold the port: only ours reports our pid.
            if memcached.try_stats().and_then(|s| s.get("pid").cloned()) == Some(pid.to_string()) {
                return Ok(memcached);
            }
            if Instant::now() >= deadline {
                return Err(format!("memcached did not answer on port {port}"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// `HOST:PORT` (`127.0.0.1:PORT` unless started with [`Memcached::start_at`]).
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn try_stats(&self) -> Option<HashMap<String, String>> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port)).ok()?;
        stream.set_read_timeout(Some(PATIENCE)).ok()?;
        stream.write_all(b"stats\r\n").ok()?;
        let mut stats = HashMap::new();
        for line in BufReader::new(stream).lines() {
            let line = line.ok()?;
            if line == "END" {
                return Some(stats);
            }
            let mut parts = line.splitn(3, ' ');
            if let (Some("STAT"), Some(k), Some(v)) = (parts.next(), parts.next(), parts.next()) {
                stats.insert(k.to_owned(), v.to_owned());
            }
        }
        None
    }

    /// The output of memcached's `stats` command.
    pub fn stats(&self) -> HashMap<String, String> {
        self.try_stats().expect("memcached answers stats")
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
            TcpStream::connect((self.host.as_str(), self.port)).expect("connect to memcached");
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("memcached is running")
    }

    /// Sends a signal to the process (`STOP` hangs it, `CONT` resumes it).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} memcached");
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

/// A memcached stand-in that accepts connections and never answers: a hung server. The
/// connections it holds close when it is [released](HungNode::release), which fails the
/// operations waiting on them at once: tests end a slow call when they choose, not when a
/// timer says.
pub struct HungNode {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl HungNode {
    pub fn start() -> Self {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (held, stopping) = (held.clone(), stopping.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        held.lock().expect("lock").push(stream);
                    }
                }
            })
        };
        Self {
            addr,
            held,
            stopping,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Closes every connection held so far (later ones hang again).
    pub fn release(&self) {
        for stream in self.held.lock().expect("lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for HungNode {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees it must stop.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.release();
    }
}

/// A server that is not memcached: it answers every line it receives with an HTTP error, as a
/// web server would, and keeps the connection open. Stops on drop.
pub struct NotMemcached {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl NotMemcached {
    pub fn start() -> Self {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stopping = stopping.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    // One thread per connection; it ends when the peer closes.
                    std::thread::spawn(move || {
                        let mut write = match stream.try_clone() {
                            Ok(w) => w,
                            Err(_) => return,
                        };
                        for line in BufReader::new(stream).split(b'\n') {
                            if line.is_err()
                                || write
                                    .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                                    .is_err()
                            {
                                return;
                            }
                        }
                    });
                }
            })
        };
        Self {
            addr,
            stopping,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for NotMemcached {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A port where a server was: it accepts connections and closes them at once, counting them.
/// Callers see a server that is down; the count tells how often they tried.
pub struct ClosedDoor {
    port: u16,
    knocks: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl ClosedDoor {
    /// Takes over `port` (whose server has stopped).
    pub fn on(port: u16) -> Self {
        let listener = StdListener::bind(("127.0.0.1", port)).expect("take over the port");
        let knocks = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (knocks, stopping) = (knocks.clone(), stopping.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        knocks.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                }
            })
        };
        Self {
            port,
            knocks,
            stopping,
            acceptor: Some(acceptor),
        }
    }

    /// Connections attempted so far.
    pub fn knocks(&self) -> usize {
        self.knocks.load(Ordering::SeqCst)
    }

    /// Gives the port back (for a server to start on it again); the number of knocks.
    pub fn open(mut self) -> usize {
        self.close_listener();
        self.knocks()
    }

    fn close_listener(&mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            self.stopping.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = acceptor.join();
        }
    }
}

impl Drop for ClosedDoor {
    fn drop(&mut self) {
        self.close_listener();
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

/// A mintcache server running in this process on ports it bound itself; stops on drop.
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
        Self::start_with_clock(config, Clock::System).await
    }

    /// As [`TestServer::start`], the embedded store reading the time from `clock`.
    pub async fn start_with_clock(config: Config, clock: Clock) -> Self {
        let hooks = mintcache::Hooks {
            clock,
            ..mintcache::Hooks::default()
        };
        Self::start_with(config, hooks).await
    }

    /// As [`TestServer::start`], with the given clock and resolver.
    pub async fn start_with(config: Config, hooks: mintcache::Hooks) -> Self {
        init_logs();
        let settings = config
            .validate()
            .unwrap_or_else(|e| panic!("invalid test configuration: {e}"));
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
            let shutdown = async {
                let _ = rx.await;
            };
            mintcache::run_with(settings, listeners, shutdown, hooks)
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
        if let Some(handle) = &self.handle {
            assert!(!handle.is_finished(), "the server task has ended");
        }
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

/// Connects a client. Servers started here have bound their port before anyone connects.
pub async fn connect(addr: SocketAddr) -> CacheClient<Channel> {
    CacheClient::connect(format!("http://{addr}"))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

/// The `mintcache-server` binary as a child process, on ports it binds itself and reports
/// (the `listening grpc=… admin=…` line on its stdout); its logs are captured. Killed on drop.
pub struct ServerProcess {
    child: Mutex<Child>,
    /// The gRPC address.
    pub addr: SocketAddr,
    /// The admin HTTP address.
    pub admin: SocketAddr,
    logs: Arc<Mutex<String>>,
    log_reader: Option<JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts the binary with `MINTCACHE_*` variables, on ephemeral ports.
    pub fn start(env: &[(&str, String)]) -> Self {
        Self::start_on(0, env)
    }

    /// Starts the binary with its gRPC port on `port` (e.g. to restart a server on its old
    /// address; 0 for an ephemeral one). The harness sets the listen addresses, the memcached
    /// timeout ([`TEST_MEMCACHED_TIMEOUT_MS`]) and nothing else; `env` comes on top.
    pub fn start_on(port: u16, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mintcache-server"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MINTCACHE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("MINTCACHE_ADMIN__LISTEN", "127.0.0.1:0")
            .env(
                "MINTCACHE_MEMCACHED__TIMEOUT_MS",
                TEST_MEMCACHED_TIMEOUT_MS.to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start mintcache-server");
        let logs: Arc<Mutex<String>> = Arc::default();
        let log_reader = {
            let stderr = child.stderr.take().expect("piped stderr");
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut logs = logs.lock().expect("lock");
                    logs.push_str(&line);
                    logs.push('\n');
                }
            })
        };
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep the pipe open and drained for as long as the process lives.
            for _ in lines {}
        });
        let mut process = Self {
            child: Mutex::new(child),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: SocketAddr::from(([0, 0, 0, 0], 0)),
            logs,
            log_reader: Some(log_reader),
        };
        let line = match rx.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(e) => {
                let (status, logs) = process.kill_and_logs();
                panic!("mintcache-server did not report its addresses ({e}), {status}:\n{logs}")
            }
        };
        match parse_listening(&line) {
            Some((grpc, admin)) => {
                process.addr = grpc;
                process.admin = admin;
                process
            }
            None => {
                let (status, logs) = process.kill_and_logs();
                panic!("unexpected first line {line:?} from mintcache-server, {status}:\n{logs}")
            }
        }
    }

    /// Runs the binary to completion with `args` and only the given environment (e.g.
    /// `--check-config`, or a start that must fail).
    pub fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mintcache-server"));
        cmd.env_clear().args(args).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run mintcache-server")
    }

    /// A gRPC client connected to this process (which must still be running).
    pub async fn client(&self) -> CacheClient<Channel> {
        self.assert_running();
        connect(self.addr).await
    }

    /// Panics, with the logs, if the process has exited.
    pub fn assert_running(&self) {
        let exited = self.child.lock().expect("lock").try_wait();
        if let Ok(Some(status)) = exited {
            panic!("mintcache-server exited ({status}):\n{}", self.logs());
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().expect("lock").id()
    }

    /// The process's resident memory now, in bytes (`VmRSS` of `/proc/PID/status`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status of the server");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line in kB");
        kib * 1024
    }

    /// The logs so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("lock").clone()
    }

    /// `GET http://<admin><path>`: the status code and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).await
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = self.child.lock().expect("lock").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit: its status and all its logs. Async, so that the
    /// test's own clients keep running meanwhile (a graceful shutdown waits for them to
    /// acknowledge it).
    pub async fn wait_exit(&mut self) -> (ExitStatus, String) {
        let mut status = None;
        wait_for_or(
            "mintcache-server to exit",
            || {
                status = self.child.lock().expect("lock").try_wait().expect("wait");
                std::future::ready(status.is_some())
            },
            || std::future::ready(self.logs()),
        )
        .await;
        // The reader ends at the end of stderr: every line is in.
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        (status.expect("exited"), self.logs())
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        let mut child = self.child.lock().expect("lock");
        let _ = child.kill();
        let _ = child.wait();
    }

    fn kill_and_logs(&mut self) -> (String, String) {
        let status = {
            let mut child = self.child.lock().expect("lock");
            let _ = child.kill();
            child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string())
        };
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        (status, self.logs())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("mintcache-server logs:\n{}", self.logs());
        }
    }
}

/// The addresses of a `listening grpc=ADDR admin=ADDR` line.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut grpc = None;
    let mut admin = None;
    for word in line.strip_prefix("listening ")?.split_whitespace() {
        match word.split_once('=') {
            Some(("grpc", a)) => grpc = a.parse().ok(),
            Some(("admin", a)) => admin = a.parse().ok(),
            _ => {}
        }
    }
    Some((grpc?, admin?))
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

/// The gRPC health of `service` (`""` for the server as a whole) on the server at `addr`.
pub async fn health(addr: SocketAddr, service: &str) -> i32 {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
}

/// A key of the default key space that the server puts on server `index` of `addrs`, the
/// `skip`-th such key.
pub fn key_on(addrs: &[String], index: usize, skip: usize) -> Vec<u8> {
    let servers: Vec<_> = addrs.iter().map(|a| a.parse().expect("spec")).collect();
    (0..)
        .map(|i| format!("key-{i}").into_bytes())
        .filter(|k| mintcache::testing::memcached_server_for(&servers, "", "1", k) == Some(index))
        .nth(skip)
        .expect("some key lands on every server")
}

/// The value of a Prometheus sample line starting with `prefix`, or 0.
pub fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every sample whose line starts with `prefix` and contains `containing` (a metric
/// over all its label sets).
pub fn sample_sum(metrics: &str, prefix: &str, containing: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(containing))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}
