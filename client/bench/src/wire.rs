//! A lean gRPC client for the load generator: unary calls of the `mintcache.v1.Cache` service
//! straight over an `h2` connection (the HTTP/2 implementation under tonic), without tonic's
//! channel, tower buffer and hyper dispatch in between.
//!
//! Why not the generated client: on a small machine the load generator shares the CPUs with
//! the server it measures, so every microsecond it spends per call is taken from the server.
//! Measured on 2 cores against the no-op server (unary Get, 4 connections x 16 streams), the
//! generated client over a tonic channel cost about 20 µs of CPU per call and reached 55-65%
//! of h2load's rate; this client costs about 11 µs (h2load: about 8) and reaches h2load's rate
//! (docs/BENCHMARKS.md has the cross-check). With the calls of a connection driven in the
//! connection's own task ([`super::grpc::drive`]), the requests that replies make ready leave
//! in one write, as with an event-loop load generator.
//!
//! It speaks the gRPC-over-HTTP/2 protocol for unary calls: a POST with `content-type:
//! application/grpc` and `te: trailers`, one length-prefixed uncompressed message each way,
//! `grpc-status` and `grpc-message` in the trailers (or in the headers of a trailers-only
//! answer), HTTP statuses mapped to gRPC codes as the gRPC specification says. Plaintext
//! HTTP/2 only. A connection that breaks is not reopened: its calls then fail as UNAVAILABLE.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use mintcache_client::{AUTHORIZATION_HEADER, NAMESPACE_HEADER, VERSION_HEADER};
use tokio::net::TcpStream;
use tonic::{Code, Status};

use super::error::BenchError;
use super::options::GrpcTarget;
use super::record::Op;

/// HTTP/2 flow-control windows of the client (h2load's defaults are larger still): a reply
/// never waits for a window update.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 8 << 20;
/// The largest reply accepted: the server's default message limit and the prefix.
const MAX_REPLY: usize = (4 << 20) + 5;
/// The gRPC message prefix: compression flag and big-endian length.
const PREFIX: usize = 5;

/// What every call to one endpoint sends besides its message.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// `host:port`, to connect to.
    addr: String,
    /// The URI of each method, by [`Op`].
    uris: [Uri; 4],
    /// Request headers: content type, `te`, user agent, version, namespace, authorization.
    headers: HeaderMap,
}

impl Endpoint {
    /// The endpoint `uri` (`http://host:port`, validated) with the target's call metadata.
    pub(crate) fn new(uri: &str, target: &GrpcTarget) -> Result<Self, BenchError> {
        let invalid = |reason: String| BenchError::Connect {
            target: uri.to_owned(),
            reason,
        };
        let base: Uri = uri.parse().map_err(|e| invalid(format!("{e}")))?;
        let authority = base
            .authority()
            .ok_or_else(|| invalid("no host:port".into()))?;
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let method = |op: Op| -> Result<Uri, BenchError> {
            let name = match op {
                Op::Get => "Get",
                Op::Set => "Set",
                Op::GetMany => "GetMany",
                Op::SetMany => "SetMany",
            };
            Uri::builder()
                .scheme("http")
                .authority(authority.clone())
                .path_and_query(format!("/mintcache.v1.Cache/{name}"))
                .build()
                .map_err(|e| invalid(format!("{e}")))
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("mintcache-bench/", env!("CARGO_PKG_VERSION"))),
        );
        let ascii = |value: &tonic::metadata::AsciiMetadataValue| {
            HeaderValue::from_bytes(value.as_encoded_bytes())
                .map_err(|_| invalid("metadata is not a valid header value".into()))
        };
        headers.insert(VERSION_HEADER, ascii(&target.version)?);
        if let Some(namespace) = &target.namespace {
            headers.insert(NAMESPACE_HEADER, ascii(namespace)?);
        }
        if let Some(authorization) = &target.authorization {
            let mut value = ascii(authorization)?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION_HEADER, value);
        }
        Ok(Self {
            addr,
            uris: [
                method(Op::Get)?,
                method(Op::Set)?,
                method(Op::GetMany)?,
                method(Op::SetMany)?,
            ],
            headers,
        })
    }

    /// The endpoint as given.
    pub(crate) fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One HTTP/2 connection; clones share it (each call is a stream on it).
#[derive(Clone)]
pub(crate) struct Conn {
    send: SendRequest<Bytes>,
    endpoint: Arc<Endpoint>,
    timeout: Duration,
}

