//! Per-call debug modes and authentication end to end, against real memcached: every mode on
//! every RPC, isolation from concurrent normal calls, and refused credentials. The tables (each
//! RPC under a mode, each refused credential) report every failing case by name.

mod harness;

use std::collections::HashMap;

use futures_util::future::join_all;
use harness::calls::{Calls, assert_hit, assert_miss};
use harness::cases::Cases;
use harness::{Memcached, ServerProcess, TestServer, config};
use mintcache::config::Config;
use mintcache_client::proto::cache_client::CacheClient;
use mintcache_client::proto::*;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use tonic::{Code, Request};

const ADMIN: &str = "admin-token-7f3a";
const CLIENT: &str = "client-token-91c2";

fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn auth_config(mc: &Memcached) -> Config {
    let mut cfg = config(&[mc]);
    cfg.auth.admin_token_sha256 = vec![sha(ADMIN)];
    cfg.auth.client_token_sha256 = vec![sha(CLIENT)];
    cfg
}

/// Wraps a message with metadata.
fn req<T>(message: T, metadata: &[(&'static str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (k, v) in metadata {
        request
            .metadata_mut()
            .append(*k, v.parse().expect("ascii metadata"));
    }
    request
}

fn admin(mode: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {ADMIN}")),
        ("x-cache-debug", mode.to_owned()),
    ]
}

/// Total of memcached's command counters: unchanged means memcached was not touched.
fn touches(mc: &Memcached) -> u64 {
    let stats: HashMap<String, String> = mc.stats();
    [
        "cmd_get",
        "cmd_set",
        "cmd_touch",
        "delete_hits",
        "delete_misses",
        "incr_hits",
        "incr_misses",
        "decr_hits",
        "decr_misses",
    ]
    .iter()
    .map(|k| stats[*k].parse::<u64>().expect("numeric stat"))
    .sum()
}

struct Debug {
    client: CacheClient<Channel>,
    md: Vec<(&'static str, String)>,
}

impl Debug {
    fn r<T>(&self, m: T) -> Request<T> {
        let md: Vec<(&'static str, &str)> = self.md.iter().map(|(k, v)| (*k, v.as_str())).collect();
        req(m, &md)
    }
}

fn applied<T>(response: &tonic::Response<T>) -> Option<String> {
    response
        .metadata()
        .get("x-cache-debug-applied")
        .map(|v| v.to_str().expect("ascii").to_owned())
}

/// A debug mode, as an admin sends it.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Off,
    WriteOnly,
}

impl Mode {
    /// The header value sent: the original's spelling for `write_only`, which must work too.
    fn sent(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::WriteOnly => "write_only",
        }
    }

    /// The mode the server says it applied.
    fn applied(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::WriteOnly => "write-only",
        }
    }
}

/// The RPCs of the table, each with its request.
#[derive(Clone, Copy, Debug)]
enum Rpc {
    Get,
    GetMany,
    Set,
    Add,
    Touch,
    Invalidate,
    Delete,
    SetMany,
    DeleteMany,
    Increment,
    /// Bad input is still bad input.
    GetEmptyKey,
}

/// What an RPC answered, reduced to what a debug mode changes.
#[derive(Debug, PartialEq)]
enum Answer {
    /// The outcome of each key read (a read under a debug mode never carries a lease).
    Read(Vec<Outcome>),
    /// Whether each key was written (stored, touched, invalidated, deleted).
    Done(Vec<bool>),
    /// A counter's new value.
    Counter(u64),
    /// The call failed with this code.
    Refused(Code),
}

