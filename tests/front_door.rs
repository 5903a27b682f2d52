//! The gRPC port against clients that misbehave at the HTTP/2 level, which a gRPC client library
//! never does: calls whose request never finishes arriving, floods of streams, cancellations in
//! bursts, oversize headers and messages. The misbehaving clients speak raw HTTP/2 (the `h2`
//! crate); the well-behaved ones are ordinary gRPC clients, whose calls must keep working.

mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, SendStream};
use harness::calls::{Calls, assert_hit};
use harness::{Memcached, ServerProcess, TestServer, config, http_get, sample, wait_for_or};
use mintcache_client::proto::GetRequest;
use tonic::Code;
use tonic::metadata::MetadataValue;

/// A raw HTTP/2 connection to the gRPC port.
struct RawConn {
    send: SendRequest<Bytes>,
    driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

/// A call started on a [`RawConn`]: its answer to come, and its request body, still open.
struct RawCall {
    response: ResponseFuture,
    body: SendStream<Bytes>,
}

impl RawConn {
    /// A connection that opens as many streams as it is asked to, at once.
    async fn open(addr: SocketAddr) -> Self {
        Self::with(addr, h2::client::Builder::new()).await
    }

    /// A connection that keeps to 100 open streams until the server's settings arrive, as
    /// gRPC clients do (hyper's default; the server's default limit too).
    async fn open_polite(addr: SocketAddr) -> Self {
        let mut builder = h2::client::Builder::new();
        builder.initial_max_send_streams(100);
        Self::with(addr, builder).await
    }

    async fn with(addr: SocketAddr, builder: h2::client::Builder) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (send, connection) = builder.handshake(tcp).await.expect("handshake");
        Self {
            send,
            driver: tokio::spawn(connection),
        }
    }

    /// Sends the headers of a call of `rpc` (with `metadata`), and leaves its body open.
    /// Beyond the server's stream limit, the stream waits in the client until one closes.
    async fn start(&mut self, rpc: &str, metadata: &[(&str, &str)]) -> RawCall {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://mintcache/mintcache.v1.Cache/{rpc}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in metadata {
            request = request.header(*name, *value);
        }
        let request = request.body(()).expect("request");
        // A fresh handle is always ready: streams beyond the limit queue in the client.
        let mut send = self.send.clone().ready().await.expect("connection open");
        let (response, body) = send.send_request(request, false).expect("stream");
        RawCall { response, body }
    }

    /// How the connection ended, if it has: a GOAWAY from the server shows here.
    fn ended(&self) -> bool {
        self.driver.is_finished()
    }
}

/// A gRPC message as it travels in a request body: 1 flag byte, 4 length bytes, the message.
fn framed(message: &impl prost::Message) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut out = Vec::with_capacity(5 + encoded.len());
    out.push(0);
    out.extend_from_slice(&u32::try_from(encoded.len()).expect("small").to_be_bytes());
    out.extend_from_slice(&encoded);
    out.into()
}

fn get_request(key: &[u8]) -> GetRequest {
    GetRequest {
        key: key.to_vec(),
        ..GetRequest::default()
    }
}

/// `%XX` escapes of a `grpc-message`, decoded.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn grpc_status(headers: &http::HeaderMap) -> Option<(Code, String)> {
    let code: i32 = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some((Code::from_i32(code), message))
}

