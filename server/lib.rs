//! mintcache: a versioned mint cache over memcached, served over gRPC.
//!
//! Module map:
//! - [`core`]: pure logic (key encoding, ttl arithmetic, value envelope, memcached item rules,
//!   mint decisions, lease tokens, metadata parsing). No I/O, no clock reads.
//! - [`store`]: the [`store::Store`] trait and its backends, the memcached pool
//!   ([`store::MemcachedStore`]: ketama ring, per-node connection pools) and the embedded
//!   in-process store ([`store::EmbeddedStore`]).
//! - [`cache`]: [`cache::MintCache`], which validates requests and runs the mint protocol over
//!   a store.
//! - [`grpc`]: the tonic service, proto <-> domain conversion, and the error-to-status mapping.
//! - [`layers`]: request-path layers (call metadata).
//! - [`config`]: figment configuration, validated before anything starts.
//!
//! [`run`] serves a configuration on a listener until a shutdown future resolves; the
//! `mintcache-server` binary is a thin wrapper around it.
#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod core;
pub mod grpc;
pub mod layers;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::cache::{MintCache, Settings};
use crate::config::Config;
use crate::grpc::CacheService;
use crate::grpc::proto::cache_server::CacheServer;
use crate::layers::auth::AuthLayer;
use crate::layers::call_meta::CallMetaInterceptor;
use crate::store::{EmbeddedStore, MemcachedStore, Store};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The gRPC transport failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A TLS file could not be read.
    #[error("{key}: cannot read {path}: {source}")]
    TlsFile {
        /// The configuration key.
        key: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves `config` on `listener` until `shutdown` resolves. `config` must be validated
/// ([`Config::load`] does it).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    if config.memcached.servers.is_empty() {
        tracing::warn!(
            "no memcached servers configured (memcached.servers): using the EMBEDDED in-process \
             store. It is NOT shared between replicas, so versions, refresh elections and \
             invalidations only hold within this process. Configure memcached.servers for production."
        );
        let store = EmbeddedStore::new(config.embedded.max_bytes);
        serve(config, store, listener, shutdown).await
    } else {
        let servers: Vec<String> = config
            .memcached
            .servers
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!(servers = ?servers, "using memcached pool");
        let store = MemcachedStore::new(&config.memcached);
        serve(config, store, listener, shutdown).await
    }
}

async fn serve<S: Store>(
    config: Config,
    store: S,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let cache = Arc::new(MintCache::new(store, Settings::from_config(&config)));
    // Validated to leave room for the largest accepted value and key.
    let max_message = config.server.max_message_bytes;
    let cache_service = CacheServer::new(CacheService::new(cache))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let cache_service = InterceptedService::new(
        cache_service,
        CallMetaInterceptor::new(config.default_key_space()),
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CacheServer<CacheService<S>>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grpc::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls_config(&config)? {
        builder = builder.tls_config(tls)?;
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, tls = config.tls.enabled(), "serving mintcache.v1.Cache");
    }
    builder
        // Authentication and admin-only debug modes, for Cache calls only: health and
        // reflection stay open.
        .layer(AuthLayer::new(config.auth_policy()))
        .add_service(cache_service)
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// The TLS settings of the gRPC port, if TLS is on.
fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>, RunError> {
    let tls = &config.tls;
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        return Ok(None);
    };
    let read = |key: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| RunError::TlsFile {
            key,
            path: path.display().to_string(),
            source,
        })
    };
    let mut server = ServerTlsConfig::new().identity(Identity::from_pem(
        read("tls.cert", cert)?,
        read("tls.key", key)?,
    ));
    if let Some(ca) = &tls.client_ca {
        server = server
            .client_ca_root(Certificate::from_pem(read("tls.client_ca", ca)?))
            .client_auth_optional(tls.client_cert_optional);
    }
    Ok(Some(server))
}
