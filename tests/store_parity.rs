//! One set of end-to-end cases over gRPC, run against the memcached pool and against the
//! embedded store: both backends must behave the same. Every case runs, and each failing one
//! is reported by name.

mod harness;

use harness::calls::{Calls, assert_hit, assert_miss, assert_status, item};
use harness::cases::Cases;
use harness::{Memcached, TestServer, config};
use mintcache_client::proto::{GetRequest, Outcome, SetManyItem, SetRequest};
use tonic::Code;

/// Every case, in order, against one server.
async fn cases(server: &TestServer) {
    let c = Calls::new(server.client().await);
    let mut cases = Cases::new();
    cases.run("set_get_delete", set_get_delete(&c)).await;
    cases
        .run("flags_and_ttl_round_trip", flags_and_ttl_round_trip(&c))
        .await;
    cases
        .run("add_only_when_absent", add_only_when_absent(&c))
        .await;
    cases
        .run(
            "versions_and_namespaces_are_isolated",
            versions_and_namespaces_are_isolated(&c),
        )
        .await;
    cases
        .run(
            "awkward_keys_work_and_stay_distinct",
            awkward_keys_work_and_stay_distinct(&c),
        )
        .await;
    cases
        .run("forty_day_ttl_is_a_hit", forty_day_ttl_is_a_hit(&c))
        .await;
    cases.run("limits_and_errors", limits_and_errors(&c)).await;
    cases
        .run(
            "bad_metadata_is_invalid_argument",
            bad_metadata_is_invalid_argument(&c),
        )
        .await;
    cases
        .run(
            "repeated_metadata_is_invalid_argument",
            repeated_metadata_is_invalid_argument(&c),
        )
        .await;
    cases.run("counters", counters(&c)).await;
    cases.run("touch_keeps_grace", touch_keeps_grace(&c)).await;
    cases
        .run(
            "batches_answer_in_order_and_fail_per_key",
            batches_answer_in_order_and_fail_per_key(&c),
        )
        .await;
    cases.finish();
}

/// A key space header sent twice is refused, whichever it is and even when both agree.
async fn repeated_metadata_is_invalid_argument(c: &Calls) {
    c.set(b"repeated", b"v").await;
    for (header, values) in [
        ("x-cache-version", ["1", "2"]),
        ("x-cache-version", ["1", "1"]),
        ("x-cache-namespace", ["", "billing"]),
    ] {
        let mut request = tonic::Request::new(GetRequest {
            peek: false,
            key: b"repeated".to_vec(),
            lease_on_miss: None,
            ..Default::default()
        });
        for v in values {
            request
                .metadata_mut()
                .append(header, v.parse().expect("ascii"));
        }
        let r = c.client.clone().get(request).await.map(|r| r.into_inner());
        assert_status(r, Code::InvalidArgument, header);
    }
    assert_hit(&c.get(b"repeated").await, b"v");
}

async fn counters(c: &Calls) {
    assert_status(
        c.try_increment(b"hits", 1, None, 0).await,
        Code::NotFound,
        "initial_value",
    );
    assert_eq!(
        c.try_increment(b"hits", 1, Some(10), 0)
            .await
            .expect("create"),
        10
    );
    assert_eq!(
        c.try_increment(b"hits", 5, Some(10), 0).await.expect("add"),
        15
    );
    assert_eq!(
        c.try_increment(b"hits", -3, None, 0)
            .await
            .expect("subtract"),
        12
    );
    assert_eq!(
        c.try_increment(b"hits", -100, None, 0)
            .await
            .expect("floor"),
        0
    );
    // Counters read back as their decimal text.
    assert_hit(&c.get(b"hits").await, b"0");
    // Versions isolate counters too.
    assert_status(
        c.clone()
            .version("other")
            .try_increment(b"hits", 1, None, 0)
            .await,
        Code::NotFound,
        "counter",
    );
    // A minted value is not a counter.
    c.set(b"not-a-counter", b"42").await;
    assert_status(
        c.try_increment(b"not-a-counter", 1, None, 0).await,
        Code::FailedPrecondition,
        "not a counter",
    );
    assert_status(
        c.try_increment(b"", 1, None, 0).await,
        Code::InvalidArgument,
        "key",
    );
    assert_status(
        c.try_increment(b"hits", 1, None, -1).await,
        Code::InvalidArgument,
        "ttl_seconds",
    );
}

