//! Retries end to end: calls against a server process that restarts on the same port succeed
//! after jittered backoff; without retries they fail with UNAVAILABLE. `Increment`, `Add` and a
//! `Set` with a lease token are retried only when they cannot have reached the server (a
//! repeat would count twice, or answer `stored = false` for a write that was made): never
//! once sent, even when the answer is lost on the way back. While a server is down its port is
//! held by a stand-in that counts connection attempts, so the tests see the retries instead of
//! timing them.

mod harness;

use std::time::Duration;

use harness::{ClosedDoor, Memcached, ServerProcess, wait_until};
use mintcache_client::{Backoff, Client, Outcome, SetOptions};
use tonic::Code;

fn client(port: u16, retry: Backoff) -> Client {
    Client::builder()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .version("client-retry")
        .timeout(Duration::from_secs(30))
        .retry(retry)
        .build()
        .expect("build")
}

/// Patient enough to outlast a restart: up to 40 attempts, 50 ms to 250 ms apart.
const PATIENT: Backoff = Backoff {
    max_attempts: 40,
    initial: Duration::from_millis(50),
    max: Duration::from_millis(250),
};

/// Holds the port of a stopped server until a client has tried it, then restarts the server
/// there, off the async runtime.
fn restart_once_tried(
    port: u16,
    env: Vec<(&'static str, String)>,
) -> std::thread::JoinHandle<ServerProcess> {
    let door = ClosedDoor::on(port);
    std::thread::spawn(move || {
        wait_until(
            "a client to try the stopped server",
            || door.knocks() >= 1,
            String::new,
        );
        door.open();
        ServerProcess::start_on(port, &env)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_ride_out_a_server_restart() {
    let mc = Memcached::start();
    let env = vec![("MINTCACHE_MEMCACHED__SERVERS", mc.addr())];
    let mut server = ServerProcess::start(&env);
    let port = server.addr.port();
    let patient = client(port, PATIENT);
    let impatient = client(port, Backoff::NONE);
    assert!(
        patient
            .set("k", "v", Duration::from_secs(60))
            .await
            .expect("set")
    );

    // The same connection, then the server goes away.
    server.stop();
    let e = impatient.get("k").await.expect_err("server is down");
    assert_eq!(e.code(), Some(Code::Unavailable), "{e}");

    let restarted = restart_once_tried(port, env.clone());
    let read = patient
        .get("k")
        .await
        .expect("retried until the server was back");
    assert_eq!(
        (read.outcome, read.value.as_slice()),
        (Outcome::Hit, &b"v"[..])
    );
    let mut server = restarted.join().expect("restart");

    // Writes are retried too, and reconnect the same way.
    server.stop();
    let restarted = restart_once_tried(port, env);
    assert!(patient.delete("k").await.expect("retried delete"));
    let _server = restarted.join().expect("restart");
    assert_eq!(
        impatient.get("k").await.expect("get").outcome,
        Outcome::Miss
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_are_not_retried_once_sent() {
    let mc = Memcached::start();
    let env = vec![("MINTCACHE_MEMCACHED__SERVERS", mc.addr())];
    let mut server = ServerProcess::start(&env);
    let port = server.addr.port();
    let patient = client(port, PATIENT);
    assert_eq!(
        patient
            .increment_or_create("n", 1, 10, Duration::from_secs(60))
            .await
            .expect("create"),
        10
    );

    server.stop();
    let door = ClosedDoor::on(port);
    // A retrying client would try again (and again: it may make 40 attempts); Increment
    // fails at the first, whether its client had a connection (now broken) or makes one: the
    // stand-in accepts the connection, so the request may have been sent.
    let e = patient.increment("n", 1).await.expect_err("not retried");
    assert_eq!(e.code(), Some(Code::Unavailable), "{e}");
    let before = door.knocks();
    assert!(before <= 1, "{before} attempts");
    let fresh = client(port, PATIENT);
    let e = fresh.increment("n", 1).await.expect_err("not retried");
    assert_eq!(e.code(), Some(Code::Unavailable), "{e}");
    assert_eq!(door.open() - before, 1, "exactly one attempt");
    let _server = ServerProcess::start_on(port, &env);
    // Idempotent calls on the same client reconnect; the counter was not touched.
    assert_eq!(patient.increment("n", 0).await.expect("incr"), Some(10));
}

/// A TCP proxy in front of a server, for losing answers on the way: it passes bytes both ways
/// until [`swallow`](LossyProxy::swallow), from when on it drops what the server sends; then
/// [`cut`](LossyProxy::cut) closes every connection it carries (and it passes everything
/// again, for the connections that follow). A client then sees its call fail after the server
/// has done it.
struct LossyProxy {
    addr: std::net::SocketAddr,
    swallowing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let swallowing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let task = {
            let swallowing = swallowing.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let swallowing = swallowing.clone();
                    let mut cuts = cuts.clone();
                    cuts.mark_unchanged();
                    // What the server sends after this connection's cut is lost too, even
                    // when it arrives before the connection is closed.
                    let born = *cuts.borrow();
                    let alive = cuts.clone();
                    tokio::spawn(async move {
                        let (mut client_read, mut client_write) = client.into_split();
                        let (mut server_read, mut server_write) = server.into_split();
                        let up = async {
                            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                        };
                        let down = async {
                            let mut buf = vec![0u8; 64 * 1024];
                            loop {
                                let n = match server_read.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => n,
                                };
                                if *alive.borrow() != born {
                                    return;
                                }
                                if swallowing.load(Ordering::SeqCst) {
                                    continue;
                                }
                                if client_write.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        };
                        tokio::select! {
                            () = up => {}
                            () = down => {}
                            _ = cuts.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr,
            swallowing,
            cut,
            task,
        }
    }

    /// From now on, what the server sends is lost.
    fn swallow(&self) {
        self.swallowing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes every connection carried so far, losing what their server still sends; later
    /// ones pass everything.
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
        self.swallowing
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `Add` and a `Set` with a lease token are not retried once they may have reached the
/// server: a retry would report `stored = false` for a write that the first attempt made (a
/// caller using `Add` as a lock would be told it lost when it won). The caller gets the
/// `UNAVAILABLE` instead, and knows the outcome is unknown. The server does each write, and its
/// answer is lost on the way back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_whose_retry_would_change_the_answer_are_not_retried_once_sent() {
    let mc = Memcached::start();
    let env = vec![("MINTCACHE_MEMCACHED__SERVERS", mc.addr())];
    let server = ServerProcess::start(&env);
    let proxy = LossyProxy::start(server.addr).await;
    let patient = client(proxy.addr.port(), PATIENT);
    let ttl = Duration::from_secs(60);
    assert_eq!(
        patient.get("lock").await.expect("get").outcome,
        Outcome::Miss
    );

    // Add as a lock: the server stores it, the answer is lost.
    let items = mc.curr_items();
    proxy.swallow();
    let add = {
        let patient = patient.clone();
        tokio::spawn(async move { patient.add("lock", "mine", &SetOptions::ttl(ttl)).await })
    };
    wait_until(
        "the Add to reach memcached",
        || mc.curr_items() > items,
        String::new,
    );
    proxy.cut();
    let e = add
        .await
        .expect("task")
        .expect_err("not retried: a retry would answer stored = false");
    assert_eq!(e.code(), Some(Code::Unavailable), "{e}");
    let lock = patient.get("lock").await.expect("get");
    assert_eq!(
        (lock.outcome, lock.value.as_slice()),
        (Outcome::Hit, &b"mine"[..])
    );

    // A Set with the lease of a miss: the same.
    let miss = patient.get("computed").await.expect("get");
    assert_eq!(miss.outcome, Outcome::Miss);
    let lease = miss.lease.expect("a miss carries a lease");
    let items = mc.curr_items();
    proxy.swallow();
    let set = {
        let patient = patient.clone();
        tokio::spawn(async move {
            patient
                .set_with(
                    "computed",
                    "v1",
                    &SetOptions {
                        lease: Some(lease),
                        ..SetOptions::ttl(ttl)
                    },
                )
                .await
        })
    };
    wait_until(
        "the Set to reach memcached",
        || mc.curr_items() > items,
        String::new,
    );
    proxy.cut();
    let e = set
        .await
        .expect("task")
        .expect_err("not retried: a retry would answer stored = false");
    assert_eq!(e.code(), Some(Code::Unavailable), "{e}");
    let computed = patient.get("computed").await.expect("get");
    assert_eq!(
        (computed.outcome, computed.value.as_slice()),
        (Outcome::Hit, &b"v1"[..])
    );

    // A plain Set is retried as before: repeating it changes nothing.
    let items = mc.curr_items();
    proxy.swallow();
    let set = {
        let patient = patient.clone();
        tokio::spawn(async move { patient.set("plain", "v", ttl).await })
    };
    wait_until(
        "the Set to reach memcached",
        || mc.curr_items() > items,
        String::new,
    );
    proxy.cut();
    assert!(
        set.await
            .expect("task")
            .expect("retried after the lost answer")
    );
}

/// The same writes are retried when the request cannot have reached the server: here the
/// client cannot even set up its (TLS) connection while the server is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_retried_when_they_cannot_have_been_sent() {
    let mc = Memcached::start();
    let pki = harness::pki::Pki::new();
    let cert = pki.issue(&["localhost"], "mintcache server");
    let env = vec![
        ("MINTCACHE_MEMCACHED__SERVERS", mc.addr()),
        (
            "MINTCACHE_TLS__CERT",
            pki.write("server.pem", &cert.cert).display().to_string(),
        ),
        (
            "MINTCACHE_TLS__KEY",
            pki.write("server.key", &cert.key).display().to_string(),
        ),
    ];
    let mut server = ServerProcess::start(&env);
    let port = server.addr.port();
    let tls_client = || {
        Client::builder()
            .endpoint(format!("https://localhost:{port}"))
            .tls(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(pki.ca_pem()))
                    .domain_name("localhost"),
            )
            .version("client-retry")
            .timeout(Duration::from_secs(30))
            .retry(PATIENT)
            .build()
            .expect("build")
    };
    let ttl = Duration::from_secs(60);
    assert!(
        tls_client()
            .add("first", "v", &SetOptions::ttl(ttl))
            .await
            .expect("add")
    );
    server.stop();
    // A fresh client's first attempt fails in its TLS handshake, with the port's stand-in.
    let restarted = restart_once_tried(port, env.clone());
    let fresh = tls_client();
    assert!(
        fresh
            .add("second", "v", &SetOptions::ttl(ttl))
            .await
            .expect("retried until the server was back"),
        "stored by the attempt that reached the server"
    );
    let mut server = restarted.join().expect("restart");
    server.stop();
    let restarted = restart_once_tried(port, env);
    let fresh = tls_client();
    assert_eq!(
        fresh
            .increment_or_create("n", 1, 10, ttl)
            .await
            .expect("retried until the server was back"),
        10
    );
    let _server = restarted.join().expect("restart");
}