/// The future that does a connection's I/O; it must be polled for calls to make progress, and
/// ends when the connection does (or when every [`Conn`] and call on it is gone).
pub(crate) type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Opens one HTTP/2 connection (TCP_NODELAY). The caller polls the [`Driver`]: in the same
/// task as the calls (see [`super::grpc::drive`]), or in a task of its own ([`spawn`]).
pub(crate) async fn connect(
    endpoint: Arc<Endpoint>,
    timeout: Duration,
) -> Result<(Conn, Driver), BenchError> {
    let fail = |reason: String| BenchError::Connect {
        target: endpoint.uri(),
        reason,
    };
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(&endpoint.addr))
        .await
        .map_err(|_| fail(format!("no connection within {timeout:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    tcp.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
    let handshake = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .handshake::<_, Bytes>(tcp);
    let (send, connection) = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| fail(format!("no HTTP/2 handshake within {timeout:?}")))?
        .map_err(|e| fail(format!("HTTP/2 handshake: {e}")))?;
    // When the connection fails, its streams fail too, and each call reports it.
    let driver: Driver = Box::pin(async move {
        let _ = connection.await;
    });
    Ok((
        Conn {
            send,
            endpoint,
            timeout,
        },
        driver,
    ))
}

/// Drives a connection in a task of its own.
pub(crate) fn spawn(driver: Driver) {
    tokio::spawn(driver);
}

impl Conn {
    /// One unary call of `op` (its method), within the call timeout (DEADLINE_EXCEEDED after).
    pub(crate) async fn call<Req, Resp>(&self, op: Op, message: &Req) -> Result<Resp, Status>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        match tokio::time::timeout(self.timeout, self.exchange(op, encode(message))).await {
            Ok(result) => decode(result?),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Sends one framed message and returns the framed reply.
    async fn exchange(&self, op: Op, body: Bytes) -> Result<Bytes, Status> {
        let mut send = self.send.clone().ready().await.map_err(h2_status)?;
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.endpoint.uris[op as usize].clone();
        *request.headers_mut() = self.endpoint.headers.clone();
        let (response, mut stream) = send.send_request(request, false).map_err(h2_status)?;
        stream.send_data(body, true).map_err(h2_status)?;
        let (head, mut body) = response.await.map_err(h2_status)?.into_parts();
        if head.status != StatusCode::OK {
            return Err(http_status(head.status));
        }
        // A trailers-only answer (an error, usually) carries the status in its headers.
        if let Some(status) = grpc_status(&head.headers) {
            return Err(match status {
                Ok(()) => Status::internal("an OK answer without a message"),
                Err(status) => status,
            });
        }
        let mut reply = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(h2_status)?;
            // Give the window back at once: the reply is read as fast as it comes.
            let _ = body.flow_control().release_capacity(chunk.len());
            if reply.len() + chunk.len() > MAX_REPLY {
                return Err(Status::resource_exhausted("reply larger than 4 MiB"));
            }
            reply.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.map_err(h2_status)?;
        match trailers.as_ref().and_then(grpc_status) {
            Some(Ok(())) => Ok(reply.freeze()),
            Some(Err(status)) => Err(status),
            None => Err(Status::internal("the answer has no grpc-status")),
        }
    }
}

/// A message with its gRPC prefix (not compressed, big-endian length).
fn encode(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX + len);
    buf.put_u8(0);
    // Requests are far below 4 GiB (values are at most 1 MiB, batches at most 10,000 keys).
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer with room for the whole message cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

/// The message of a framed unary reply.
fn decode<M: prost::Message + Default>(reply: Bytes) -> Result<M, Status> {
    if reply.len() < PREFIX {
        return Err(Status::internal(format!(
            "a reply of {} bytes is not a gRPC message",
            reply.len()
        )));
    }
    if reply[0] != 0 {
        return Err(Status::internal("a compressed reply (none was accepted)"));
    }
    let len = u32::from_be_bytes([reply[1], reply[2], reply[3], reply[4]]) as usize;
    if reply.len() != PREFIX + len {
        return Err(Status::internal(format!(
            "a reply of {} bytes announcing a {len}-byte message",
            reply.len()
        )));
    }
    M::decode(reply.slice(PREFIX..)).map_err(|e| Status::internal(format!("bad reply: {e}")))
}

/// `grpc-status` (and `grpc-message`) of a header block: `None` without one.
fn grpc_status(headers: &HeaderMap) -> Option<Result<(), Status>> {
    let value = headers.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from_i32);
    if code == Code::Ok {
        return Some(Ok(()));
    }
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Some(Err(Status::new(code, message)))
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 specification).
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A non-200 HTTP status, as the gRPC specification maps it.
fn http_status(status: StatusCode) -> Status {
    let code = match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("HTTP status {status}"))
}

