//! Tests of the client: the metadata, deadlines and request fields it sends, and which
//! failures it retries.

use super::*;

fn client(defaults: CallDefaults) -> Client {
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
    Client::new(
        channel,
        defaults,
        None,
        Backoff::NONE,
        Backoff::NONE,
        Duration::ZERO,
    )
}

fn header(r: &Request<()>, key: &str) -> Option<String> {
    r.metadata()
        .get(key)
        .map(|v| v.to_str().expect("ascii").to_owned())
}

#[tokio::test]
async fn defaults_and_overrides_become_headers() {
    let base = client(CallDefaults {
        version: Some("r1".into()),
        namespace: Some("shop".into()),
        token: Some("s3cret".into()),
        ..CallDefaults::default()
    });
    let r = base.request((), None).expect("request");
    assert_eq!(header(&r, VERSION_HEADER).as_deref(), Some("r1"));
    assert_eq!(header(&r, NAMESPACE_HEADER).as_deref(), Some("shop"));
    assert_eq!(
        header(&r, AUTHORIZATION_HEADER).as_deref(),
        Some("Bearer s3cret")
    );
    assert_eq!(header(&r, DEBUG_HEADER), None);
    assert_eq!(header(&r, "grpc-timeout"), None);

    let over = base
        .with_version("r2")
        .with_namespace("")
        .with_debug(DebugMode::WriteOnly);
    let r = over.request((), None).expect("request");
    assert_eq!(header(&r, VERSION_HEADER).as_deref(), Some("r2"));
    assert_eq!(header(&r, NAMESPACE_HEADER).as_deref(), Some(""));
    assert_eq!(header(&r, DEBUG_HEADER).as_deref(), Some("write-only"));
    let r = base
        .with_debug(DebugMode::Off)
        .request((), None)
        .expect("request");
    assert_eq!(header(&r, DEBUG_HEADER).as_deref(), Some("off"));
    // The override did not leak into the original.
    let r = base.request((), None).expect("request");
    assert_eq!(header(&r, VERSION_HEADER).as_deref(), Some("r1"));
    assert_eq!(header(&r, DEBUG_HEADER), None);
}

#[tokio::test]
async fn no_defaults_send_no_headers_and_deadlines_send_grpc_timeout() {
    let c = client(CallDefaults::default());
    let r = c
        .request((), Some(Instant::now() + Duration::from_secs(3)))
        .expect("request");
    for key in [
        VERSION_HEADER,
        NAMESPACE_HEADER,
        DEBUG_HEADER,
        AUTHORIZATION_HEADER,
    ] {
        assert_eq!(header(&r, key), None, "{key}");
    }
    let timeout = header(&r, "grpc-timeout").expect("grpc-timeout");
    assert!(
        timeout.ends_with('u') || timeout.ends_with('m'),
        "{timeout}"
    );
}

#[tokio::test]
async fn tokens_are_sensitive_and_redacted() {
    let c = client(CallDefaults {
        token: Some("s3cret".into()),
        ..CallDefaults::default()
    });
    let r = c.request((), None).expect("request");
    assert!(
        r.metadata()
            .get(AUTHORIZATION_HEADER)
            .expect("auth")
            .is_sensitive()
    );
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[tokio::test]
async fn non_ascii_metadata_is_an_error() {
    let c = client(CallDefaults::default()).with_version("ré");
    assert!(matches!(
        c.request((), None),
        Err(Error::InvalidMetadata {
            header: VERSION_HEADER
        })
    ));
}

#[test]
fn only_calls_that_cannot_have_been_sent_are_retried_unless_sent() {
    let refused = Status::from_error(Box::new(tonic::ConnectError(Box::new(
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    ))));
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(Retry::UnlessSent.allows(&refused));
    assert!(Retry::OnUnavailable.allows(&refused));
    let lost = transport_failure_as_unavailable(Status::cancelled("connection reset"));
    let unavailable = Status::unavailable("server shutting down");
    for status in [&lost, &unavailable] {
        assert!(!Retry::UnlessSent.allows(status), "{status:?}");
    }
    assert!(Retry::OnUnavailable.allows(&unavailable));
    assert!(!Retry::OnUnavailable.allows(&Status::internal("a server fault")));
}

#[tokio::test]
async fn lease_on_miss_override_reaches_the_message() {
    // Nothing listens on port 1: the call fails, but only after the message was built.
    let c = client(CallDefaults::default()).with_lease_on_miss(true);
    assert_eq!(c.defaults.lease_on_miss, Some(true));
    let e = c.get("k").await.expect_err("nothing listens on port 1");
    assert_eq!(e.code(), Some(Code::Unavailable));
}
