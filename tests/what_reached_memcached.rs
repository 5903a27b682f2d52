//! What mintcache's calls leave in memcached, read back with an independent client
//! (async-memcached) instead of the data path's own wire code: the stored key names and their
//! encodings, the value envelope and its client flags, the expiry memcached holds, counters, and
//! what Delete, Invalidate, Touch, Add and Flush do to the items. Each test runs a real
//! memcached and a real mintcache server and writes only through mintcache's gRPC API.

mod harness;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use async_memcached::{AsciiProtocol, Client, MetaProtocol, MetaValue, Status};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use harness::calls::{Calls, assert_hit};
use harness::{Memcached, TestServer, config};
use mintcache_client::proto::*;
use sha2::{Digest, Sha256};

/// The top byte of the client flags of a value set through mintcache (format 1, `'m'`); the
/// low 24 bits hold the grace.
const FORMAT_1: u32 = 0x6d00_0000;
/// Format 2: format 1 with the time the value took to recompute (early refresh).
const FORMAT_2: u32 = 0x6e00_0000;
/// The item memcached keeps for mintcache in every server (see `tests/harness`).
const INSTANCE_MARKER: &str = "mintcache@instance";

/// An async-memcached client on `mc`.
async fn direct(mc: &Memcached) -> Client {
    Client::new(format!("tcp://{}", mc.addr()))
        .await
        .unwrap_or_else(|e| panic!("async-memcached cannot connect to {}: {e:?}", mc.addr()))
}

/// The bytes mintcache stores for a value: the caller's flags (big-endian), then the value.
fn envelope(flags: u32, value: &[u8]) -> Vec<u8> {
    let mut out = flags.to_be_bytes().to_vec();
    out.extend_from_slice(value);
    out
}

/// `mg <key> <flags>` through async-memcached; the item must be there.
async fn meta(client: &mut Client, key: &str, flags: &[&str]) -> MetaValue {
    let value = client
        .meta_get(key, false, None, Some(flags))
        .await
        .unwrap_or_else(|e| panic!("mg {key}: {e:?}"));
    match value {
        // A miss answered with flags (`EN k…`) comes back as a value with status NotFound.
        Some(v) if matches!(v.status, Some(Status::Value | Status::Exists)) => v,
        other => panic!(
            "memcached holds no item {key:?} (status {:?})",
            other.map(|v| v.status)
        ),
    }
}

/// The data and client flags memcached returns for `key` to a plain `get`.
async fn get(client: &mut Client, key: &str) -> Option<(Vec<u8>, u32)> {
    client
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
        .map(|v| {
            assert_eq!(v.key, key.as_bytes(), "get answered another key");
            (v.data.unwrap_or_default(), v.flags.unwrap_or_default())
        })
}

/// Every key memcached holds (`lru_crawler metadump`), as memcached writes them (URL-encoded),
/// with their absolute expiry (-1: never).
async fn dump(client: &mut Client) -> Vec<(String, i64)> {
    let mut keys = Vec::new();
    let mut it = client.dump_keys().await.expect("metadump");
    while let Some(entry) = it.next().await {
        let entry = entry.expect("metadump entry");
        keys.push((
            String::from_utf8(entry.key).expect("URL-encoded key"),
            entry.expiration,
        ));
    }
    assert!(it.is_complete(), "the metadump reached END");
    keys
}

/// Every item memcached holds, with its expiry, from three metadumps: memcached's LRU crawler
/// can miss an item that its LRU maintainer moves between segments during the crawl (an item
/// just read is moved), so one dump may leave out a key that is there; a key that is not there
/// is in none of them.
async fn dumps(client: &mut Client) -> Vec<(String, i64)> {
    let mut items = Vec::new();
    for _ in 0..3 {
        items.extend(dump(client).await);
    }
    items
}

/// The names of every key memcached holds (see [`dumps`]).
async fn names(client: &mut Client) -> BTreeSet<String> {
    dumps(client).await.into_iter().map(|(k, _)| k).collect()
}