async fn touch_keeps_grace(c: &Calls) {
    assert!(!c.try_touch(b"untouched", 100).await.expect("touch"));
    let set = SetRequest {
        key: b"touched".to_vec(),
        value: b"v".to_vec(),
        ttl_seconds: 10,
        grace_seconds: 20,
        ..Default::default()
    };
    assert!(c.try_set_with(set).await.expect("set"));
    assert!(c.try_touch(b"touched", 1000).await.expect("touch"));
    let r = c.get(b"touched").await;
    assert_hit(&r, b"v");
    assert!(
        (998..=1000).contains(&r.ttl_seconds),
        "new fresh ttl, grace kept: {}",
        r.ttl_seconds
    );
    assert_status(
        c.try_touch(b"touched", -5).await,
        Code::InvalidArgument,
        "ttl_seconds",
    );
    // Touching an invalidated value keeps it stale and leaves its refresh to a reader.
    assert!(c.invalidate(b"touched").await);
    assert!(c.try_touch(b"touched", 1000).await.expect("touch"));
    assert_eq!(c.get(b"touched").await.outcome(), Outcome::Refresh);
    assert_eq!(c.get(b"touched").await.outcome(), Outcome::Stale);
}

async fn batches_answer_in_order_and_fail_per_key(c: &Calls) {
    let keys: Vec<Vec<u8>> = (0..50).map(|i| format!("batch:{i}").into_bytes()).collect();
    let mut items: Vec<_> = keys.iter().map(|k| item(k, k)).collect();
    items.insert(10, item(b"", b"empty key"));
    items.insert(
        20,
        item(
            b"batch:big",
            &vec![0u8; mintcache::config::DEFAULT_MAX_VALUE_BYTES + 1],
        ),
    );
    items.push(item(b"with space\r\n", b"awkward"));
    let results = c.set_many(items.clone()).await;
    assert_eq!(results.len(), items.len());
    for (item, r) in items.iter().zip(&results) {
        assert_eq!(r.key, item.key, "results in request order");
        match item.key.as_slice() {
            b"" => assert_eq!(
                r.error.as_ref().map(|e| e.code),
                Some(Code::InvalidArgument as i32)
            ),
            b"batch:big" => {
                let e = r.error.as_ref().expect("oversize value fails");
                assert!(e.message.contains("max_value_bytes"), "{e:?}");
            }
            _ => assert!(r.stored && r.error.is_none(), "{r:?}"),
        }
    }
    let mut wanted = keys.clone();
    wanted.reverse();
    wanted.insert(5, b"batch:absent".to_vec());
    wanted.insert(7, Vec::new());
    wanted.push(b"with space\r\n".to_vec());
    wanted.push(b"batch:3".to_vec()); // duplicates answer twice
    let (results, degraded) = c.get_many(&wanted).await;
    assert!(!degraded);
    assert_eq!(results.len(), wanted.len());
    for (key, r) in wanted.iter().zip(&results) {
        assert_eq!(&r.key, key);
        match key.as_slice() {
            b"batch:absent" => assert_eq!(r.outcome(), Outcome::Miss),
            b"" => assert_eq!(
                r.error.as_ref().map(|e| e.code),
                Some(Code::InvalidArgument as i32)
            ),
            b"with space\r\n" => assert_eq!(
                (r.outcome(), r.value.as_slice()),
                (Outcome::Hit, &b"awkward"[..])
            ),
            _ => assert_eq!((r.outcome(), &r.value), (Outcome::Hit, key), "{r:?}"),
        }
    }
    let mut doomed = keys[..25].to_vec();
    doomed.push(b"batch:absent".to_vec());
    let results = c.delete_many(&doomed).await;
    for (key, r) in doomed.iter().zip(&results) {
        assert_eq!(&r.key, key);
        assert_eq!(r.deleted, key != b"batch:absent", "{r:?}");
    }
    let (results, _) = c.get_many(&keys).await;
    assert_eq!(
        results
            .iter()
            .filter(|r| r.outcome() == Outcome::Hit)
            .count(),
        25
    );
    assert!(results[..25].iter().all(|r| r.outcome() == Outcome::Miss));

    // Cold-miss protection in a batch: the first batch holds the leases, the next one waits.
    let cold: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("batch-cold:{i}").into_bytes())
        .collect();
    let (first, _) = c.get_many_with(&cold, Some(true)).await;
    assert!(
        first
            .iter()
            .all(|r| r.outcome() == Outcome::Miss && !r.lease_token.is_empty()),
        "{first:?}"
    );
    let (second, _) = c.get_many_with(&cold, Some(true)).await;
    assert!(
        second.iter().all(|r| r.outcome() == Outcome::Pending),
        "{second:?}"
    );
    let fills = cold
        .iter()
        .zip(&first)
        .map(|(k, r)| SetManyItem {
            lease_token: r.lease_token.clone(),
            ..item(k, b"filled")
        })
        .collect();
    assert!(c.set_many(fills).await.iter().all(|r| r.stored));
    let (third, _) = c.get_many_with(&cold, Some(true)).await;
    assert!(
        third
            .iter()
            .all(|r| r.outcome() == Outcome::Hit && r.value == b"filled")
    );
}