/// What a normal caller reads afterwards at the key the RPC was about.
#[derive(Debug)]
enum Seen {
    Value(&'static [u8]),
    FreshForMoreThan(i64),
    Refresh,
    Miss,
}

/// One RPC, what it answers under each mode, and what a normal caller reads after it.
struct Row {
    rpc: Rpc,
    key: &'static [u8],
    off: (Answer, Seen),
    write_only: (Answer, Seen),
}

/// Every RPC under both modes, in the order they run. Before the first: `k` holds `cached`,
/// `n` is the counter 5, `a` and `m` hold nothing. Under `off` nothing changes; under
/// `write-only` every write goes through (this is how an operator overwrites a bad cached
/// value) while reads still miss.
fn every_rpc() -> Vec<Row> {
    use Answer::{Counter, Done, Read, Refused};
    let row = |rpc, key, off, write_only| Row {
        rpc,
        key,
        off,
        write_only,
    };
    let untouched = |key: &'static [u8]| match key {
        b"k" => Seen::Value(b"cached"),
        b"n" => Seen::Value(b"5"),
        _ => Seen::Miss,
    };
    vec![
        row(
            Rpc::Get,
            b"k",
            (Read(vec![Outcome::Miss]), untouched(b"k")),
            (Read(vec![Outcome::Miss]), untouched(b"k")),
        ),
        row(
            Rpc::GetMany,
            b"k",
            (Read(vec![Outcome::Miss; 2]), untouched(b"k")),
            (Read(vec![Outcome::Miss; 2]), untouched(b"k")),
        ),
        row(
            Rpc::Set,
            b"k",
            (Done(vec![false]), untouched(b"k")),
            (Done(vec![true]), Seen::Value(b"overwritten")),
        ),
        row(
            Rpc::Add,
            b"a",
            (Done(vec![false]), untouched(b"a")),
            (Done(vec![true]), Seen::Value(b"v")),
        ),
        row(
            Rpc::Touch,
            b"k",
            (Done(vec![false]), untouched(b"k")),
            (Done(vec![true]), Seen::FreshForMoreThan(900)),
        ),
        row(
            Rpc::Invalidate,
            b"k",
            (Done(vec![false]), untouched(b"k")),
            (Done(vec![true]), Seen::Refresh),
        ),
        row(
            Rpc::Delete,
            b"k",
            (Done(vec![false]), untouched(b"k")),
            (Done(vec![true]), Seen::Miss),
        ),
        row(
            Rpc::SetMany,
            b"m",
            (Done(vec![false]), untouched(b"m")),
            (Done(vec![true]), Seen::Value(b"many")),
        ),
        row(
            Rpc::DeleteMany,
            b"m",
            (Done(vec![false]), untouched(b"m")),
            (Done(vec![true]), Seen::Miss),
        ),
        row(
            Rpc::Increment,
            b"n",
            (Refused(Code::FailedPrecondition), untouched(b"n")),
            (Counter(7), Seen::Value(b"7")),
        ),
        row(
            Rpc::GetEmptyKey,
            b"n",
            (Refused(Code::InvalidArgument), untouched(b"n")),
            (Refused(Code::InvalidArgument), Seen::Value(b"7")),
        ),
    ]
}

/// An RPC's answer (or its failure's code) and the applied-mode header.
fn answered<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
    answer: impl FnOnce(&T) -> Answer,
) -> (Answer, Option<String>) {
    match result {
        Ok(r) => (answer(r.get_ref()), applied(&r)),
        Err(status) => (Answer::Refused(status.code()), None),
    }
}

/// A read's outcome; a read under a debug mode never hands out a lease.
fn outcome(outcome: Outcome, lease_token: &[u8]) -> Outcome {
    assert!(lease_token.is_empty(), "no lease: nothing will be stored");
    outcome
}