/// A key as memcached's metadump writes it: bytes other than `[A-Za-z0-9._~-]` as `%XX`.
fn uri_encoded(key: &[u8]) -> String {
    key.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn remaining(value: &MetaValue) -> i64 {
    value.ttl_remaining.expect("t flag answered")
}

/// Seconds memcached reports left of an item expiring `hard` seconds after it was stored:
/// memcached's clock ticks once a second, and the test machine may be slow.
fn assert_remaining(value: &MetaValue, hard: i64, what: &str) {
    let t = remaining(value);
    assert!(
        (hard - 5..=hard).contains(&t),
        "{what}: memcached holds it for {t} s more, expected {hard} (minus the seconds elapsed)"
    );
}

async fn incr(c: &Calls, key: &[u8], delta: i64, initial: Option<u64>, ttl: i64) -> u64 {
    c.try_increment(key, delta, initial, ttl)
        .await
        .unwrap_or_else(|e| panic!("increment: {e:?}"))
}

async fn set(c: &Calls, request: SetRequest) {
    let key = String::from_utf8_lossy(&request.key).into_owned();
    assert!(
        c.try_set_with(request).await.expect("set succeeds"),
        "set {key} stores"
    );
}

#[tokio::test]
async fn a_value_is_stored_under_its_key_space_in_the_envelope() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let c = Calls::new(server.client().await)
        .namespace("shop")
        .version("v9");
    let mut m = direct(&mc).await;

    set(
        &c,
        SetRequest {
            key: b"user:42".to_vec(),
            value: b"hello".to_vec(),
            ttl_seconds: 120,
            grace_seconds: 45,
            flags: 0xdead_beef,
            ..Default::default()
        },
    )
    .await;
    // `<namespace>:<version>:<key>`, the caller's flags in a 4-byte header before the value,
    // and memcached's client flags carrying the format (0x6d) and the grace (45 = 0x2d).
    assert_eq!(
        get(&mut m, "shop:v9:user:42").await,
        Some((envelope(0xdead_beef, b"hello"), 0x6d00_002d))
    );
    let item = meta(&mut m, "shop:v9:user:42", &["v", "f", "s", "t"]).await;
    assert_eq!(
        item.data.as_deref(),
        Some(&envelope(0xdead_beef, b"hello")[..])
    );
    assert_eq!(item.flags, Some(FORMAT_1 | 45));
    assert_eq!(item.size, Some(9));
    assert_eq!(item.is_stale, None, "a fresh value is not marked stale");
    // memcached keeps it for ttl + grace.
    assert_remaining(&item, 165, "ttl 120, grace 45");

    // A batch lands the same way, item by item; Add only where nothing is stored.
    let results = c
        .set_many(vec![
            SetManyItem {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
                ttl_seconds: 60,
                no_grace: true,
                ..Default::default()
            },
            SetManyItem {
                key: b"b".to_vec(),
                value: b"2".to_vec(),
                flags: 3,
                ttl_seconds: 60,
                grace_seconds: 7,
                ..Default::default()
            },
        ])
        .await;
    assert!(
        results.iter().all(|r| r.stored && r.error.is_none()),
        "{results:?}"
    );
    assert_eq!(
        get(&mut m, "shop:v9:a").await,
        Some((envelope(0, b"1"), FORMAT_1))
    );
    assert_eq!(
        get(&mut m, "shop:v9:b").await,
        Some((envelope(3, b"2"), FORMAT_1 | 7))
    );
    assert!(!c.add(b"a", b"other").await, "add over a stored value");
    assert_eq!(
        get(&mut m, "shop:v9:a").await,
        Some((envelope(0, b"1"), FORMAT_1)),
        "a refused add leaves the item as it was"
    );
    assert!(c.add(b"c", b"3").await);
    assert_eq!(
        get(&mut m, "shop:v9:c").await,
        Some((envelope(0, b"3"), FORMAT_1 | 30)),
        "added with the default grace (30 s)"
    );

    // Nothing else reached memcached.
    let names = names(&mut m).await;
    let expected: BTreeSet<String> = [
        "shop:v9:user:42",
        "shop:v9:a",
        "shop:v9:b",
        "shop:v9:c",
        INSTANCE_MARKER,
    ]
    .into_iter()
    .map(|k| uri_encoded(k.as_bytes()))
    .collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn keys_are_named_as_key_rs_says() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let c = Calls::new(server.client().await)
        .namespace("app")
        .version("7");
    let mut m = direct(&mc).await;
    let prefix = b"app:7:";

    // Printable keys up to memcached's 250 bytes, with the prefix, go as they are.
    let longest_plain = vec![b'k'; 250 - prefix.len()];
    // One byte more: `<namespace>:<version>#<sha256 of the key, unpadded base64url>`.
    let hashed_plain = vec![b'k'; 251 - prefix.len()];
    // Keys with bytes that are protocol syntax go base64-encoded with the `b` flag, while
    // the whole stored key fits in 186 bytes (its base64 in 248); beyond, hashed.
    let with_syntax = b"one two\r\nflush_all\r\n".to_vec();
    let mut longest_binary = vec![b'x'; 186 - prefix.len()];
    longest_binary[0] = b' ';
    let mut hashed_binary = vec![b'x'; 187 - prefix.len()];
    hashed_binary[0] = b' ';
    let colons = b"a:b#c~d@e".to_vec();
    let keys = [
        &longest_plain,
        &hashed_plain,
        &with_syntax,
        &longest_binary,
        &hashed_binary,
        &colons,
    ];
    for (i, key) in keys.iter().enumerate() {
        set(
            &c,
            SetRequest {
                key: key.to_vec(),
                value: format!("value {i}").into_bytes(),
                ..Default::default()
            },
        )
        .await;
    }

    let stored = |key: &[u8]| [&prefix[..], key].concat();
    let hashed = |key: &[u8]| format!("app:7#{}", URL_SAFE_NO_PAD.encode(Sha256::digest(key)));
    let value_of = |i: usize| Some((envelope(0, format!("value {i}").as_bytes()), FORMAT_1 | 30));

    let plain = String::from_utf8(stored(&longest_plain)).expect("ascii");
    assert_eq!(plain.len(), 250);
    assert_eq!(get(&mut m, &plain).await, value_of(0));
    assert_eq!(get(&mut m, &hashed(&hashed_plain)).await, value_of(1));
    assert_eq!(get(&mut m, &hashed(&hashed_binary)).await, value_of(4));
    assert_eq!(get(&mut m, "app:7:a:b#c~d@e").await, value_of(5));
    for (i, key) in [(2, &with_syntax), (3, &longest_binary)] {
        let b64 = STANDARD.encode(stored(key));
        assert!(b64.len() <= 248, "{} base64 characters", b64.len());
        let item = meta(&mut m, &b64, &["b", "k", "v", "f"]).await;
        assert_eq!(item.key.as_deref(), Some(b64.as_bytes()));
        assert_eq!(
            (
                item.data.unwrap_or_default(),
                item.flags.unwrap_or_default()
            ),
            value_of(i).expect("a value")
        );
    }

    // These items and nothing else: no key was split at its spaces or line breaks.
    let names = names(&mut m).await;
    let expected: BTreeSet<String> = [
        uri_encoded(&stored(&longest_plain)),
        uri_encoded(hashed(&hashed_plain).as_bytes()),
        uri_encoded(&stored(&with_syntax)),
        uri_encoded(&stored(&longest_binary)),
        uri_encoded(hashed(&hashed_binary).as_bytes()),
        uri_encoded(&stored(&colons)),
        uri_encoded(INSTANCE_MARKER.as_bytes()),
    ]
    .into_iter()
    .collect();
    assert_eq!(names, expected);
    for (i, key) in keys.iter().enumerate() {
        assert_hit(&c.get(key).await, format!("value {i}").as_bytes());
    }
}

