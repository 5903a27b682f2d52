//! The typed client and the CLI against a server with tokens, admin debug modes and TLS: the
//! options they send are the ones the server honours.

mod harness;

use std::time::Duration;

use harness::pki::Pki;
use harness::{Memcached, TestServer, config};
use mintcache_cli::{Exit, run};
use mintcache_client::{Client, DebugMode, Outcome};
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

const ADMIN: &str = "admin-token-for-client-tests";
const CLIENT: &str = "client-token-for-client-tests";

fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[tokio::test]
async fn tokens_and_debug_modes_through_the_client() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.auth.admin_token_sha256 = vec![sha(ADMIN)];
    cfg.auth.client_token_sha256 = vec![sha(CLIENT)];
    cfg.auth.require_token = true;
    let server = TestServer::start(cfg).await;
    let endpoint = format!("http://{}", server.addr);
    let ttl = Duration::from_secs(60);

    let anonymous = Client::builder()
        .endpoint(&endpoint)
        .build()
        .expect("client");
    let e = anonymous.get("k").await.expect_err("a token is required");
    assert_eq!(e.code(), Some(tonic::Code::Unauthenticated), "{e}");

    let app = Client::builder()
        .endpoint(&endpoint)
        .token(CLIENT)
        .build()
        .expect("client");
    app.set("k", "cached", ttl).await.expect("set");
    assert_eq!(app.get("k").await.expect("get").outcome, Outcome::Hit);
    let e = app
        .with_debug(DebugMode::Off)
        .get("k")
        .await
        .expect_err("not an admin");
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied), "{e}");

    let admin = Client::builder()
        .endpoint(&endpoint)
        .token(ADMIN)
        .build()
        .expect("client");
    let off = admin.with_debug(DebugMode::Off);
    assert_eq!(off.get("k").await.expect("get").outcome, Outcome::Miss);
    off.set("k", "ignored", ttl)
        .await
        .expect("accepted, not performed");
    let write_only = admin.with_debug(DebugMode::WriteOnly);
    assert_eq!(
        write_only.get("k").await.expect("get").outcome,
        Outcome::Miss
    );
    write_only
        .set("k", "overwritten", ttl)
        .await
        .expect("performed");
    let lookup = app.get("k").await.expect("get");
    assert_eq!(
        (lookup.outcome, lookup.value.as_slice()),
        (Outcome::Hit, &b"overwritten"[..])
    );

    // The CLI: --token and --debug.
    let cli = |args: Vec<String>| async move {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin: &[u8] = b"";
        let exit = run(args, &mut stdin, &mut out, &mut err).await;
        (
            exit,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    };
    let base = |token: &str| {
        vec![
            "mintcache".to_owned(),
            "--endpoint".into(),
            endpoint.clone(),
            "--token".into(),
            token.to_owned(),
        ]
    };
    let (exit, out, _) = cli([base(CLIENT), vec!["get".into(), "k".into()]].concat()).await;
    assert_eq!((exit, out.as_str()), (Exit::Success, "overwritten"));
    let (exit, _, _) = cli([
        base(ADMIN),
        vec!["--debug".into(), "off".into(), "get".into(), "k".into()],
    ]
    .concat())
    .await;
    assert_eq!(exit, Exit::Miss, "the cache is off for this call");
    let (exit, _, err) = cli([
        base(CLIENT),
        vec![
            "--debug".into(),
            "write-only".into(),
            "get".into(),
            "k".into(),
        ],
    ]
    .concat())
    .await;
    assert_eq!(exit, Exit::Failed);
    assert!(err.contains("PERMISSION_DENIED"), "{err}");
    assert!(!err.contains(CLIENT), "the token is never printed: {err}");
}

#[tokio::test]
async fn tls_and_client_certificates_through_the_client() {
    let mc = Memcached::start();
    let pki = Pki::new();
    let server = TestServer::start(pki.server_config(&mc, Some(true))).await;
    let endpoint = format!("https://localhost:{}", server.addr.port());
    let tls = |id: Option<&harness::pki::Pem>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pki.ca_pem()))
            .domain_name("localhost");
        if let Some(id) = id {
            tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
        }
        tls
    };
    let admin_cert = pki.issue(&[], "ops-admin");
    let admin = Client::builder()
        .endpoint(&endpoint)
        .tls(tls(Some(&admin_cert)))
        .connect()
        .await
        .expect("mTLS connect");
    admin
        .set("k", "over tls", Duration::from_secs(60))
        .await
        .expect("set");
    assert_eq!(admin.get("k").await.expect("get").outcome, Outcome::Hit);
    assert_eq!(
        admin
            .with_debug(DebugMode::Off)
            .get("k")
            .await
            .expect("admin by subject")
            .outcome,
        Outcome::Miss
    );

    let without_cert = Client::builder()
        .endpoint(&endpoint)
        .tls(tls(None))
        .retry(mintcache_client::Backoff::NONE)
        .build()
        .expect("client");
    assert!(
        without_cert.get("k").await.is_err(),
        "no client certificate: refused"
    );
}
