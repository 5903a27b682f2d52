//! The one place where domain errors become gRPC statuses. Backend details stay in the logs:
//! statuses carry a clear message for the caller and nothing about memcached's internals.

use tonic::{Code, Status};

use super::proto;
use crate::cache::CacheError;
use crate::core::meta::MetaError;

impl From<CacheError> for Status {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::EmptyKey
            | CacheError::KeyTooLong { .. }
            | CacheError::ValueTooLarge { .. }
            | CacheError::Ttl { .. }
            | CacheError::Lease(_)
            | CacheError::Field { .. } => Status::invalid_argument(e.to_string()),
            CacheError::NoCounter => Status::not_found(e.to_string()),
            CacheError::NotACounter | CacheError::CacheOff => {
                Status::failed_precondition(e.to_string())
            }
            CacheError::Unavailable(source) => {
                tracing::warn!(error = %source, "backend unavailable");
                Status::unavailable("cache backend unavailable")
            }
        }
    }
}

impl From<MetaError> for Status {
    fn from(e: MetaError) -> Self {
        Status::invalid_argument(e.to_string())
    }
}

/// The per-key error of a batched call.
pub fn key_error(e: CacheError) -> proto::KeyError {
    let status = Status::from(e);
    proto::KeyError {
        code: status.code() as i32,
        message: status.message().to_owned(),
    }
}

/// The status of a call whose metadata layer did not run (a wiring bug, never a client error).
pub fn missing_call_meta() -> Status {
    tracing::error!("call context missing: a request-path layer is not wired");
    Status::new(Code::Internal, "internal error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn backend_text_never_reaches_the_caller() {
        let status = Status::from(CacheError::Unavailable(StoreError::Protocol {
            node: "10.1.2.3:11211".into(),
            reason: "SERVER_ERROR out of memory".into(),
        }));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("10.1.2.3"));
        assert!(!status.message().contains("SERVER_ERROR"));
    }

    #[test]
    fn bad_input_is_invalid_argument_with_the_reason() {
        let status = Status::from(CacheError::KeyTooLong {
            len: 5000,
            max: 4096,
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("max_key_bytes"));
    }
}
