//! The tonic service for `mintcache.v1.Cache`: unwraps requests, calls [`MintCache`], wraps
//! answers. Call metadata (the key space) was parsed by [`crate::layers::call_meta`].

use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::convert;
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
        request: Request<proto::TouchRequest>,
    ) -> Result<Response<proto::TouchResponse>, Status> {
        let space = key_space(&request)?;
        let req = request.into_inner();
        let touched = self.cache.touch(&space, &req.key, req.ttl_seconds).await?;
        Ok(Response::new(proto::TouchResponse { touched }))
    }

    async fn invalidate(
        &self,
        request: Request<proto::InvalidateRequest>,
    ) -> Result<Response<proto::InvalidateResponse>, Status> {
        let space = key_space(&request)?;
        let invalidated = self
            .cache
            .invalidate(&space, &request.into_inner().key)
            .await?;
        Ok(Response::new(proto::InvalidateResponse { invalidated }))
    }

    async fn increment(
        &self,
        request: Request<proto::IncrementRequest>,
    ) -> Result<Response<proto::IncrementResponse>, Status> {
        let space = key_space(&request)?;
        let req = request.into_inner();
        let value = self
            .cache
            .increment(
                &space,
                &req.key,
                req.delta,
                req.initial_value,
                req.ttl_seconds,
            )
            .await?;
        Ok(Response::new(proto::IncrementResponse { value }))
    }

    async fn get_many(
        &self,
        request: Request<proto::GetManyRequest>,
    ) -> Result<Response<proto::GetManyResponse>, Status> {
        let space = key_space(&request)?;
        let req = request.into_inner();
        let reads = self
            .cache
            .get_many(&space, &req.keys, req.lease_on_miss)
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
        let space = key_space(&request)?;
        let items: Vec<SetArgs> = request
            .into_inner()
            .items
            .into_iter()
            .map(SetArgs::from)
            .collect();
        let stored = self.cache.set_many(&space, &items).await;
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
        let space = key_space(&request)?;
        let keys = request.into_inner().keys;
        let deleted = self.cache.delete_many(&space, &keys).await;
        let results = keys
            .into_iter()
            .zip(deleted)
            .map(|(key, deleted)| convert::delete_many_result(key, deleted))
            .collect();
        Ok(Response::new(proto::DeleteManyResponse { results }))
    }
}
