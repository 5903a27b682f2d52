//! The tonic service for `mintcache.v1.Cache`: unwraps requests, calls [`MintCache`], wraps
//! answers. The call context (key space, debug mode) was set by [`crate::layers`].

use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::convert;
use super::proto::{self, cache_server};
use super::status::missing_call_meta;
use crate::cache::{Call, MintCache, ReadArgs, SetArgs};
use crate::core::auth::Grant;
use crate::core::deadline;
use crate::core::key::KeySpace;
use crate::core::meta::{Consistency, DEGRADED_HEADER};
use crate::store::Store;

/// The gRPC service.
pub(crate) struct CacheService<S> {
    cache: Arc<MintCache<S>>,
}

impl<S> CacheService<S> {
    /// Serves `cache`.
    pub(crate) fn new(cache: Arc<MintCache<S>>) -> Self {
        Self { cache }
    }
}

/// The call context the layers attached to the request: the key space (call metadata
/// interceptor) and the debug mode (auth layer).
fn call_of<T>(request: &Request<T>) -> Result<Call, Status> {
    let space = request
        .extensions()
        .get::<KeySpace>()
        .cloned()
        .ok_or_else(missing_call_meta)?;
    let grant = request
        .extensions()
        .get::<Grant>()
        .ok_or_else(missing_call_meta)?;
    // The span of the call (made by the telemetry layer) names the key space; never the key.
    let span = tracing::Span::current();
    span.record("mintcache.namespace", space.namespace());
    span.record("mintcache.version", space.version());
    let strong = request.extensions().get::<Consistency>() == Some(&Consistency::Strong);
    Ok(Call {
        space,
        debug: grant.debug,
        strong,
    })
}

/// How long a read may wait for a fill: what it asked for, within the call's deadline (less a
/// margin to answer `PENDING` before the deadline runs out). The server's own bound is the
/// cache's.
fn wait_of<T>(request: &Request<T>, wait_ms: u32) -> Duration {
    let asked = Duration::from_millis(u64::from(wait_ms));
    let deadline = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| deadline::parse_grpc_timeout(v.as_bytes()))
        .map(|timeout| deadline::budget(timeout).saturating_sub(WAIT_MARGIN));
    deadline.map_or(asked, |d| asked.min(d))
}

/// What a waiting read keeps of its deadline to answer.
const WAIT_MARGIN: Duration = Duration::from_millis(5);

