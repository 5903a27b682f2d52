//! Retries end to end: calls against a server process that restarts on the same port succeed
//! after jittered backoff; without retries they fail with UNAVAILABLE; `Increment` is never
//! retried (it would count twice if an attempt had reached the server). While a server is
//! down its port is held by a stand-in that counts connection attempts, so the tests see the
//! retries instead of timing them.

mod harness;

use std::time::Duration;

use harness::{ClosedDoor, Memcached, ServerProcess, wait_until};
use mintcache_client::{Backoff, Client, Outcome};
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
async fn increments_are_never_retried() {
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
    // fails at the first, whether its client had a connection (now broken) or makes one.
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
