//! TLS and mutual TLS on the gRPC port, with certificates made in the test (rcgen), and admin
//! rights by client-certificate subject.

mod harness;

use harness::pki::{Pem, Pki};
use harness::{Memcached, TestServer};
use mintcache_client::proto::cache_client::CacheClient;
use mintcache_client::proto::{GetRequest, Outcome, SetRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request};

async fn tls_client(
    server: &TestServer,
    ca: &str,
    identity: Option<&Pem>,
) -> Result<CacheClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
    }
    let channel = Channel::from_shared(format!("https://{}", server.addr))
        .expect("uri")
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(CacheClient::new(channel))
}

fn get(key: &[u8]) -> GetRequest {
    GetRequest {
        peek: false,
        key: key.to_vec(),
        lease_on_miss: None,
        ..Default::default()
    }
}

fn debug_off<T>(m: T) -> Request<T> {
    let mut r = Request::new(m);
    r.metadata_mut()
        .insert("x-cache-debug", "off".parse().expect("ascii"));
    r
}

#[tokio::test]
async fn tls_serves_tls_clients_only() {
    let mc = Memcached::start();
    let pki = Pki::new();
    let server = TestServer::start(pki.server_config(&mc, None)).await;
    let mut c = tls_client(&server, &pki.ca_pem(), None)
        .await
        .expect("TLS connect");
    let set = SetRequest {
        key: b"k".to_vec(),
        value: b"over tls".to_vec(),
        ..Default::default()
    };
    assert!(c.set(set).await.expect("set").into_inner().stored);
    let r = c.get(get(b"k")).await.expect("get").into_inner();
    assert_eq!(
        (r.outcome(), r.value.as_slice()),
        (Outcome::Hit, &b"over tls"[..])
    );

    // A plaintext client gets nowhere.
    let plain = Channel::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .connect()
        .await;
    if let Ok(channel) = plain {
        let e = CacheClient::new(channel)
            .get(get(b"k"))
            .await
            .expect_err("plaintext refused");
        assert_ne!(e.code(), Code::Ok);
    }
    // A client that does not trust the server's CA refuses it.
    let other = Pki::new();
    let untrusting = tls_client(&server, &other.ca_pem(), None).await;
    let refused = match untrusting {
        Err(_) => true,
        Ok(mut c) => c.get(get(b"k")).await.is_err(),
    };
    assert!(
        refused,
        "a server certificate from an unknown CA is refused"
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let mc = Memcached::start();
    let pki = Pki::new();
    let server = TestServer::start(pki.server_config(&mc, Some(true))).await;

    let app = pki.issue(&[], "app-1");
    let mut c = tls_client(&server, &pki.ca_pem(), Some(&app))
        .await
        .expect("mTLS connect");
    assert_eq!(
        c.get(get(b"k")).await.expect("get").into_inner().outcome(),
        Outcome::Miss
    );
    // A certificate without an admin subject gives no debug rights.
    let e = c.get(debug_off(get(b"k"))).await.expect_err("not an admin");
    assert_eq!(e.code(), Code::PermissionDenied);

    // No client certificate: refused during the handshake or at the first call.
    let anonymous = tls_client(&server, &pki.ca_pem(), None).await;
    let refused = match anonymous {
        Err(_) => true,
        Ok(mut c) => c.get(get(b"k")).await.is_err(),
    };
    assert!(
        refused,
        "a client without a certificate is refused when mTLS is required"
    );

    // A certificate from another CA is refused too.
    let rogue_pki = Pki::new();
    let rogue = rogue_pki.issue(&[], "ops-admin");
    let refused = match tls_client(&server, &pki.ca_pem(), Some(&rogue)).await {
        Err(_) => true,
        Ok(mut c) => c.get(get(b"k")).await.is_err(),
    };
    assert!(
        refused,
        "a client certificate from an unknown CA is refused"
    );
}

#[tokio::test]
async fn admin_rights_by_certificate_subject() {
    let mc = Memcached::start();
    let pki = Pki::new();
    let server = TestServer::start(pki.server_config(&mc, Some(true))).await;
    let admin = pki.issue(&[], "ops-admin");
    let mut c = tls_client(&server, &pki.ca_pem(), Some(&admin))
        .await
        .expect("mTLS connect");
    let set = SetRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    assert!(c.set(set).await.expect("set").into_inner().stored);
    let r = c
        .get(debug_off(get(b"k")))
        .await
        .expect("admin by subject may use debug");
    assert_eq!(
        r.metadata()
            .get("x-cache-debug-applied")
            .and_then(|v| v.to_str().ok()),
        Some("off")
    );
    assert_eq!(r.into_inner().outcome(), Outcome::Miss);
    assert_eq!(
        c.get(get(b"k")).await.expect("get").into_inner().outcome(),
        Outcome::Hit
    );
}

#[tokio::test]
async fn optional_client_certificates() {
    let mc = Memcached::start();
    let pki = Pki::new();
    let server = TestServer::start(pki.server_config(&mc, Some(false))).await;
    let mut c = tls_client(&server, &pki.ca_pem(), None)
        .await
        .expect("TLS without a client certificate");
    assert_eq!(
        c.get(get(b"k")).await.expect("get").into_inner().outcome(),
        Outcome::Miss
    );
    let e = c
        .get(debug_off(get(b"k")))
        .await
        .expect_err("anonymous is not an admin");
    assert_eq!(e.code(), Code::PermissionDenied);
}
