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

#[tokio::test]
async fn off_mode_on_every_rpc() {
    let mc = Memcached::start();
    let server = TestServer::start(auth_config(&mc)).await;
    let normal = Calls::new(server.client().await);
    normal.set(b"k", b"cached").await;
    assert_eq!(
        normal
            .try_increment(b"n", 1, Some(5), 0)
            .await
            .expect("counter"),
        5
    );
    let d = Debug {
        client: server.client().await,
        md: admin("off"),
    };
    let c = d.client.clone();
    let before = touches(&mc);
    // Every RPC is a case: each failing one is reported by name.
    let mut cases = Cases::new();
    cases
        .run("Get", async {
            let mut c = c.clone();
            let r = c
                .get(d.r(GetRequest {
                    peek: false,
                    key: b"k".to_vec(),
                    lease_on_miss: None,
                    ..Default::default()
                }))
                .await
                .expect("get");
            assert_eq!(applied(&r).as_deref(), Some("off"));
            assert_eq!(r.get_ref().outcome(), Outcome::Miss);
            assert!(
                r.get_ref().lease_token.is_empty(),
                "no lease: nothing will be stored"
            );
        })
        .await;
    cases
        .run("GetMany", async {
            let mut c = c.clone();
            let r = c
                .get_many(d.r(GetManyRequest {
                    peek: false,
                    keys: vec![b"k".to_vec(), b"n".to_vec()],
                    lease_on_miss: Some(true),
                    ..Default::default()
                }))
                .await
                .expect("get_many");
            assert_eq!(applied(&r).as_deref(), Some("off"));
            assert!(
                r.get_ref()
                    .results
                    .iter()
                    .all(|x| x.outcome() == Outcome::Miss)
            );
        })
        .await;
    cases
        .run("Set", async {
            let mut c = c.clone();
            let r = c
                .set(d.r(SetRequest {
                    key: b"k".to_vec(),
                    value: b"overwritten".to_vec(),
                    ..Default::default()
                }))
                .await
                .expect("set");
            assert!(!r.get_ref().stored);
            assert_eq!(applied(&r).as_deref(), Some("off"));
        })
        .await;
    cases
        .run("Add", async {
            let mut c = c.clone();
            let r = c
                .add(d.r(AddRequest {
                    key: b"new".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                }))
                .await
                .expect("add");
            assert!(!r.get_ref().stored);
        })
        .await;
    cases
        .run("Touch", async {
            let mut c = c.clone();
            let r = c
                .touch(d.r(TouchRequest {
                    no_expiry: false,
                    key: b"k".to_vec(),
                    ttl_seconds: 5,
                }))
                .await
                .expect("touch");
            assert!(!r.get_ref().touched);
        })
        .await;
    cases
        .run("Invalidate", async {
            let mut c = c.clone();
            let r = c
                .invalidate(d.r(InvalidateRequest { key: b"k".to_vec() }))
                .await
                .expect("invalidate");
            assert!(!r.get_ref().invalidated);
        })
        .await;
    cases
        .run("Delete", async {
            let mut c = c.clone();
            let r = c
                .delete(d.r(DeleteRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                }))
                .await
                .expect("delete");
            assert!(!r.get_ref().deleted);
        })
        .await;
    cases
        .run("SetMany", async {
            let mut c = c.clone();
            let items = vec![SetManyItem {
                key: b"k".to_vec(),
                value: b"x".to_vec(),
                ..Default::default()
            }];
            let r = c
                .set_many(d.r(SetManyRequest { items }))
                .await
                .expect("set_many");
            assert!(
                r.get_ref()
                    .results
                    .iter()
                    .all(|x| !x.stored && x.error.is_none())
            );
        })
        .await;
    cases
        .run("DeleteMany", async {
            let mut c = c.clone();
            let r = c
                .delete_many(d.r(DeleteManyRequest {
                    keys: vec![b"k".to_vec()],
                }))
                .await
                .expect("delete_many");
            assert!(
                r.get_ref()
                    .results
                    .iter()
                    .all(|x| !x.deleted && x.error.is_none())
            );
        })
        .await;
    cases
        .run("Increment", async {
            let mut c = c.clone();
            let e = c
                .increment(d.r(IncrementRequest {
                    no_expiry: false,
                    key: b"n".to_vec(),
                    delta: 1,
                    initial_value: None,
                    ttl_seconds: 0,
                }))
                .await
                .expect_err("increment is refused with the cache off");
            assert_eq!(e.code(), Code::FailedPrecondition);
        })
        .await;
    cases
        .run("Get with an empty key", async {
            let mut c = c.clone();
            // Bad input is still bad input.
            let e = c
                .get(d.r(GetRequest {
                    peek: false,
                    key: Vec::new(),
                    lease_on_miss: None,
                    ..Default::default()
                }))
                .await
                .expect_err("empty key");
            assert_eq!(e.code(), Code::InvalidArgument);
        })
        .await;
    cases
        .run(
            "memcached saw nothing, normal calls see what was there",
            async {
                assert_eq!(
                    touches(&mc),
                    before,
                    "the cache was off: memcached saw nothing"
                );
                assert_hit(&normal.get(b"k").await, b"cached");
                assert_miss(&normal.get(b"new").await);
                assert_eq!(
                    normal
                        .try_increment(b"n", 0, None, 0)
                        .await
                        .expect("counter"),
                    5
                );
            },
        )
        .await;
    cases.finish();
}