async fn set_get_delete(c: &Calls) {
    assert_miss(&c.get(b"user:1").await);
    c.set(b"user:1", b"alice").await;
    assert_hit(&c.get(b"user:1").await, b"alice");
    c.set(b"user:1", b"alice v2").await;
    assert_hit(&c.get(b"user:1").await, b"alice v2");
    assert!(c.delete(b"user:1").await, "delete finds the key");
    assert_miss(&c.get(b"user:1").await);
    assert!(!c.delete(b"user:1").await, "second delete finds nothing");
    // Empty values are values.
    c.set(b"empty", b"").await;
    assert_hit(&c.get(b"empty").await, b"");
}

async fn flags_and_ttl_round_trip(c: &Calls) {
    let stored = c
        .try_set_with(SetRequest {
            counter: false,
            no_expiry: false,
            no_grace: false,
            key: b"flagged".to_vec(),
            value: b"v".to_vec(),
            ttl_seconds: 120,
            grace_seconds: 10,
            flags: 0xdead_beef,
            lease_token: Vec::new(),
            ..Default::default()
        })
        .await
        .expect("set");
    assert!(stored);
    let r = c.get(b"flagged").await;
    assert_hit(&r, b"v");
    assert_eq!(r.flags, 0xdead_beef);
    assert!(
        (118..=120).contains(&r.ttl_seconds),
        "fresh ttl reported: {}",
        r.ttl_seconds
    );
    // ttl 0 means the server default (300 s).
    c.set(b"default-ttl", b"v").await;
    let r = c.get(b"default-ttl").await;
    assert!(
        (298..=300).contains(&r.ttl_seconds),
        "default ttl reported: {}",
        r.ttl_seconds
    );
}

async fn add_only_when_absent(c: &Calls) {
    assert!(c.add(b"added", b"first").await);
    assert!(!c.add(b"added", b"second").await);
    assert_hit(&c.get(b"added").await, b"first");
}

async fn versions_and_namespaces_are_isolated(c: &Calls) {
    let v1 = c.clone().version("v1");
    let v2 = c.clone().version("v2");
    let other_ns = c.clone().version("v1").namespace("billing");
    v1.set(b"shared-name", b"from v1").await;
    assert_miss(&v2.get(b"shared-name").await);
    assert_miss(&other_ns.get(b"shared-name").await);
    v2.set(b"shared-name", b"from v2").await;
    other_ns.set(b"shared-name", b"from billing").await;
    assert_hit(&v1.get(b"shared-name").await, b"from v1");
    assert_hit(&v2.get(b"shared-name").await, b"from v2");
    assert_hit(&other_ns.get(b"shared-name").await, b"from billing");
    // Deleting in one version leaves the others alone (the original forgot the prefix here).
    assert!(v2.delete(b"shared-name").await);
    assert_hit(&v1.get(b"shared-name").await, b"from v1");
    assert_miss(&v2.get(b"shared-name").await);
    // The default version is the configured one ("1"): naming it explicitly is the same.
    c.set(b"defaulted", b"d").await;
    assert_hit(&c.clone().version("1").get(b"defaulted").await, b"d");
    // "1" + "1key" and "11" + "key" are different keys.
    c.clone().version("1").set(b"1key", b"a").await;
    assert_miss(&c.clone().version("11").get(b"key").await);
}