/// The gRPC status a call was answered with (from a trailers-only answer's headers, or from
/// the trailers after the reply), or the HTTP/2 error that ended the stream instead.
async fn status_of(response: ResponseFuture) -> Result<(Code, String), h2::Error> {
    let response = response.await?;
    if let Some(status) = grpc_status(response.headers()) {
        return Ok(status);
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    Ok(grpc_status(&trailers).unwrap_or((Code::Unknown, "no grpc-status".into())))
}

async fn metrics(admin: SocketAddr) -> String {
    http_get(admin, "/metrics").await.1
}

/// Waits until at least `n` Cache calls are in flight.
async fn wait_in_flight_at_least(admin: SocketAddr, n: f64) {
    wait_for_or(
        &format!("{n} calls in flight"),
        || async move { sample(&metrics(admin).await, "mintcache_rpc_in_flight") >= n },
        || metrics(admin),
    )
    .await;
}

/// Waits until no Cache call is in flight.
async fn wait_none_in_flight(admin: SocketAddr) {
    wait_for_or(
        "no call in flight",
        || async move { sample(&metrics(admin).await, "mintcache_rpc_in_flight") == 0.0 },
        || metrics(admin),
    )
    .await;
}

/// Row of `mintcache_rpc_requests_total` for `rpc` answered with `code`.
fn requests(rpc: &str, code: &str) -> String {
    format!("mintcache_rpc_requests_total{{code=\"{code}\",outcome=\"none\",rpc=\"{rpc}\"}}")
}

/// One connection opens 1,100 calls that send 3 bytes of their body and never finish: the
/// stream limit caps what one connection holds, the stuck calls hold no call slot while their
/// request is still arriving, and each is answered (its resources freed) once
/// `server.request_read_timeout_ms` has passed. Everyone else is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_calls_of_one_connection_lock_out_no_one() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.server.request_read_timeout_ms = 3000;
    let server = TestServer::start(cfg).await;
    let victim = Calls::new(server.client().await);
    victim.set(b"k", b"v").await;

    let mut attacker = RawConn::open(server.addr).await;
    let mut stuck = Vec::new();
    for _ in 0..1100 {
        let mut call = attacker.start("Get", &[]).await;
        call.body
            .send_data(Bytes::from_static(&[0, 0, 0]), false)
            .expect("3 body bytes");
        stuck.push(call);
    }
    wait_in_flight_at_least(server.admin, 100.0).await;
    for _ in 0..50 {
        assert_hit(&victim.get(b"k").await, b"v");
    }
    // The first stuck calls (the ones the server took) are answered once their request has
    // not arrived in time, naming the setting.
    for call in stuck.drain(..100) {
        let (code, message) = status_of(call.response).await.expect("an answer");
        assert_eq!(code, Code::DeadlineExceeded, "{message}");
        assert!(
            message.contains("server.request_read_timeout_ms"),
            "{message}"
        );
    }
    drop(stuck);
    attacker.driver.abort();
    wait_none_in_flight(server.admin).await;
    assert_hit(&victim.get(b"k").await, b"v");
}

/// With tokens required, calls without one are refused on their headers: they never hold
/// anything while their body trickles in.
#[tokio::test]
async fn unauthenticated_calls_are_refused_before_their_body() {
    let token = "front-door-token";
    let mut cfg = config(&[]);
    cfg.auth.client_token_sha256 = vec![sha256_hex(token)];
    cfg.auth.require_token = true;
    cfg.server.max_concurrent_calls = 8;
    let server = TestServer::start(cfg).await;
    let mut attacker = RawConn::open(server.addr).await;
    let mut stuck = Vec::new();
    for _ in 0..100 {
        let mut call = attacker.start("Get", &[]).await;
        call.body
            .send_data(Bytes::from_static(&[0, 0, 0]), false)
            .expect("3 body bytes");
        stuck.push(call);
    }
    // Answered while their bodies are still open.
    for call in stuck {
        let (code, _) = status_of(call.response).await.expect("an answer");
        assert_eq!(code, Code::Unauthenticated);
    }
    let mut client = server.client().await;
    let mut request = tonic::Request::new(get_request(b"k"));
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).expect("ascii"),
    );
    client
        .get(request)
        .await
        .expect("a caller with a token is served");
}