/// Makes the call of `rpc` with the debug metadata.
async fn call(d: &Debug, rpc: Rpc) -> (Answer, Option<String>) {
    let mut c = d.client.clone();
    let get = |key: &[u8]| GetRequest {
        peek: false,
        key: key.to_vec(),
        lease_on_miss: None,
        ..Default::default()
    };
    let read = |r: &GetResponse| Answer::Read(vec![outcome(r.outcome(), &r.lease_token)]);
    match rpc {
        Rpc::Get => answered(c.get(d.r(get(b"k"))).await, read),
        Rpc::GetEmptyKey => answered(c.get(d.r(get(b""))).await, read),
        Rpc::GetMany => {
            let request = GetManyRequest {
                peek: false,
                keys: vec![b"k".to_vec(), b"n".to_vec()],
                lease_on_miss: Some(true),
                ..Default::default()
            };
            answered(c.get_many(d.r(request)).await, |r| {
                let outcomes = r.results.iter();
                Answer::Read(
                    outcomes
                        .map(|x| outcome(x.outcome(), &x.lease_token))
                        .collect(),
                )
            })
        }
        Rpc::SetMany | Rpc::DeleteMany => call_batch(d, rpc).await,
        Rpc::Increment => {
            let request = IncrementRequest {
                no_expiry: false,
                key: b"n".to_vec(),
                delta: 2,
                initial_value: Some(40),
                ttl_seconds: 0,
            };
            answered(c.increment(d.r(request)).await, |r| {
                Answer::Counter(r.value)
            })
        }
        _ => call_write(d, rpc).await,
    }
}

/// The single-key writes.
async fn call_write(d: &Debug, rpc: Rpc) -> (Answer, Option<String>) {
    let mut c = d.client.clone();
    let done = |written: bool| Answer::Done(vec![written]);
    match rpc {
        Rpc::Set => {
            let request = SetRequest {
                key: b"k".to_vec(),
                value: b"overwritten".to_vec(),
                ..Default::default()
            };
            answered(c.set(d.r(request)).await, |r| done(r.stored))
        }
        Rpc::Add => {
            let request = AddRequest {
                key: b"a".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            };
            answered(c.add(d.r(request)).await, |r| done(r.stored))
        }
        Rpc::Touch => {
            let request = TouchRequest {
                no_expiry: false,
                key: b"k".to_vec(),
                ttl_seconds: 1000,
            };
            answered(c.touch(d.r(request)).await, |r| done(r.touched))
        }
        Rpc::Invalidate => {
            let request = InvalidateRequest { key: b"k".to_vec() };
            answered(c.invalidate(d.r(request)).await, |r| done(r.invalidated))
        }
        Rpc::Delete => {
            let request = DeleteRequest {
                key: b"k".to_vec(),
                ..Default::default()
            };
            answered(c.delete(d.r(request)).await, |r| done(r.deleted))
        }
        other => unreachable!("{other:?} is not a single-key write"),
    }
}

/// The batched writes; no key may fail.
async fn call_batch(d: &Debug, rpc: Rpc) -> (Answer, Option<String>) {
    let mut c = d.client.clone();
    if let Rpc::SetMany = rpc {
        let items = vec![SetManyItem {
            key: b"m".to_vec(),
            value: b"many".to_vec(),
            ..Default::default()
        }];
        return answered(c.set_many(d.r(SetManyRequest { items })).await, |r| {
            assert!(r.results.iter().all(|x| x.error.is_none()), "{r:?}");
            Answer::Done(r.results.iter().map(|x| x.stored).collect())
        });
    }
    let request = DeleteManyRequest {
        keys: vec![b"m".to_vec()],
    };
    answered(c.delete_many(d.r(request)).await, |r| {
        assert!(r.results.iter().all(|x| x.error.is_none()), "{r:?}");
        Answer::Done(r.results.iter().map(|x| x.deleted).collect())
    })
}

/// Checks what a normal caller reads at `key`.
async fn check_seen(normal: &Calls, key: &[u8], seen: &Seen) {
    let r = normal.get(key).await;
    match seen {
        Seen::Value(value) => assert_hit(&r, value),
        Seen::FreshForMoreThan(ttl) => {
            assert_eq!(r.outcome(), Outcome::Hit, "{r:?}");
            assert!(r.ttl_seconds > *ttl, "{r:?}");
        }
        Seen::Refresh => assert_eq!(r.outcome(), Outcome::Refresh, "{r:?}"),
        Seen::Miss => assert_miss(&r),
    }
}