#[tokio::test]
async fn write_only_mode_on_every_rpc() {
    let mc = Memcached::start();
    let server = TestServer::start(auth_config(&mc)).await;
    let normal = Calls::new(server.client().await);
    normal.set(b"k", b"bad value").await;
    let d = Debug {
        client: server.client().await,
        md: admin("write_only"),
    };
    let c = d.client.clone();
    let gets = |mc: &Memcached| mc.stats()["cmd_get"].parse::<u64>().expect("numeric");

    let before = gets(&mc);
    // Every RPC is a case: each failing one is reported by name.
    let mut cases = Cases::new();
    cases
        .run("Get", async {
            let mut c = c.clone();
            let r = c
                .get(d.r(GetRequest {
                    peek: false,
                    key: b"k".to_vec(),
                    lease_on_miss: None,
                    ..Default::default()
                }))
                .await
                .expect("get");
            assert_eq!(applied(&r).as_deref(), Some("write-only"));
            assert_eq!(r.get_ref().outcome(), Outcome::Miss);
        })
        .await;
    cases
        .run("GetMany", async {
            let mut c = c.clone();
            let r = c
                .get_many(d.r(GetManyRequest {
                    peek: false,
                    keys: vec![b"k".to_vec()],
                    lease_on_miss: None,
                    ..Default::default()
                }))
                .await
                .expect("get_many");
            assert!(
                r.get_ref()
                    .results
                    .iter()
                    .all(|x| x.outcome() == Outcome::Miss)
            );
            assert_eq!(gets(&mc), before, "reads did not touch memcached");
        })
        .await;
    cases
        .run("Set", async {
            let mut c = c.clone();
            // Writes go through: this is how an operator overwrites a bad cached value.
            let r = c
                .set(d.r(SetRequest {
                    key: b"k".to_vec(),
                    value: b"good value".to_vec(),
                    ..Default::default()
                }))
                .await
                .expect("set");
            assert!(r.get_ref().stored);
            assert_eq!(applied(&r).as_deref(), Some("write-only"));
            assert_hit(&normal.get(b"k").await, b"good value");
        })
        .await;
    cases
        .run("Add", async {
            let mut c = c.clone();
            assert!(
                c.add(d.r(AddRequest {
                    key: b"a".to_vec(),
                    value: b"v".to_vec(),
                    ..Default::default()
                }))
                .await
                .expect("add")
                .get_ref()
                .stored
            );
            assert_hit(&normal.get(b"a").await, b"v");
        })
        .await;
    cases
        .run("Touch", async {
            let mut c = c.clone();
            assert!(
                c.touch(d.r(TouchRequest {
                    no_expiry: false,
                    key: b"a".to_vec(),
                    ttl_seconds: 1000
                }))
                .await
                .expect("touch")
                .get_ref()
                .touched
            );
            assert!(normal.get(b"a").await.ttl_seconds > 900);
        })
        .await;
    cases
        .run("Invalidate", async {
            let mut c = c.clone();
            assert!(
                c.invalidate(d.r(InvalidateRequest { key: b"a".to_vec() }))
                    .await
                    .expect("inv")
                    .get_ref()
                    .invalidated
            );
            assert_eq!(normal.get(b"a").await.outcome(), Outcome::Refresh);
        })
        .await;
    cases
        .run("Delete", async {
            let mut c = c.clone();
            assert!(
                c.delete(d.r(DeleteRequest {
                    key: b"a".to_vec(),
                    ..Default::default()
                }))
                .await
                .expect("delete")
                .get_ref()
                .deleted
            );
            assert_miss(&normal.get(b"a").await);
        })
        .await;
    cases
        .run("SetMany", async {
            let mut c = c.clone();
            let items = vec![SetManyItem {
                key: b"m".to_vec(),
                value: b"many".to_vec(),
                ..Default::default()
            }];
            assert!(
                c.set_many(d.r(SetManyRequest { items }))
                    .await
                    .expect("set_many")
                    .get_ref()
                    .results[0]
                    .stored
            );
            assert_hit(&normal.get(b"m").await, b"many");
        })
        .await;
    cases
        .run("DeleteMany", async {
            let mut c = c.clone();
            assert!(
                c.delete_many(d.r(DeleteManyRequest {
                    keys: vec![b"m".to_vec()]
                }))
                .await
                .expect("dm")
                .get_ref()
                .results[0]
                    .deleted
            );
            assert_miss(&normal.get(b"m").await);
        })
        .await;
    cases
        .run("Increment", async {
            let mut c = c.clone();
            let r = c
                .increment(d.r(IncrementRequest {
                    no_expiry: false,
                    key: b"n".to_vec(),
                    delta: 2,
                    initial_value: Some(40),
                    ttl_seconds: 0,
                }))
                .await
                .expect("increment goes through");
            assert_eq!(r.get_ref().value, 40);
            assert_hit(&normal.get(b"n").await, b"40");
        })
        .await;
    cases.finish();
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