fn sha256_hex(token: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Calls cancelled by their client in bursts (a fifth of them, reset before the server took
/// them) never make the server close the connection (a GOAWAY `too_many_resets` would fail
/// every other call on it): the calls that were not cancelled all succeed.
#[tokio::test]
async fn cancellations_in_bursts_never_close_the_connection() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    Calls::new(server.client().await).set(b"k", b"v").await;
    let mut conn = RawConn::open_polite(server.addr).await;
    let message = framed(&get_request(b"k"));
    // One call first, so that the server's settings are in before the bursts.
    let mut first = conn.start("Get", &[]).await;
    first
        .body
        .send_data(message.clone(), true)
        .expect("request");
    assert_eq!(status_of(first.response).await.expect("answer").0, Code::Ok);
    let mut kept = Vec::new();
    let mut cancelled = 0;
    for round in 0..5 {
        // Sent without yielding, so that each burst reaches the server at once.
        let mut burst = Vec::new();
        for i in 0..200 {
            let mut call = conn.start("Get", &[]).await;
            call.body
                .send_data(message.clone(), true)
                .expect("request body");
            if i % 5 == 0 {
                call.body.send_reset(Reason::CANCEL);
                cancelled += 1;
            } else {
                burst.push(call.response);
            }
        }
        for response in burst {
            match status_of(response).await {
                Ok((code, message)) => kept.push((code, message)),
                Err(e) => panic!("round {round}: a call that was not cancelled failed: {e:?}"),
            }
        }
    }
    assert_eq!(cancelled, 200);
    assert_eq!(kept.len(), 800);
    assert!(
        kept.iter().all(|(code, _)| *code == Code::Ok),
        "{:?}",
        kept.iter().find(|(code, _)| *code != Code::Ok)
    );
    assert!(!conn.ended(), "the server closed the connection");
}

/// A call its client cancels before its request has arrived is counted as CANCELLED, never
/// as a server fault (INTERNAL); so is one cancelled while the server works on it.
#[tokio::test]
async fn client_cancellations_are_counted_as_cancelled() {
    let hung = harness::HungNode::start();
    let mut cfg = mintcache::config::Config::default();
    cfg.memcached.servers = vec![hung.addr().parse().expect("spec")];
    cfg.memcached.timeout_ms = 60_000;
    cfg.memcached.failure_limit = 0;
    let server = TestServer::start(cfg).await;
    let mut conn = RawConn::open(server.addr).await;

    // Before its body is complete.
    let mut call = conn.start("Set", &[]).await;
    call.body
        .send_data(Bytes::from_static(&[0, 0, 0]), false)
        .expect("3 body bytes");
    wait_in_flight_at_least(server.admin, 1.0).await;
    call.body.send_reset(Reason::CANCEL);
    let set_cancelled = requests("Set", "CANCELLED");
    wait_for_or(
        "the cancelled Set to be counted",
        || async { sample(&metrics(server.admin).await, &set_cancelled) == 1.0 },
        || metrics(server.admin),
    )
    .await;

    // With its request complete, while the server waits for memcached.
    let mut call = conn.start("Get", &[]).await;
    call.body
        .send_data(framed(&get_request(b"k")), true)
        .expect("request");
    wait_in_flight_at_least(server.admin, 1.0).await;
    call.body.send_reset(Reason::CANCEL);
    let get_cancelled =
        "mintcache_rpc_requests_total{code=\"CANCELLED\",outcome=\"none\",rpc=\"Get\"}";
    wait_for_or(
        "the cancelled Get to be counted",
        || async { sample(&metrics(server.admin).await, get_cancelled) == 1.0 },
        || metrics(server.admin),
    )
    .await;
    // Series of every common code are there from the start, at 0: none of INTERNAL moved.
    let all = metrics(server.admin).await;
    let internal: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("code=\"INTERNAL\"") && !l.ends_with(" 0"))
        .collect();
    assert!(internal.is_empty(), "{internal:?}");
    wait_none_in_flight(server.admin).await;
    drop(hung);
}

/// An `authorization` header too long to be a token (over HTTP/2's usual 16 KiB header list)
/// reaches the auth layer and is refused as UNAUTHENTICATED, and the connection stays usable.
#[tokio::test]
async fn oversize_authorization_is_unauthenticated() {
    let server = TestServer::start(config(&[])).await;
    let mut client = server.client().await;
    for len in [16 * 1024 + 1, 40 * 1024] {
        let mut request = tonic::Request::new(get_request(b"k"));
        let bearer = format!("Bearer {}", "a".repeat(len));
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(bearer).expect("ascii"),
        );
        let e = client.get(request).await.expect_err("refused");
        assert_eq!(e.code(), Code::Unauthenticated, "{len} bytes: {e:?}");
    }
    client
        .get(tonic::Request::new(get_request(b"k")))
        .await
        .expect("the same connection still serves");
}

/// A request message over `server.max_message_bytes` is RESOURCE_EXHAUSTED (gRPC's code for
/// a message over a size limit), refused on its length prefix before it is read.
#[tokio::test]
async fn oversize_messages_are_resource_exhausted() {
    let mut cfg = config(&[]);
    cfg.limits.max_value_bytes = 1000;
    cfg.limits.max_key_bytes = 100;
    cfg.server.max_message_bytes = 2124;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    let e = c
        .try_set(b"k", &[0u8; 4096], 0)
        .await
        .expect_err("message too large");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("server.max_message_bytes"), "{e:?}");

    // Refused on the length prefix: the rest of the message never has to arrive.
    let mut conn = RawConn::open(server.addr).await;
    let mut call = conn.start("Set", &[]).await;
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&(1u32 << 30).to_be_bytes());
    call.body
        .send_data(Bytes::from(prefix), false)
        .expect("length prefix");
    let (code, message) = status_of(call.response).await.expect("an answer");
    assert_eq!(code, Code::ResourceExhausted, "{message}");
}

/// Health and reflection take no part in the request budget (probes are never shed), so their
/// messages are kept small: a health check announcing 1 MiB is refused on its length prefix
/// rather than read, and health keeps answering.
#[tokio::test]
async fn probe_messages_are_small() {
    let server = TestServer::start(config(&[])).await;
    let conn = RawConn::open(server.addr).await;
    let request = http::Request::builder()
        .method("POST")
        .uri("http://mintcache/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let mut send = conn.send.clone().ready().await.expect("connection open");
    let (response, mut body) = send.send_request(request, false).expect("stream");
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&(1u32 << 20).to_be_bytes());
    prefix.extend_from_slice(&[0; 10]);
    body.send_data(Bytes::from(prefix), false)
        .expect("length prefix");
    let (code, message) = tokio::time::timeout(Duration::from_secs(30), status_of(response))
        .await
        .expect("refused without waiting for the rest of the message")
        .expect("an answer");
    assert_ne!(code, Code::Ok, "{message}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect"),
    );
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health answers");
}

