//! The tonic service for `mintcache.v1.Cache`: unwraps requests, calls [`MintCache`], wraps
//! answers. Call metadata (the key space) was parsed by [`crate::layers::call_meta`].

use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::proto::{self, cache_server};
use super::status::missing_call_meta;
use crate::cache::{MintCache, SetArgs};
use crate::core::key::KeySpace;
use crate::core::meta::DEGRADED_HEADER;
use crate::store::Store;

/// The gRPC service.
pub struct CacheService<S> {
    cache: Arc<MintCache<S>>,
}

impl<S> CacheService<S> {
    /// Serves `cache`.
    pub fn new(cache: Arc<MintCache<S>>) -> Self {
        Self { cache }
    }
}

/// The key space the call metadata layer attached to the request.
fn key_space<T>(request: &Request<T>) -> Result<KeySpace, Status> {
    request
        .extensions()
        .get::<KeySpace>()
        .cloned()
        .ok_or_else(missing_call_meta)
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not available in this server version"))
}

#[tonic::async_trait]
impl<S: Store> cache_server::Cache for CacheService<S> {
    async fn get(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Result<Response<proto::GetResponse>, Status> {
        let space = key_space(&request)?;
        let req = request.into_inner();
        let read = self.cache.get(&space, &req.key, req.lease_on_miss).await?;
        let mut response = Response::new(proto::GetResponse::from(read.lookup));
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
        let space = key_space(&request)?;
        let stored = self
            .cache
            .set(&space, &SetArgs::from(request.into_inner()))
            .await?;
        Ok(Response::new(proto::SetResponse { stored }))
    }

    async fn delete(
        &self,
        request: Request<proto::DeleteRequest>,
    ) -> Result<Response<proto::DeleteResponse>, Status> {
        let space = key_space(&request)?;
        let deleted = self.cache.delete(&space, &request.into_inner().key).await?;
        Ok(Response::new(proto::DeleteResponse { deleted }))
    }

    async fn add(
        &self,
        request: Request<proto::AddRequest>,
    ) -> Result<Response<proto::AddResponse>, Status> {
        let space = key_space(&request)?;
        let stored = self
            .cache
            .add(&space, &SetArgs::from(request.into_inner()))
            .await?;
        Ok(Response::new(proto::AddResponse { stored }))
    }

    async fn touch(
        &self,
        _request: Request<proto::TouchRequest>,
    ) -> Result<Response<proto::TouchResponse>, Status> {
        Err(not_yet("Touch"))
    }

    async fn invalidate(
        &self,
        _request: Request<proto::InvalidateRequest>,
    ) -> Result<Response<proto::InvalidateResponse>, Status> {
        Err(not_yet("Invalidate"))
    }

    async fn increment(
        &self,
        _request: Request<proto::IncrementRequest>,
    ) -> Result<Response<proto::IncrementResponse>, Status> {
        Err(not_yet("Increment"))
    }

    async fn get_many(
        &self,
        _request: Request<proto::GetManyRequest>,
    ) -> Result<Response<proto::GetManyResponse>, Status> {
        Err(not_yet("GetMany"))
    }

    async fn set_many(
        &self,
        _request: Request<proto::SetManyRequest>,
    ) -> Result<Response<proto::SetManyResponse>, Status> {
        Err(not_yet("SetMany"))
    }

    async fn delete_many(
        &self,
        _request: Request<proto::DeleteManyRequest>,
    ) -> Result<Response<proto::DeleteManyResponse>, Status> {
        Err(not_yet("DeleteMany"))
    }
}
