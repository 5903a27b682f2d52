//! A no-op `mintcache.v1.Cache` server: the same proto and the same tonic transport as
//! mintcache, but no backend, no layers and no telemetry. Every read answers HIT with a fixed
//! 64-byte value (GetMany: every key), every write answers stored. It measures gRPC's own
//! ceiling on a machine, the baseline that mintcache's figures are compared against in
//! docs/BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release --example noop_server -- --listen 127.0.0.1:50052
//! mintcache-bench --endpoint 127.0.0.1:50052
//! ```

use std::net::SocketAddr;

use clap::Parser;
use mintcache::grpc::proto::cache_server::{Cache, CacheServer};
use mintcache::grpc::proto::{
    AddRequest, AddResponse, DeleteManyRequest, DeleteManyResponse, DeleteManyResult,
    DeleteRequest, DeleteResponse, FlushRequest, FlushResponse, GetManyRequest, GetManyResponse,
    GetManyResult, GetRequest, GetResponse, IncrementRequest, IncrementResponse, InvalidateRequest,
    InvalidateResponse, Outcome, SetManyRequest, SetManyResponse, SetManyResult, SetRequest,
    SetResponse, TouchRequest, TouchResponse,
};
use tonic::codegen::Bytes;
use tonic::{Request, Response, Status};

/// The value of every read (a static buffer: answering does not even copy it).
static VALUE: [u8; 64] = [b'v'; 64];
/// The freshness every read reports (the server's default TTL and grace).
const TTL_SECONDS: i64 = 300;
const GRACE_SECONDS: i64 = 30;

/// A gRPC server of the mintcache API that answers without a backend.
#[derive(Debug, Parser)]
#[command(name = "noop_server", about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
}

#[derive(Debug, Default)]
struct Noop;

fn hit() -> GetResponse {
    GetResponse {
        outcome: Outcome::Hit.into(),
        value: Bytes::from_static(&VALUE),
        ttl_seconds: TTL_SECONDS,
        grace_seconds: GRACE_SECONDS,
        ..GetResponse::default()
    }
}

#[tonic::async_trait]
impl Cache for Noop {
    async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Ok(Response::new(hit()))
    }

    async fn set(&self, _: Request<SetRequest>) -> Result<Response<SetResponse>, Status> {
        Ok(Response::new(SetResponse { stored: true }))
    }

    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        Ok(Response::new(DeleteResponse { deleted: true }))
    }

    async fn add(&self, _: Request<AddRequest>) -> Result<Response<AddResponse>, Status> {
        Ok(Response::new(AddResponse {
            stored: true,
            ..Default::default()
        }))
    }

    async fn touch(&self, _: Request<TouchRequest>) -> Result<Response<TouchResponse>, Status> {
        Ok(Response::new(TouchResponse { touched: true }))
    }

    async fn invalidate(
        &self,
        _: Request<InvalidateRequest>,
    ) -> Result<Response<InvalidateResponse>, Status> {
        Ok(Response::new(InvalidateResponse { invalidated: true }))
    }

    async fn increment(
        &self,
        request: Request<IncrementRequest>,
    ) -> Result<Response<IncrementResponse>, Status> {
        let request = request.into_inner();
        let value = request
            .initial_value
            .unwrap_or_else(|| request.delta.max(0).unsigned_abs());
        Ok(Response::new(IncrementResponse { value }))
    }

    async fn flush(&self, _: Request<FlushRequest>) -> Result<Response<FlushResponse>, Status> {
        Ok(Response::new(FlushResponse { flushed: true }))
    }

    async fn get_many(
        &self,
        request: Request<GetManyRequest>,
    ) -> Result<Response<GetManyResponse>, Status> {
        let results = request
            .into_inner()
            .keys
            .into_iter()
            .map(|key| {
                let hit = hit();
                GetManyResult {
                    key,
                    outcome: hit.outcome,
                    value: hit.value,
                    ttl_seconds: hit.ttl_seconds,
                    grace_seconds: hit.grace_seconds,
                    ..GetManyResult::default()
                }
            })
            .collect();
        Ok(Response::new(GetManyResponse { results }))
    }

    async fn set_many(
        &self,
        request: Request<SetManyRequest>,
    ) -> Result<Response<SetManyResponse>, Status> {
        let results = request
            .into_inner()
            .items
            .into_iter()
            .map(|item| SetManyResult {
                key: item.key,
                error: None,
                stored: true,
            })
            .collect();
        Ok(Response::new(SetManyResponse { results }))
    }

    async fn delete_many(
        &self,
        request: Request<DeleteManyRequest>,
    ) -> Result<Response<DeleteManyResponse>, Status> {
        let results = request
            .into_inner()
            .keys
            .into_iter()
            .map(|key| DeleteManyResult {
                key,
                error: None,
                deleted: true,
            })
            .collect();
        Ok(Response::new(DeleteManyResponse { results }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!("noop_server: listening on {}", args.listen);
    // `serve` binds the address itself, with TCP_NODELAY on accepted sockets (tonic's default).
    tonic::transport::Server::builder()
        .add_service(CacheServer::new(Noop))
        .serve_with_shutdown(args.listen, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