/// VmRSS of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS line");
    kib * 1024
}

/// Memory of request bodies is bounded by `server.max_buffered_request_bytes`: 100 calls each
/// sending 3.9 MiB of a 4 MiB message and never finishing grow the server's resident memory by
/// at most that budget plus an allowance for HTTP/2 buffers (each connection's unread window)
/// and the allocator; the calls beyond the budget are refused with RESOURCE_EXHAUSTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_memory_is_bounded_by_the_budget() {
    const MIB: u64 = 1024 * 1024;
    const BUDGET: u64 = 16 * MIB;
    const ALLOWANCE: u64 = 32 * MIB;
    const CONNECTIONS: usize = 4;
    const CALLS_PER_CONNECTION: usize = 25;
    let server = ServerProcess::start(&[
        (
            "MINTCACHE_SERVER__MAX_BUFFERED_REQUEST_BYTES",
            BUDGET.to_string(),
        ),
        // Nothing times out while the memory is measured.
        ("MINTCACHE_SERVER__REQUEST_READ_TIMEOUT_MS", "600000".into()),
    ]);
    let c = Calls::new(server.client().await);
    c.set(b"k", b"v").await;
    let before = rss_bytes(server.pid());

    // Each call announces a message of 4 MiB - 1 KiB and sends all of it but 100 KiB.
    let announced: u32 = 4 * 1024 * 1024 - 1024;
    let sent = announced as usize - 100 * 1024;
    let mut payload = vec![0u8; 5 + sent];
    payload[1..5].copy_from_slice(&announced.to_be_bytes());
    let payload = Bytes::from(payload);
    let started = Instant::now();
    let mut conns = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut conn = RawConn::open(server.addr).await;
        for _ in 0..CALLS_PER_CONNECTION {
            calls.push(conn.start("Set", &[]).await);
        }
        conns.push(conn);
    }
    // Push every body as far as the server takes it: to the end (the server read it), or
    // until the server refuses the call.
    let pushes: Vec<_> = calls
        .into_iter()
        .map(|call| {
            tokio::spawn(tokio::time::timeout(
                PUSH_PATIENCE,
                push(call, payload.clone()),
            ))
        })
        .collect();
    let mut refused = 0;
    let mut held = Vec::new();
    for push in pushes {
        match push
            .await
            .expect("push task")
            .expect("the server neither took nor refused a body")
        {
            Pushed::All(call) => held.push(call),
            Pushed::Refused(code, message) => {
                assert_eq!(code, Code::ResourceExhausted, "{message}");
                assert!(
                    message.contains("server.max_buffered_request_bytes"),
                    "{message}"
                );
                refused += 1;
            }
        }
    }
    let after = rss_bytes(server.pid());
    let growth = after.saturating_sub(before);
    let mib = |bytes: u64| bytes as f64 / MIB as f64;
    eprintln!(
        "RSS {:.1} MiB -> {:.1} MiB (+{:.1} MiB) with {} calls holding {:.1} MiB each and {refused} refused, in {:?}",
        mib(before),
        mib(after),
        mib(growth),
        held.len(),
        mib(sent as u64),
        started.elapsed()
    );
    assert!(
        growth <= BUDGET + ALLOWANCE,
        "resident memory grew by {} MiB, over the {} MiB budget + {} MiB allowance",
        growth / MIB,
        BUDGET / MIB,
        ALLOWANCE / MIB
    );
    assert!(
        refused > 0,
        "no call was refused: the budget was never reached"
    );
    drop(held);
    drop(conns);
    c.set(b"k", b"after").await;
}

/// How long a body may take to be taken or refused: a bound on a broken server, not a measure.
const PUSH_PATIENCE: Duration = Duration::from_secs(120);

enum Pushed {
    /// The whole payload was taken by the server; the call is still open.
    All(RawCall),
    /// The server answered (refused) the call.
    Refused(Code, String),
}