#[tokio::test]
async fn memcached_holds_ttl_plus_grace_and_long_ttls_as_a_date() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.cache.default_ttl_seconds = 300;
    cfg.cache.grace_seconds = 30;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    let mut m = direct(&mc).await;

    set(
        &c,
        SetRequest {
            key: b"default".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        },
    )
    .await;
    let item = meta(&mut m, ":1:default", &["f", "t"]).await;
    assert_eq!(item.flags, Some(FORMAT_1 | 30));
    assert_remaining(&item, 330, "default ttl 300 and grace 30");

    set(
        &c,
        SetRequest {
            key: b"no-grace".to_vec(),
            value: b"v".to_vec(),
            ttl_seconds: 60,
            no_grace: true,
            ..Default::default()
        },
    )
    .await;
    let item = meta(&mut m, ":1:no-grace", &["f", "t"]).await;
    assert_eq!(item.flags, Some(FORMAT_1));
    assert_remaining(&item, 60, "ttl 60, no grace");

    set(
        &c,
        SetRequest {
            key: b"forever".to_vec(),
            value: b"v".to_vec(),
            no_expiry: true,
            ..Default::default()
        },
    )
    .await;
    let item = meta(&mut m, ":1:forever", &["f", "t"]).await;
    assert_eq!(
        item.flags,
        Some(FORMAT_1 | 30),
        "the grace is still recorded"
    );
    assert_eq!(remaining(&item), -1, "memcached never expires it");

    // Beyond 30 days memcached reads the expiry as a Unix time: 40 days must be sent as now +
    // 40 days (+ grace), or memcached would take it for 1970 and drop the item at once.
    let forty_days = 40 * 24 * 3600;
    let before = now_unix();
    set(
        &c,
        SetRequest {
            key: b"forty-days".to_vec(),
            value: b"v".to_vec(),
            ttl_seconds: forty_days,
            ..Default::default()
        },
    )
    .await;
    let after = now_unix();
    let item = meta(&mut m, ":1:forty-days", &["f", "t"]).await;
    let t = remaining(&item);
    assert!(
        (forty_days + 30 - 5..=forty_days + 30 + 2).contains(&t),
        "40 days + 30 s of grace, memcached holds it for {t} s"
    );
    let expiry = dumps(&mut m)
        .await
        .into_iter()
        .find(|(k, _)| k == "%3A1%3Aforty-days")
        .map(|(_, exp)| exp)
        .expect("the item is in the metadump");
    assert!(
        (before + forty_days + 30 - 2..=after + forty_days + 30 + 2).contains(&expiry),
        "absolute expiry {expiry}, stored between {before} and {after}"
    );

    // Touch gives a new fresh ttl and keeps the grace the item has.
    let touched = c.try_touch(b"no-grace", 500).await.expect("touch");
    assert!(touched);
    assert_remaining(
        &meta(&mut m, ":1:no-grace", &["t"]).await,
        500,
        "touched, no grace",
    );
    assert!(c.try_touch(b"default", 100).await.expect("touch"));
    assert_remaining(
        &meta(&mut m, ":1:default", &["t"]).await,
        130,
        "touched, grace 30",
    );
    // The values themselves are untouched.
    assert_eq!(
        get(&mut m, ":1:default").await,
        Some((envelope(0, b"v"), FORMAT_1 | 30))
    );
}