/// Every RPC under a debug mode, as the table says: the answer, the applied mode in the
/// response, memcached untouched by everything under `off` and by reads under `write-only`,
/// and what a normal caller then reads.
#[tokio::test]
async fn debug_modes_on_every_rpc() {
    let mut cases = Cases::new();
    for mode in [Mode::Off, Mode::WriteOnly] {
        let mc = Memcached::start();
        let server = TestServer::start(auth_config(&mc)).await;
        let normal = Calls::new(server.client().await);
        normal.set(b"k", b"cached").await;
        let counter = normal.try_increment(b"n", 1, Some(5), 0).await;
        assert_eq!(counter.expect("counter"), 5);
        let d = Debug {
            client: server.client().await,
            md: admin(mode.sent()),
        };
        for row in every_rpc() {
            let (want, seen) = match mode {
                Mode::Off => (&row.off, &row.off.1),
                Mode::WriteOnly => (&row.write_only, &row.write_only.1),
            };
            let name = format!("{:?} under {}", row.rpc, mode.applied());
            let before = touches(&mc);
            let (answer, applied) = call(&d, row.rpc).await;
            let touched = touches(&mc) - before;
            cases.check(
                &name,
                check_answer(mode, &want.0, &answer, applied.as_deref(), touched),
            );
            cases
                .run(&format!("{name}, then a normal read"), async {
                    check_seen(&normal, row.key, seen).await;
                })
                .await;
        }
    }
    cases.finish();
}