async fn awkward_keys_work_and_stay_distinct(c: &Calls) {
    let long_a = vec![b'a'; 251];
    let mut long_b = long_a.clone();
    *long_b.last_mut().expect("non-empty") = b'b';
    let max = vec![0xffu8; 4096];
    let keys: Vec<Vec<u8>> = vec![
        b"with space".to_vec(),
        b"with\r\nset injected 0 0 1\r\nx".to_vec(),
        b"nul\0byte".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        "ünïcödé 🔑".as_bytes().to_vec(),
        b"with space ".to_vec(),
        b"with_space".to_vec(),
        b":colon:".to_vec(),
        b"#hash".to_vec(),
        b"mg x v".to_vec(),
        vec![b'k'; 240],
        vec![b'k'; 250],
        long_a,
        long_b,
        vec![b' '; 300],
        max,
    ];
    for (i, key) in keys.iter().enumerate() {
        c.set(key, format!("value {i}").as_bytes()).await;
    }
    for (i, key) in keys.iter().enumerate() {
        assert_hit(&c.get(key).await, format!("value {i}").as_bytes());
    }
    // The injection attempt did not create the key it tried to smuggle in.
    assert_miss(&c.get(b"injected").await);
    for key in &keys {
        assert!(c.delete(key).await);
    }
    for key in &keys {
        assert_miss(&c.get(key).await);
    }
}

async fn forty_day_ttl_is_a_hit(c: &Calls) {
    let forty_days = 40 * 24 * 3600;
    assert!(
        c.try_set(b"long-lived", b"v", forty_days)
            .await
            .expect("set")
    );
    let r = c.get(b"long-lived").await;
    assert_hit(&r, b"v");
    assert!(
        r.ttl_seconds > forty_days - 5,
        "ttl {} should be about 40 days",
        r.ttl_seconds
    );
}

async fn limits_and_errors(c: &Calls) {
    assert_status(
        c.try_get(b"").await,
        Code::InvalidArgument,
        "key must not be empty",
    );
    assert_status(
        c.try_set(b"", b"v", 0).await,
        Code::InvalidArgument,
        "key must not be empty",
    );
    assert_status(
        c.try_delete(b"").await,
        Code::InvalidArgument,
        "key must not be empty",
    );
    let too_long = vec![b'k'; 4097];
    assert_status(
        c.try_get(&too_long).await,
        Code::InvalidArgument,
        "max_key_bytes",
    );
    assert_status(
        c.try_set(&too_long, b"v", 0).await,
        Code::InvalidArgument,
        "max_key_bytes",
    );
    let max_value = vec![7u8; mintcache::config::DEFAULT_MAX_VALUE_BYTES];
    assert!(
        c.try_set(b"big", &max_value, 0)
            .await
            .expect("largest value is accepted")
    );
    assert_hit(&c.get(b"big").await, &max_value);
    let too_big = vec![7u8; mintcache::config::DEFAULT_MAX_VALUE_BYTES + 1];
    assert_status(
        c.try_set(b"big", &too_big, 0).await,
        Code::InvalidArgument,
        "max_value_bytes",
    );
    assert_status(
        c.try_set(b"neg", b"v", -1).await,
        Code::InvalidArgument,
        "ttl_seconds must not be negative",
    );
    let neg_grace = SetRequest {
        key: b"neg".to_vec(),
        value: b"v".to_vec(),
        grace_seconds: -5,
        ..Default::default()
    };
    assert_status(
        c.try_set_with(neg_grace).await,
        Code::InvalidArgument,
        "grace_seconds",
    );
    let bad_lease = SetRequest {
        key: b"lease".to_vec(),
        value: b"v".to_vec(),
        lease_token: b"forged".to_vec(),
        ..Default::default()
    };
    assert_status(
        c.try_set_with(bad_lease).await,
        Code::InvalidArgument,
        "lease_token",
    );
    // Failed writes stored nothing.
    assert_miss(&c.get(b"neg").await);
    assert_hit(&c.get(b"big").await, &max_value);
}

async fn bad_metadata_is_invalid_argument(c: &Calls) {
    for bad in ["", "a b", "v:1", "v#1", &"x".repeat(65)] {
        let r = c.clone().version(bad).try_get(b"k").await;
        assert_status(r, Code::InvalidArgument, "x-cache-version");
    }
    let r = c.clone().namespace("bad namespace").try_get(b"k").await;
    assert_status(r, Code::InvalidArgument, "x-cache-namespace");
    let r = c
        .clone()
        .namespace("no:colons")
        .try_set(b"k", b"v", 0)
        .await;
    assert_status(r, Code::InvalidArgument, "x-cache-namespace");
    // An empty namespace header is the empty namespace, which is valid.
    assert_eq!(
        c.clone().namespace("").get(b"k").await.outcome(),
        Outcome::Miss
    );
}

#[tokio::test]
async fn memcached_backend() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    cases(&server).await;
    assert!(mc.curr_items() > 0, "the values went to memcached");
}

#[tokio::test]
async fn embedded_backend() {
    let server = TestServer::start(config(&[])).await;
    cases(&server).await;
}