/// An HTTP/2 failure, as tonic maps it: a broken connection is UNAVAILABLE.
fn h2_status(error: h2::Error) -> Status {
    let code = match error.reason() {
        _ if error.is_io() || error.is_go_away() => Code::Unavailable,
        Some(h2::Reason::REFUSED_STREAM) => Code::Unavailable,
        Some(h2::Reason::CANCEL) => Code::Cancelled,
        Some(h2::Reason::ENHANCE_YOUR_CALM) => Code::ResourceExhausted,
        Some(h2::Reason::INADEQUATE_SECURITY) => Code::PermissionDenied,
        Some(_) => Code::Internal,
        None => Code::Unavailable,
    };
    Status::new(code, format!("HTTP/2: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mintcache_client::proto::{GetRequest, GetResponse};

    #[test]
    fn messages_are_framed_and_unframed() {
        let request = GetRequest {
            key: b"bench:00000001".to_vec(),
            ..GetRequest::default()
        };
        let framed = encode(&request);
        assert_eq!(framed[0], 0);
        assert_eq!(&framed[1..5], &16u32.to_be_bytes());
        assert_eq!(&framed[5..7], &[0x0a, 14]);
        let back: GetRequest = decode(framed).expect("decodes");
        assert_eq!(back, request);

        let empty: GetResponse = decode(Bytes::from_static(&[0, 0, 0, 0, 0])).expect("empty");
        assert_eq!(empty, GetResponse::default());
    }

    #[test]
    fn bad_frames_are_internal_errors() {
        for bad in [
            &b""[..],
            &[0, 0, 0],
            &[1, 0, 0, 0, 0],
            &[0, 0, 0, 0, 9, 1],
            &[0, 0, 0, 0, 1, 0xff],
        ] {
            let status = decode::<GetResponse>(Bytes::copy_from_slice(bad)).expect_err("bad");
            assert_eq!(status.code(), Code::Internal, "{bad:?}");
        }
    }

    #[test]
    fn grpc_status_from_headers() {
        let mut headers = HeaderMap::new();
        assert!(grpc_status(&headers).is_none());
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(matches!(grpc_status(&headers), Some(Ok(()))));
        headers.insert("grpc-status", HeaderValue::from_static("3"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("empty%20key%3A%E2%9C%93"),
        );
        let status = grpc_status(&headers)
            .expect("a status")
            .expect_err("an error");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "empty key:\u{2713}");
        headers.insert("grpc-status", HeaderValue::from_static("x"));
        let status = grpc_status(&headers)
            .expect("a status")
            .expect_err("an error");
        assert_eq!(status.code(), Code::Unknown);
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode(b"100% sure"), "100% sure");
        assert_eq!(percent_decode(b"%4"), "%4");
        assert_eq!(percent_decode(b"a%2Fb"), "a/b");
    }

    #[test]
    fn http_statuses_map_as_the_spec_says() {
        let code = |s: u16| http_status(StatusCode::from_u16(s).expect("status")).code();
        assert_eq!(code(400), Code::Internal);
        assert_eq!(code(401), Code::Unauthenticated);
        assert_eq!(code(403), Code::PermissionDenied);
        assert_eq!(code(404), Code::Unimplemented);
        assert_eq!(code(429), Code::Unavailable);
        assert_eq!(code(503), Code::Unavailable);
        assert_eq!(code(500), Code::Unknown);
    }

    #[test]
    fn endpoints_carry_the_call_metadata() {
        let target = GrpcTarget {
            endpoints: vec!["http://127.0.0.1:50051".into()],
            version: "v7".parse().expect("ascii"),
            namespace: Some("shop".parse().expect("ascii")),
            authorization: Some("Bearer t".parse().expect("ascii")),
        };
        let endpoint = Endpoint::new("http://127.0.0.1:50051", &target).expect("valid");
        assert_eq!(endpoint.addr, "127.0.0.1:50051");
        assert_eq!(endpoint.uri(), "http://127.0.0.1:50051");
        assert_eq!(
            endpoint.uris[Op::GetMany as usize],
            "http://127.0.0.1:50051/mintcache.v1.Cache/GetMany"
        );
        let h = &endpoint.headers;
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["te"], "trailers");
        assert_eq!(h[VERSION_HEADER], "v7");
        assert_eq!(h[NAMESPACE_HEADER], "shop");
        assert_eq!(h[AUTHORIZATION_HEADER], "Bearer t");
        assert!(h[AUTHORIZATION_HEADER].is_sensitive());
        let port_80 = Endpoint::new("http://cache", &target).expect("valid");
        assert_eq!(port_80.addr, "cache:80");
    }
}
