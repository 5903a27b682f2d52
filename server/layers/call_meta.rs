//! The call metadata layer: turns the per-call key space headers (`x-cache-version`,
//! `x-cache-namespace`) into a [`KeySpace`] request extension for the handlers, using the pure
//! parser in [`crate::core::meta`]. A header sent twice is refused, never resolved by picking
//! one.
//!
//! A tower layer rather than a tonic interceptor: the layers around it answer refusals with
//! the same body type as the service.

use std::task::{Context, Poll};

use http::HeaderName;
use tower::{Layer, Service};

use super::{BoxFuture, answer_now};
use crate::core::key::KeySpace;
use crate::core::meta::{self, CONSISTENCY_HEADER, NAMESPACE_HEADER, VERSION_HEADER};

// The headers' names parsed once (a lookup by string parses the name on every call).
static VERSION: HeaderName = HeaderName::from_static(VERSION_HEADER);
static NAMESPACE: HeaderName = HeaderName::from_static(NAMESPACE_HEADER);
static CONSISTENCY: HeaderName = HeaderName::from_static(CONSISTENCY_HEADER);

/// Adds [`CallMetaService`] around a service.
#[derive(Clone, Debug)]
pub(crate) struct CallMetaLayer {
    defaults: KeySpace,
}

impl CallMetaLayer {
    /// Uses `defaults` for calls that name no version or namespace.
    pub(crate) fn new(defaults: KeySpace) -> Self {
        Self { defaults }
    }
}

impl<S> Layer<S> for CallMetaLayer {
    type Service = CallMetaService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallMetaService {
            inner,
            defaults: self.defaults.clone(),
        }
    }
}

/// Attaches the call's [`KeySpace`] to every request.
#[derive(Clone, Debug)]
pub(crate) struct CallMetaService<S> {
    inner: S,
    defaults: KeySpace,
}

impl<S, B, R> Service<http::Request<B>> for CallMetaService<S>
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
        let all = |name: &HeaderName| -> Vec<&[u8]> {
            headers
                .get_all(name)
                .iter()
                .map(http::HeaderValue::as_bytes)
                .collect()
        };
        let space = meta::key_space(&all(&VERSION), &all(&NAMESPACE), &self.defaults);
        let consistency = meta::consistency(&all(&CONSISTENCY));
        match space.and_then(|space| Ok((space, consistency?))) {
            Ok((space, consistency)) => {
                request.extensions_mut().insert(space);
                request.extensions_mut().insert(consistency);
                Box::pin(self.inner.call(request))
            }
            Err(e) => answer_now(e.into()),
        }
    }
}