#[tonic::async_trait]
impl<S: Store> cache_server::Cache for CacheService<S> {
    async fn get(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Result<Response<proto::GetResponse>, Status> {
        let call = call_of(&request)?;
        let wait = wait_of(&request, request.get_ref().wait_ms);
        let req = request.into_inner();
        let args = ReadArgs {
            lease_on_miss: req.lease_on_miss,
            peek: req.peek,
            early_refresh_beta: req.early_refresh_beta,
            wait,
        };
        let read = self.cache.get(&call, &req.key, args).await?;
        let outcome = read.lookup.outcome;
        let mut response = Response::new(proto::GetResponse::from(read.lookup));
        // For the telemetry layer's metrics and span.
        response.extensions_mut().insert(outcome);
        if read.degraded {
            response
                .metadata_mut()
                .insert(DEGRADED_HEADER, MetadataValue::from_static("1"));
        }
        Ok(response)
    }

    async fn set(
        &self,
        request: Request<proto::SetRequest>,
    ) -> Result<Response<proto::SetResponse>, Status> {
        let call = call_of(&request)?;
        let req = request.into_inner();
        let stored = self.cache.set(&call, &SetArgs::from(req)).await?;
        Ok(Response::new(proto::SetResponse { stored }))
    }

    async fn delete(
        &self,
        request: Request<proto::DeleteRequest>,
    ) -> Result<Response<proto::DeleteResponse>, Status> {
        let call = call_of(&request)?;
        let req = request.into_inner();
        let deleted = self.cache.delete(&call, &req.key, &req.lease_token).await?;
        Ok(Response::new(proto::DeleteResponse { deleted }))
    }

    async fn add(
        &self,
        request: Request<proto::AddRequest>,
    ) -> Result<Response<proto::AddResponse>, Status> {
        let call = call_of(&request)?;
        let req = request.into_inner();
        let (stored, lease) = self.cache.add(&call, &SetArgs::from(req)).await?;
        Ok(Response::new(proto::AddResponse {
            stored,
            lease_token: lease.map(|l| l.to_bytes().into()).unwrap_or_default(),
        }))
    }

    async fn touch(
        &self,
        request: Request<proto::TouchRequest>,
    ) -> Result<Response<proto::TouchResponse>, Status> {
        let call = call_of(&request)?;
        let req = request.into_inner();
        let touched = self
            .cache
            .touch(&call, &req.key, req.ttl_seconds, req.no_expiry)
            .await?;
        Ok(Response::new(proto::TouchResponse { touched }))
    }

    async fn invalidate(
        &self,
        request: Request<proto::InvalidateRequest>,
    ) -> Result<Response<proto::InvalidateResponse>, Status> {
        let call = call_of(&request)?;
        let invalidated = self
            .cache
            .invalidate(&call, &request.into_inner().key)
            .await?;
        Ok(Response::new(proto::InvalidateResponse { invalidated }))
    }

    async fn increment(
        &self,
        request: Request<proto::IncrementRequest>,
    ) -> Result<Response<proto::IncrementResponse>, Status> {
        let call = call_of(&request)?;
        let req = request.into_inner();
        let value = self
            .cache
            .increment(
                &call,
                &req.key,
                req.delta,
                req.initial_value,
                req.ttl_seconds,
                req.no_expiry,
            )
            .await?;
        Ok(Response::new(proto::IncrementResponse { value }))
    }

    async fn get_many(
        &self,
        request: Request<proto::GetManyRequest>,
    ) -> Result<Response<proto::GetManyResponse>, Status> {
        let call = call_of(&request)?;
        let req = request.into_inner();
        let reads = self
            .cache
            .get_many(
                &call,
                &req.keys,
                ReadArgs {
                    lease_on_miss: req.lease_on_miss,
                    peek: req.peek,
                    early_refresh_beta: req.early_refresh_beta,
                    wait: Duration::ZERO,
                },
            )
            .await;
        let degraded = reads.iter().any(|r| r.as_ref().is_ok_and(|r| r.degraded));
        let results = req
            .keys
            .into_iter()
            .zip(reads)
            .map(|(key, read)| convert::get_many_result(key, read))
            .collect();
        let mut response = Response::new(proto::GetManyResponse { results });
        if degraded {
            response
                .metadata_mut()
                .insert(DEGRADED_HEADER, MetadataValue::from_static("1"));
        }
        Ok(response)
    }

    async fn set_many(
        &self,
        request: Request<proto::SetManyRequest>,
    ) -> Result<Response<proto::SetManyResponse>, Status> {
        let call = call_of(&request)?;
        let req = request.into_inner();
        let items: Vec<SetArgs> = req.items.into_iter().map(SetArgs::from).collect();
        let stored = self.cache.set_many(&call, &items).await;
        let results = items
            .into_iter()
            .zip(stored)
            .map(|(item, stored)| convert::set_many_result(item.key, stored))
            .collect();
        Ok(Response::new(proto::SetManyResponse { results }))
    }

    async fn delete_many(
        &self,
        request: Request<proto::DeleteManyRequest>,
    ) -> Result<Response<proto::DeleteManyResponse>, Status> {
        let call = call_of(&request)?;
        let keys = request.into_inner().keys;
        let deleted = self.cache.delete_many(&call, &keys).await;
        let results = keys
            .into_iter()
            .zip(deleted)
            .map(|(key, deleted)| convert::delete_many_result(key, deleted))
            .collect();
        Ok(Response::new(proto::DeleteManyResponse { results }))
    }

    async fn flush(
        &self,
        request: Request<proto::FlushRequest>,
    ) -> Result<Response<proto::FlushResponse>, Status> {
        let call = call_of(&request)?;
        let flushed = self.cache.flush(&call).await?;
        Ok(Response::new(proto::FlushResponse { flushed }))
    }
}