/// The answer, the applied mode (absent from an error) and memcached's command count.
fn check_answer(
    mode: Mode,
    want: &Answer,
    answer: &Answer,
    applied: Option<&str>,
    touched: u64,
) -> Result<(), String> {
    if answer != want {
        return Err(format!("answered {answer:?}, not {want:?}"));
    }
    let refused = matches!(answer, Answer::Refused(_));
    if !refused && applied != Some(mode.applied()) {
        return Err(format!("x-cache-debug-applied: {applied:?}"));
    }
    let reads_only = matches!(answer, Answer::Read(_));
    if touched > 0 && (matches!(mode, Mode::Off) || reads_only) {
        return Err(format!("memcached saw {touched} commands"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_calls_never_leak_into_concurrent_calls() {
    let mc = Memcached::start();
    let mut cfg = auth_config(&mc);
    // All 2,000 calls are in flight at once: this test is about isolation, not load shedding
    // or memcached timeouts (a slow machine must not turn reads into fail-open misses).
    cfg.server.max_concurrent_calls = 4096;
    cfg.memcached.timeout_ms = 30_000;
    let server = TestServer::start(cfg).await;
    let normal = Calls::new(server.client().await);
    normal.set(b"hot", b"cached").await;
    let admin_client = server.client().await;
    let normal_client = server.client().await;

    let admin_calls = (0..1000).map(|i| {
        let mut c = admin_client.clone();
        let mode = if i % 2 == 0 { "off" } else { "write-only" };
        let md = admin(mode);
        async move {
            let md: Vec<(&'static str, &str)> = md.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = c
                .get(req(
                    GetRequest {
                        peek: false,
                        key: b"hot".to_vec(),
                        lease_on_miss: None,
                        ..Default::default()
                    },
                    &md,
                ))
                .await
                .expect("admin get");
            assert_eq!(r.get_ref().outcome(), Outcome::Miss);
            assert_eq!(
                applied(&r).as_deref(),
                Some(if mode == "off" { "off" } else { "write-only" })
            );
        }
    });
    let normal_calls = (0..1000).map(|_| {
        let mut c = normal_client.clone();
        async move {
            let r = c
                .get(Request::new(GetRequest {
                    peek: false,
                    key: b"hot".to_vec(),
                    lease_on_miss: None,
                    ..Default::default()
                }))
                .await
                .expect("normal get");
            assert_eq!(applied(&r), None, "a normal call never gets a debug mode");
            assert!(
                r.metadata().get("x-cache-degraded").is_none(),
                "memcached answered"
            );
            r.into_inner()
        }
    });
    let (_, normal_results) = tokio::join!(join_all(admin_calls), join_all(normal_calls));
    assert_eq!(normal_results.len(), 1000);
    for r in &normal_results {
        assert_hit(r, b"cached");
    }
}

/// Metadata to send, the code it must get, and a word of the message.
type Refusal<'a> = (Vec<(&'static str, &'a str)>, Code, &'a str);

#[tokio::test]
async fn refused_credentials() {
    let mc = Memcached::start();
    let server = TestServer::start(auth_config(&mc)).await;
    let mut c = server.client().await;
    let get = || GetRequest {
        peek: false,
        key: b"k".to_vec(),
        lease_on_miss: None,
        ..Default::default()
    };
    let oversize = format!("Bearer {}", "t".repeat(5000));
    let admin_bearer = format!("Bearer {ADMIN}");
    let client_bearer = format!("Bearer {CLIENT}");
    let cases: Vec<Refusal<'_>> = vec![
        (
            vec![("authorization", "Bearer wrong-token")],
            Code::Unauthenticated,
            "unknown token",
        ),
        (
            vec![
                ("authorization", "Bearer wrong-token"),
                ("x-cache-debug", "off"),
            ],
            Code::Unauthenticated,
            "unknown token",
        ),
        (
            vec![("x-cache-debug", "off")],
            Code::PermissionDenied,
            "admin",
        ),
        (
            vec![
                ("authorization", "Basic YWRtaW4="),
                ("x-cache-debug", "off"),
            ],
            Code::Unauthenticated,
            "Bearer",
        ),
        (
            vec![("authorization", ADMIN), ("x-cache-debug", "off")],
            Code::Unauthenticated,
            "Bearer",
        ),
        (
            vec![("authorization", &client_bearer), ("x-cache-debug", "off")],
            Code::PermissionDenied,
            "admin",
        ),
        (
            vec![("authorization", &oversize), ("x-cache-debug", "off")],
            Code::Unauthenticated,
            "too long",
        ),
        (
            vec![
                ("authorization", &admin_bearer),
                ("x-cache-debug", "sometimes"),
            ],
            Code::InvalidArgument,
            "write-only",
        ),
        (
            vec![
                ("authorization", &admin_bearer),
                ("x-cache-debug", "off"),
                ("x-cache-debug", "off"),
            ],
            Code::InvalidArgument,
            "x-cache-debug",
        ),
    ];
    // Every case runs; each failing one is reported by its metadata.
    let mut report = Cases::new();
    for (md, code, needle) in cases {
        let name = format!("{md:?}");
        let result = match c.get(req(get(), &md)).await {
            Ok(_) => Err("accepted".to_owned()),
            Err(e) if e.code() != code => Err(format!("{:?}, expected {code:?}: {e:?}", e.code())),
            Err(e) if !e.message().contains(needle) => {
                Err(format!("{:?} does not say {needle:?}", e.message()))
            }
            Err(e) if e.message().contains(ADMIN) || e.message().contains(CLIENT) => {
                Err("a token was echoed".to_owned())
            }
            Err(_) => Ok(()),
        };
        report.check(&name, result);
    }
    report.finish();
    // Tokens are optional here: a client token, or none, reads normally.
    assert!(
        c.get(req(get(), &[("authorization", &client_bearer)]))
            .await
            .is_ok()
    );
    assert!(c.get(req(get(), &[])).await.is_ok());
    // All spellings of the modes are accepted from an admin.
    for mode in ["off", "OFF", "turn_off", "write-only", "Write_Only"] {
        let r = c
            .get(req(
                get(),
                &[("authorization", &admin_bearer), ("x-cache-debug", mode)],
            ))
            .await
            .expect("admin debug");
        assert!(applied(&r).is_some());
    }
}

#[tokio::test]
async fn without_an_admin_debug_is_refused_to_everyone() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let mut c = server.client().await;
    let get = || GetRequest {
        peek: false,
        key: b"k".to_vec(),
        lease_on_miss: None,
        ..Default::default()
    };
    let e = c
        .get(req(get(), &[("x-cache-debug", "off")]))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), Code::PermissionDenied);
    let bearer = format!("Bearer {ADMIN}");
    let e = c
        .get(req(
            get(),
            &[("authorization", &bearer), ("x-cache-debug", "off")],
        ))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn required_tokens_leave_health_and_reflection_open() {
    let mc = Memcached::start();
    let mut cfg = auth_config(&mc);
    cfg.auth.require_token = true;
    let server = TestServer::start(cfg).await;
    let mut c = server.client().await;
    let get = || GetRequest {
        peek: false,
        key: b"k".to_vec(),
        lease_on_miss: None,
        ..Default::default()
    };
    let e = c
        .get(req(get(), &[]))
        .await
        .expect_err("a token is required");
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("requires a token"));
    let client_bearer = format!("Bearer {CLIENT}");
    let admin_bearer = format!("Bearer {ADMIN}");
    assert_eq!(
        c.get(req(get(), &[("authorization", &client_bearer)]))
            .await
            .expect("client")
            .get_ref()
            .outcome(),
        Outcome::Miss
    );
    assert!(
        c.get(req(get(), &[("authorization", &admin_bearer)]))
            .await
            .is_ok()
    );

    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "mintcache.v1.Cache".into(),
        })
        .await
        .expect("health needs no token")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection needs no token")
        .into_inner();
    let response = stream
        .message()
        .await
        .expect("answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected {response:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["mintcache.v1.Cache", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} listed in {names:?}"
        );
    }
}

