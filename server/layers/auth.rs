//! The auth layer: authenticates `mintcache.v1.Cache` calls, checks admin rights for
//! `x-cache-debug`, attaches the resulting [`Grant`] to the request, and names the applied
//! debug mode in the response (`x-cache-debug-applied`). The decisions are the pure
//! [`AuthPolicy::authorize`]; this layer only gathers its inputs.
//!
//! It is a tower layer rather than an interceptor because it writes response metadata. It
//! wraps the Cache service only (health and reflection stay open). Tokens are never logged.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tower::{Layer, Service};

use super::{BoxFuture, answer_now};
use crate::core::auth::{
    AUTHORIZATION_HEADER, AuthPolicy, DEBUG_APPLIED_HEADER, DEBUG_HEADER, Grant, Presented,
};

// The headers' names parsed once (a lookup by string parses the name on every call).
static AUTHORIZATION: HeaderName = HeaderName::from_static(AUTHORIZATION_HEADER);
static DEBUG: HeaderName = HeaderName::from_static(DEBUG_HEADER);

/// The TLS client certificates a connection was verified with (none without mutual TLS), in
/// each request's extensions: the gRPC port's connections put them there.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerCertificates(pub(crate) Option<Arc<[CertificateDer<'static>]>>);

/// Adds [`AuthService`] around a service.
#[derive(Clone, Debug)]
pub(crate) struct AuthLayer {
    policy: Arc<AuthPolicy>,
}

impl AuthLayer {
    /// Enforces `policy`.
    pub(crate) fn new(policy: AuthPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Authenticates each call and attaches its [`Grant`]; reports the applied debug mode.
#[derive(Clone, Debug)]
pub(crate) struct AuthService<S> {
    inner: S,
    policy: Arc<AuthPolicy>,
}

/// The subject of the verified TLS client certificate of the connection, if any.
fn peer_subject<B>(request: &http::Request<B>) -> Option<String> {
    let PeerCertificates(certs) = request.extensions().get::<PeerCertificates>()?;
    let leaf = certs.as_ref()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.subject().to_string())
}

impl<S, B, R> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let headers = request.headers();
        let authorization: Vec<&[u8]> = headers
            .get_all(&AUTHORIZATION)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let debug: Vec<&[u8]> = headers
            .get_all(&DEBUG)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let subject = peer_subject(&request);
        let decision = self.policy.authorize(&Presented {
            authorization: &authorization,
            debug: &debug,
            peer_subject: subject.as_deref(),
        });
        let grant: Grant = match decision {
            Ok(grant) => grant,
            Err(e) => {
                tracing::debug!(path = request.uri().path(), reason = %e, "call refused");
                return answer_now(e.into());
            }
        };
        request.extensions_mut().insert(grant);
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            if let Some(mode) = grant.debug {
                response.headers_mut().insert(
                    DEBUG_APPLIED_HEADER,
                    HeaderValue::from_static(mode.as_str()),
                );
            }
            Ok(response)
        })
    }
}