#[tokio::test]
async fn counters_are_plain_digits_without_an_envelope() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.cache.default_ttl_seconds = 300;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await).namespace("stats");
    let mut m = direct(&mc).await;

    // Created with its initial value (the delta is not applied), client flags 0, and the
    // ttl asked for: counters have no grace.
    assert_eq!(incr(&c, b"hits", 1, Some(5), 60).await, 5);
    assert_eq!(get(&mut m, "stats:1:hits").await, Some((b"5".to_vec(), 0)));
    assert_remaining(
        &meta(&mut m, "stats:1:hits", &["t"]).await,
        60,
        "counter ttl 60",
    );
    assert_eq!(incr(&c, b"hits", 10, None, 0).await, 15);
    assert_eq!(get(&mut m, "stats:1:hits").await, Some((b"15".to_vec(), 0)));
    // memcached decrements in place, padding the shorter number with a space; mintcache
    // answers the digits.
    assert_eq!(incr(&c, b"hits", -13, None, 0).await, 2);
    assert_eq!(get(&mut m, "stats:1:hits").await, Some((b"2 ".to_vec(), 0)));
    let read = c.get(b"hits").await;
    assert_hit(&read, b"2");
    assert!(read.counter);

    set(
        &c,
        SetRequest {
            key: b"stock".to_vec(),
            value: b"42".to_vec(),
            counter: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        get(&mut m, "stats:1:stock").await,
        Some((b"42".to_vec(), 0))
    );
    assert_remaining(
        &meta(&mut m, "stats:1:stock", &["t"]).await,
        300,
        "a counter set with the default ttl, no grace",
    );
    // A counter memcached itself can increment: the digits are memcached's number.
    m.increment("stats:1:stock", 8).await.expect("incr");
    assert_eq!(incr(&c, b"stock", 0, None, 0).await, 50);
}