/// Sends `payload` on the call's body as the server's flow control allows.
async fn push(mut call: RawCall, mut payload: Bytes) -> Pushed {
    while !payload.is_empty() {
        call.body.reserve_capacity(payload.len());
        match std::future::poll_fn(|cx| call.body.poll_capacity(cx)).await {
            Some(Ok(n)) if n > 0 => {
                let chunk = payload.split_to(n.min(payload.len()));
                if call.body.send_data(chunk, false).is_err() {
                    break;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    if payload.is_empty() {
        return Pushed::All(call);
    }
    match status_of(call.response).await {
        Ok((code, message)) => Pushed::Refused(code, message),
        Err(e) => Pushed::Refused(Code::Unknown, format!("stream ended without a status: {e}")),
    }
}

/// HTTP/2 frame types and flags the hand-written connection below uses (RFC 9113 §6).
mod frame {
    pub(crate) const DATA: u8 = 0x0;
    pub(crate) const HEADERS: u8 = 0x1;
    pub(crate) const RST_STREAM: u8 = 0x3;
    pub(crate) const SETTINGS: u8 = 0x4;
    pub(crate) const PING: u8 = 0x6;
    pub(crate) const GOAWAY: u8 = 0x7;
    pub(crate) const CONTINUATION: u8 = 0x9;
    pub(crate) const END_STREAM: u8 = 0x1;
    pub(crate) const ACK: u8 = 0x1;
    pub(crate) const END_HEADERS: u8 = 0x4;
    pub(crate) const PROTOCOL_ERROR: u32 = 0x1;
}

/// A header block written by hand (HPACK, RFC 7541), strings as they are (never Huffman):
/// it can carry what no client library sends, such as an uppercase name or a NUL in a value.
#[derive(Clone, Default)]
struct HeaderBlock(Vec<u8>);

impl HeaderBlock {
    /// An integer with an `n`-bit prefix, the prefix's byte starting with `flags` (§5.1).
    fn int(&mut self, flags: u8, n: u32, mut value: usize) {
        let max = (1usize << n) - 1;
        if value < max {
            self.0.push(flags | value as u8);
            return;
        }
        self.0.push(flags | max as u8);
        value -= max;
        while value >= 128 {
            self.0.push((value % 128) as u8 | 0x80);
            value /= 128;
        }
        self.0.push(value as u8);
    }

    fn string(&mut self, s: &[u8]) {
        self.int(0, 7, s.len());
        self.0.extend_from_slice(s);
    }

    /// A literal field that the server's table does not keep (§6.2.2).
    fn literal(mut self, name: &[u8], value: &[u8]) -> Self {
        self.0.push(0x00);
        self.string(name);
        self.string(value);
        self
    }

    /// A literal field that the server's table keeps, as entry 62 (§6.2.1): the entries
    /// before it move up by one.
    fn kept(mut self, name: &[u8], value: &[u8]) -> Self {
        self.0.push(0x40);
        self.string(name);
        self.string(value);
        self
    }

    /// A literal value under the name of the table's entry `index` (§6.2.1, §6.2.2).
    fn named(mut self, index: usize, value: &[u8], kept: bool) -> Self {
        if kept {
            self.int(0x40, 6, index);
        } else {
            self.int(0x00, 4, index);
        }
        self.string(value);
        self
    }

    /// A field of the server's table, by index (§6.1): 62 is the latest kept.
    fn indexed(mut self, index: usize) -> Self {
        self.int(0x80, 7, index);
        self
    }

    /// The fields of a gRPC call of `rpc` on the Cache service.
    fn call(rpc: &str) -> Self {
        Self::default()
            .literal(b":method", b"POST")
            .literal(b":scheme", b"http")
            .literal(b":path", format!("/mintcache.v1.Cache/{rpc}").as_bytes())
            .literal(b":authority", b"mintcache")
            .literal(b"content-type", b"application/grpc")
            .literal(b"te", b"trailers")
    }
}

/// What the server sent on one stream of a [`FrameConn`].
#[derive(Debug, Default)]
struct StreamSeen {
    /// HEADERS frames (response headers, trailers).
    headers: usize,
    data: Vec<u8>,
    /// The stream ended with END_STREAM.
    ended: bool,
    /// The stream was reset by the server, with this error code.
    reset: Option<u32>,
}

impl StreamSeen {
    fn closed(&self) -> bool {
        self.ended || self.reset.is_some()
    }

    /// The one GetResponse the stream carried, and that it ended normally (a reply, then
    /// trailers).
    fn get_response(&self) -> mintcache_client::proto::GetResponse {
        assert!(self.ended && self.reset.is_none(), "{self:?}");
        assert_eq!(self.headers, 2, "headers and trailers: {self:?}");
        assert!(self.data.len() >= 5, "{self:?}");
        let len = u32::from_be_bytes(self.data[1..5].try_into().expect("4 bytes")) as usize;
        assert_eq!(self.data.len(), 5 + len, "one message: {self:?}");
        prost::Message::decode(&self.data[5..]).expect("a GetResponse")
    }
}

/// An HTTP/2 connection written frame by frame over TCP: it sends what a client library
/// refuses to (malformed header fields), and reads the server's frames without decoding their
/// headers (DATA is enough to tell a reply, and RST_STREAM and GOAWAY are plain).
struct FrameConn {
    io: Box<dyn FrameIo>,
    input: Vec<u8>,
    streams: std::collections::HashMap<u32, StreamSeen>,
    next_stream: u32,
}

/// A byte stream to a server: TCP, or TLS over TCP.
trait FrameIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> FrameIo for T {}

/// How long a frame may take to come: a bound on a broken server, not a measure.
const FRAME_PATIENCE: Duration = Duration::from_secs(30);

impl FrameConn {
    /// Connects, sends the preface and empty settings, and acknowledges the server's.
    async fn open(addr: SocketAddr) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        Self::over(Box::new(tcp)).await
    }

    /// As [`FrameConn::open`], over TLS (ALPN `h2`), trusting `ca_pem`.
    async fn open_tls(addr: SocketAddr, ca_pem: &str) -> Self {
        use tokio_rustls::rustls;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA certificate")).expect("trusted");
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        Self::over(Box::new(tls)).await
    }

    async fn over(mut io: Box<dyn FrameIo>) -> Self {
        use tokio::io::AsyncWriteExt as _;
        io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("preface");
        let mut conn = Self {
            io,
            input: Vec::new(),
            streams: std::collections::HashMap::new(),
            next_stream: 1,
        };
        conn.send(frame::SETTINGS, 0, 0, &[]).await;
        conn.ping().await;
        conn
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        use tokio::io::AsyncWriteExt as _;
        let mut out = Vec::with_capacity(9 + payload.len());
        out.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        self.io.write_all(&out).await.expect("write a frame");
        self.io.flush().await.expect("flush");
    }

    /// Opens the next stream with `block` as its headers; returns its id.
    async fn start(&mut self, block: &HeaderBlock, end_stream: bool) -> u32 {
        let id = self.next_stream;
        self.next_stream += 2;
        let flags = frame::END_HEADERS | if end_stream { frame::END_STREAM } else { 0 };
        self.send(frame::HEADERS, flags, id, &block.0).await;
        id
    }

    async fn data(&mut self, stream: u32, bytes: &[u8], end_stream: bool) {
        let flags = if end_stream { frame::END_STREAM } else { 0 };
        self.send(frame::DATA, flags, stream, bytes).await;
    }

    /// Reads one frame from the server, answers its SETTINGS and PINGs, and notes what it
    /// says about streams. Returns the frame's type and flags; fails on GOAWAY.
    async fn read_frame(&mut self) -> (u8, u8) {
        use tokio::io::AsyncReadExt as _;
        loop {
            if self.input.len() >= 9 {
                let len =
                    u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
                if self.input.len() >= 9 + len {
                    let head: Vec<u8> = self.input.drain(..9).collect();
                    let payload: Vec<u8> = self.input.drain(..len).collect();
                    let (kind, flags) = (head[3], head[4]);
                    let stream =
                        u32::from_be_bytes(head[5..9].try_into().expect("4 bytes")) & 0x7fff_ffff;
                    self.note(kind, flags, stream, &payload).await;
                    return (kind, flags);
                }
            }
            let mut buf = [0u8; 16 * 1024];
            let n = tokio::time::timeout(FRAME_PATIENCE, self.io.read(&mut buf))
                .await
                .expect("the server sends something")
                .expect("read");
            assert!(n > 0, "the server closed the connection");
            self.input.extend_from_slice(&buf[..n]);
        }
    }

    async fn note(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        match kind {
            frame::GOAWAY => {
                let code = u32::from_be_bytes(payload[4..8].try_into().expect("4 bytes"));
                panic!(
                    "the server closed the connection: GOAWAY error code {code} ({:?})",
                    String::from_utf8_lossy(&payload[8..])
                );
            }
            frame::SETTINGS if flags & frame::ACK == 0 => {
                self.send(frame::SETTINGS, frame::ACK, 0, &[]).await;
            }
            frame::PING if flags & frame::ACK == 0 => {
                let payload = payload.to_vec();
                self.send(frame::PING, frame::ACK, 0, &payload).await;
            }
            frame::HEADERS | frame::CONTINUATION | frame::DATA | frame::RST_STREAM => {
                let seen = self.streams.entry(stream).or_default();
                match kind {
                    frame::HEADERS => seen.headers += 1,
                    frame::DATA => seen.data.extend_from_slice(payload),
                    frame::RST_STREAM => {
                        seen.reset = Some(u32::from_be_bytes(
                            payload[..4].try_into().expect("4 bytes"),
                        ));
                    }
                    _ => {}
                }
                if kind != frame::RST_STREAM && flags & frame::END_STREAM != 0 {
                    seen.ended = true;
                }
            }
            _ => {}
        }
    }

    /// Reads until `stream` is closed by the server (ended or reset).
    async fn until_closed(&mut self, stream: u32) -> &StreamSeen {
        while !self.streams.get(&stream).is_some_and(StreamSeen::closed) {
            self.read_frame().await;
        }
        &self.streams[&stream]
    }

    /// A PING round trip: the connection is open and the server reads it.
    async fn ping(&mut self) {
        self.send(frame::PING, 0, 0, b"mintcach").await;
        loop {
            let (kind, flags) = self.read_frame().await;
            if kind == frame::PING && flags & frame::ACK != 0 {
                return;
            }
        }
    }

    /// A whole Get of `key`: the reply.
    async fn get(&mut self, key: &[u8]) -> mintcache_client::proto::GetResponse {
        let id = self.start(&HeaderBlock::call("Get"), false).await;
        self.data(id, &framed(&get_request(key)), true).await;
        self.until_closed(id).await.get_response()
    }
}

/// Header fields HTTP/2 forbids (RFC 9113 §8.2.1), each of which makes a request malformed:
/// the call that sends one fails, and nothing else.
const MALFORMED_FIELDS: &[(&str, &[u8], &[u8])] = &[
    ("an uppercase name", b"X-Mintcache-Test", b"v"),
    ("NUL in a value", b"x-mintcache-test", b"a\0b"),
    ("CRLF in a value", b"x-mintcache-test", b"a\r\nb"),
    ("a lone LF in a value", b"x-mintcache-test", b"a\nb"),
    ("a space in a name", b"x mintcache", b"v"),
    ("an empty name", b"", b"v"),
    ("an unknown pseudo-header", b":mintcache", b"v"),
    ("a connection-specific field", b"connection", b"close"),
];

/// A call with a malformed header field on a connection it shares with other calls fails
/// alone (RST_STREAM PROTOCOL_ERROR for its stream): a call in flight on the same connection
/// (its request still arriving) completes, and the connection keeps serving new calls — with
/// the field sent both as a literal the server's header table keeps and one it does not.
#[tokio::test]
async fn a_malformed_header_fails_its_call_alone() {
    let server = TestServer::start(config(&[])).await;
    Calls::new(server.client().await).set(b"k", b"v").await;
    malformed_calls_fail_alone(server.addr, None).await;
}

/// The same over TLS: what the client sends is judged after decryption.
#[tokio::test]
async fn a_malformed_header_fails_its_call_alone_over_tls() {
    let pki = harness::pki::Pki::new();
    let cert = pki.issue(&["localhost", "127.0.0.1"], "mintcache server");
    let mut cfg = config(&[]);
    cfg.tls.cert = Some(pki.write("server.pem", &cert.cert));
    cfg.tls.key = Some(pki.write("server.key", &cert.key));
    let server = TestServer::start(cfg).await;
    let ca = pki.ca_pem();
    let mut conn = FrameConn::open_tls(server.addr, &ca).await;
    let id = conn.start(&HeaderBlock::call("Set"), false).await;
    let set = mintcache_client::proto::SetRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    conn.data(id, &framed(&set), true).await;
    let seen = conn.until_closed(id).await;
    assert!(seen.ended && seen.reset.is_none(), "{seen:?}");
    malformed_calls_fail_alone(server.addr, Some(ca)).await;
}

/// Each of [`MALFORMED_FIELDS`], as a literal kept in the table and one that is not, on its own
/// connection (over TLS trusting the given CA), beside a call in flight; `k` holds `v`.
async fn malformed_calls_fail_alone(addr: SocketAddr, tls_ca: Option<String>) {
    let mut failures = Vec::new();
    for (case, name, value) in MALFORMED_FIELDS {
        for kept in [false, true] {
            let case = format!("{case} ({})", if kept { "kept" } else { "not kept" });
            let run = tokio::spawn(malformed_call_beside_another(
                addr,
                tls_ca.clone(),
                name,
                value,
                kept,
            ));
            match run.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("{case}: {e}")),
                Err(e) => failures.push(format!("{case}: {}", panic_message(e))),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// One connection: a call in flight (its headers and the first 3 bytes of its request), then a
/// call with the field `name: value`, which must be reset alone; then the call in flight
/// completes, and a new call on the same connection is served.
async fn malformed_call_beside_another(
    addr: SocketAddr,
    tls_ca: Option<String>,
    name: &'static [u8],
    value: &'static [u8],
    kept: bool,
) -> Result<(), String> {
    let message = framed(&get_request(b"k"));
    let mut conn = match tls_ca {
        Some(ca) => FrameConn::open_tls(addr, &ca).await,
        None => FrameConn::open(addr).await,
    };
    let innocent = conn.start(&HeaderBlock::call("Get"), false).await;
    conn.data(innocent, &message[..3], false).await;
    let block = HeaderBlock::call("Get");
    let block = if kept {
        block.kept(name, value)
    } else {
        block.literal(name, value)
    };
    let offender = conn.start(&block, true).await;
    let seen = conn.until_closed(offender).await;
    if seen.reset != Some(frame::PROTOCOL_ERROR) {
        return Err(format!("the offending call saw {seen:?}"));
    }
    conn.data(innocent, &message[3..], true).await;
    let reply = conn.until_closed(innocent).await.get_response();
    assert_hit(&reply, b"v");
    assert_hit(&conn.get(b"k").await, b"v");
    conn.ping().await;
    Ok(())
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default(),
        Err(e) => e.to_string(),
    }
}

/// A malformed field kept in the client's header table stays in step with the server's table:
/// later calls that refer to entries by index mean what the client means. The client's
/// table after each call is in the comments (62 is the newest entry).
#[tokio::test]
async fn header_table_references_after_a_malformed_field() {
    let server = TestServer::start(config(&[])).await;
    let calls = Calls::new(server.client().await);
    calls.set(b"k", b"v").await;
    calls.clone().version("v2").set(b"k", b"v2").await;
    let mut conn = FrameConn::open(server.addr).await;
    let message = framed(&get_request(b"k"));
    let call = async |conn: &mut FrameConn, block: HeaderBlock| {
        let id = conn.start(&block, false).await;
        conn.data(id, &message, true).await;
        let seen = conn.until_closed(id).await;
        if seen.reset.is_some() {
            None
        } else {
            Some(seen.get_response())
        }
    };
    // 62: x-cache-version: "v2\0" (M, malformed: the call is reset); 63: x-mintcache-test: 0.
    let block = HeaderBlock::call("Get")
        .kept(b"x-mintcache-test", b"0")
        .kept(b"x-cache-version", b"v2\0");
    assert!(call(&mut conn, block).await.is_none());
    // 62: x-mintcache-test: 1; 63: M; 64: x-mintcache-test: 0.
    let block = HeaderBlock::call("Get").kept(b"x-mintcache-test", b"1");
    assert_hit(&call(&mut conn, block).await.expect("served"), b"v");
    let block = HeaderBlock::call("Get").indexed(62);
    assert_hit(&call(&mut conn, block).await.expect("served"), b"v");
    // M itself: reset.
    let block = HeaderBlock::call("Get").indexed(63);
    assert!(call(&mut conn, block).await.is_none());
    // M's name with a valid value: `x-cache-version: v2`, so the value stored in v2.
    let block = HeaderBlock::call("Get").named(63, b"v2", false);
    assert_hit(&call(&mut conn, block).await.expect("served"), b"v2");
    // 62: x-cache-version: v2; 63: x-mintcache-test: 1; 64: M; 65: x-mintcache-test: 0.
    let block = HeaderBlock::call("Get").named(63, b"v2", true);
    assert_hit(&call(&mut conn, block).await.expect("served"), b"v2");
    let block = HeaderBlock::call("Get").indexed(62);
    assert_hit(&call(&mut conn, block).await.expect("served"), b"v2");
    let block = HeaderBlock::call("Get").indexed(63);
    assert_hit(&call(&mut conn, block).await.expect("served"), b"v");
    // Entries that fill the table to exactly 4096 bytes (the four above take 197): had the
    // server counted M even a byte larger, it would have evicted x-mintcache-test: 0, and
    // naming it would be a connection error.
    for pad in [1000, 1000, 1000, 899] {
        let value = vec![b'p'; pad - 32 - b"x-mintcache-pad".len()];
        let block = HeaderBlock::call("Get").kept(b"x-mintcache-pad", &value);
        assert_hit(&call(&mut conn, block).await.expect("served"), b"v");
    }
    // 62..65: the pads; 66: x-cache-version: v2; 67: x-mintcache-test: 1; 68: M;
    // 69: x-mintcache-test: 0.
    let block = HeaderBlock::call("Get").indexed(69);
    assert_hit(&call(&mut conn, block).await.expect("served"), b"v");
    let block = HeaderBlock::call("Get").indexed(66);
    assert_hit(&call(&mut conn, block).await.expect("served"), b"v2");
    let block = HeaderBlock::call("Get").indexed(68);
    assert!(call(&mut conn, block).await.is_none());
    // One more entry evicts the oldest, and only it: 67: v2; 68: x-mintcache-test: 1; 69: M.
    let block = HeaderBlock::call("Get").kept(b"x-mintcache-test", b"2");
    assert_hit(&call(&mut conn, block).await.expect("served"), b"v");
    let block = HeaderBlock::call("Get").indexed(67);
    assert_hit(&call(&mut conn, block).await.expect("served"), b"v2");
    let block = HeaderBlock::call("Get").indexed(68);
    assert_hit(&call(&mut conn, block).await.expect("served"), b"v");
    let block = HeaderBlock::call("Get").indexed(69);
    assert!(call(&mut conn, block).await.is_none());
    conn.ping().await;
}
