//! The call metadata interceptor: turns the per-call key space headers into a [`KeySpace`]
//! request extension, using the pure parser in [`crate::core::meta`].

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::core::key::KeySpace;
use crate::core::meta::{self, NAMESPACE_HEADER, VERSION_HEADER};

/// Attaches the call's [`KeySpace`] to every request.
#[derive(Clone, Debug)]
pub struct CallMetaInterceptor {
    defaults: KeySpace,
}

impl CallMetaInterceptor {
    /// Uses `defaults` for calls that name no version or namespace.
    pub fn new(defaults: KeySpace) -> Self {
        Self { defaults }
    }
}

impl Interceptor for CallMetaInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let md = request.metadata();
        let version = md.get(VERSION_HEADER).map(|v| v.as_bytes());
        let namespace = md.get(NAMESPACE_HEADER).map(|v| v.as_bytes());
        let space = meta::key_space(version, namespace, &self.defaults)?;
        request.extensions_mut().insert(space);
        Ok(request)
    }
}