#[tokio::test]
async fn delete_removes_and_invalidate_marks_stale_for_the_grace() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let c = Calls::new(server.client().await).version("r1");
    let mut m = direct(&mc).await;
    for key in [&b"gone"[..], b"soft", b"no-grace"] {
        set(
            &c,
            SetRequest {
                key: key.to_vec(),
                value: b"v".to_vec(),
                ttl_seconds: 120,
                grace_seconds: if key == b"no-grace" { 0 } else { 40 },
                no_grace: key == b"no-grace",
                flags: 9,
                ..Default::default()
            },
        )
        .await;
    }

    assert!(c.delete(b"gone").await);
    assert_eq!(
        get(&mut m, ":r1:gone").await,
        None,
        "deleted from memcached"
    );
    assert!(!c.delete(b"gone").await);

    // Invalidate keeps the value for its grace, marked stale; the next reader through
    // mintcache wins memcached's refresh election (W), so memcached answers later readers Z.
    assert!(c.invalidate(b"soft").await);
    let first = c.get(b"soft").await;
    assert_eq!(first.outcome(), Outcome::Refresh, "{first:?}");
    assert_eq!(first.value, b"v");
    let item = meta(&mut m, ":r1:soft", &["v", "f", "t"]).await;
    assert_eq!(
        item.is_stale,
        Some(true),
        "memcached marks the item stale (X)"
    );
    assert_eq!(
        item.is_recache_winner,
        Some(false),
        "the refresh was already won (Z)"
    );
    assert_eq!(item.data.as_deref(), Some(&envelope(9, b"v")[..]));
    assert_eq!(item.flags, Some(FORMAT_1 | 40));
    assert_remaining(&item, 40, "invalidated: servable for the grace");
    assert_eq!(c.get(b"soft").await.outcome(), Outcome::Stale);

    // Without a grace there is no stale phase: invalidating removes the item.
    assert!(c.invalidate(b"no-grace").await);
    assert_eq!(get(&mut m, ":r1:no-grace").await, None);

    // A batch delete removes each item.
    set(
        &c,
        SetRequest {
            key: b"x".to_vec(),
            value: b"1".to_vec(),
            ..Default::default()
        },
    )
    .await;
    let results = c.delete_many(&[b"x".to_vec(), b"absent".to_vec()]).await;
    assert_eq!(
        results.iter().map(|r| r.deleted).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(get(&mut m, ":r1:x").await, None);
    let names = names(&mut m).await;
    assert_eq!(
        names,
        BTreeSet::from([
            uri_encoded(INSTANCE_MARKER.as_bytes()),
            uri_encoded(b":r1:soft")
        ])
    );
}