#[tokio::test]
async fn tokens_and_values_never_reach_the_logs() {
    let mc = Memcached::start();
    let mut server = ServerProcess::start(&[
        ("MINTCACHE_MEMCACHED__SERVERS", mc.addr()),
        ("MINTCACHE_AUTH__ADMIN_TOKEN_SHA256", sha(ADMIN)),
        ("MINTCACHE_AUTH__CLIENT_TOKEN_SHA256", sha(CLIENT)),
        ("MINTCACHE_LOG__LEVEL", "mintcache=trace,info".into()),
    ]);
    let mut c = server.client().await;
    let secret_value = b"value-that-must-not-be-logged".to_vec();
    let admin_bearer = format!("Bearer {ADMIN}");
    let client_bearer = format!("Bearer {CLIENT}");
    let set = SetRequest {
        key: b"secret-key".to_vec(),
        value: secret_value.clone(),
        ..Default::default()
    };
    assert!(
        c.set(req(set, &[("authorization", &client_bearer)]))
            .await
            .expect("set")
            .get_ref()
            .stored
    );
    let get = || GetRequest {
        peek: false,
        key: b"secret-key".to_vec(),
        lease_on_miss: None,
        ..Default::default()
    };
    assert!(
        c.get(req(
            get(),
            &[("authorization", &admin_bearer), ("x-cache-debug", "off")]
        ))
        .await
        .is_ok()
    );
    assert!(
        c.get(req(
            get(),
            &[("authorization", &client_bearer), ("x-cache-debug", "off")]
        ))
        .await
        .is_err()
    );
    assert!(
        c.get(req(get(), &[("authorization", "Bearer not-a-known-token")]))
            .await
            .is_err()
    );
    // A backend failure is logged (with the node), still without keys or values.
    drop(mc);
    let set = SetRequest {
        key: b"secret-key".to_vec(),
        value: secret_value.clone(),
        ..Default::default()
    };
    assert!(c.set(req(set, &[])).await.is_err());
    server.sigterm();
    let (_, logs) = server.wait_exit().await;
    assert!(logs.contains("call refused"), "refusals are logged: {logs}");
    assert!(
        logs.contains("backend unavailable"),
        "backend failures are logged: {logs}"
    );
    for secret in [
        ADMIN,
        CLIENT,
        "not-a-known-token",
        "value-that-must-not-be-logged",
        "secret-key",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret:?} appeared in the logs:\n{logs}"
        );
    }
}