#[tokio::test]
async fn a_cold_miss_lease_is_an_empty_placeholder_until_the_fill() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.cache.fill_timeout_seconds = 20;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    let mut m = direct(&mc).await;

    let mut client = c.client.clone();
    let miss = client
        .get(harness::req(
            GetRequest {
                key: b"cold".to_vec(),
                lease_on_miss: Some(true),
                peek: false,
                ..Default::default()
            },
            None,
            None,
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(miss.outcome(), Outcome::Miss);
    assert!(!miss.lease_token.is_empty());
    // memcached created an empty item with client flags 0 for the fill timeout.
    let placeholder = meta(&mut m, ":1:cold", &["v", "f", "t"]).await;
    assert_eq!(placeholder.data, None, "no value yet");
    assert_eq!(placeholder.flags, Some(0));
    assert_remaining(&placeholder, 20, "placeholder for the fill timeout");

    set(
        &c,
        SetRequest {
            key: b"cold".to_vec(),
            value: b"filled".to_vec(),
            ttl_seconds: 60,
            grace_seconds: 10,
            lease_token: miss.lease_token,
            ..Default::default()
        },
    )
    .await;
    // A fill through a lease records how long it took since the lease was handed out, for
    // early refresh: format 2, the caller's flags, then the milliseconds, then the value.
    let item = meta(&mut m, ":1:cold", &["v", "f", "t"]).await;
    assert_eq!(item.flags, Some(FORMAT_2 | 10));
    let data = item.data.clone().expect("a value");
    assert_eq!(&data[..4], &0u32.to_be_bytes());
    let took = u32::from_be_bytes(data[4..8].try_into().expect("4 bytes"));
    assert!((1..60_000).contains(&took), "{took} ms");
    assert_eq!(&data[8..], b"filled");
    assert_remaining(&item, 70, "filled: ttl 60 + grace 10");
    // With early refresh off, the same fill is stored in format 1, as before it existed.
    let mut cfg = config(&[&mc]);
    cfg.cache.early_refresh_beta = 0.0;
    let old = TestServer::start(cfg).await;
    let c = Calls::new(old.client().await).namespace("old");
    let miss = c
        .client
        .clone()
        .get(harness::req(
            GetRequest {
                key: b"cold".to_vec(),
                lease_on_miss: Some(true),
                ..Default::default()
            },
            None,
            Some("old"),
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        miss.lease_token.len(),
        17,
        "a lease token of the earlier format"
    );
    set(
        &c,
        SetRequest {
            key: b"cold".to_vec(),
            value: b"filled".to_vec(),
            ttl_seconds: 60,
            grace_seconds: 10,
            lease_token: miss.lease_token,
            ..Default::default()
        },
    )
    .await;
    let item = meta(&mut m, "old:1:cold", &["v", "f", "t"]).await;
    assert_eq!(item.data.as_deref(), Some(&envelope(0, b"filled")[..]));
    assert_eq!(item.flags, Some(FORMAT_1 | 10));
}

#[tokio::test]
async fn flush_moves_the_key_space_to_a_new_generation() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let c = Calls::new(server.client().await)
        .namespace("cms")
        .version("3");
    let mut m = direct(&mc).await;
    c.set(b"page", b"old").await;
    assert_eq!(
        get(&mut m, "cms:3:page").await,
        Some((envelope(0, b"old"), FORMAT_1 | 30))
    );

    let before_ms = now_unix() * 1000;
    let flushed = c
        .client
        .clone()
        .flush(harness::req(FlushRequest {}, Some("3"), Some("cms")))
        .await
        .expect("flush")
        .into_inner();
    assert!(flushed.flushed);
    let after_ms = (now_unix() + 1) * 1000;
    // The generation: decimal digits (at least the Unix time in milliseconds), client flags 0,
    // never expiring, under `<namespace>:<version>@generation`.
    let (digits, flags) = get(&mut m, "cms:3@generation")
        .await
        .expect("the generation is stored");
    assert_eq!(flags, 0);
    let generation: i64 = std::str::from_utf8(&digits)
        .expect("ascii")
        .parse()
        .expect("decimal digits");
    assert!(
        (before_ms..=after_ms).contains(&generation),
        "generation {generation} set between {before_ms} and {after_ms}"
    );
    assert_eq!(
        remaining(&meta(&mut m, "cms:3@generation", &["t"]).await),
        -1
    );

    // Keys now carry the generation; the old item is left for memcached to evict.
    c.set(b"page", b"new").await;
    assert_eq!(
        get(&mut m, &format!("cms:3~{generation}:page")).await,
        Some((envelope(0, b"new"), FORMAT_1 | 30))
    );
    assert_eq!(
        get(&mut m, "cms:3:page").await,
        Some((envelope(0, b"old"), FORMAT_1 | 30))
    );
    assert_hit(&c.get(b"page").await, b"new");
}
