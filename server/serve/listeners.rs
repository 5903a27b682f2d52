//! The sockets a server listens on: the gRPC port and the admin port, bound before serving
//! (by `mintcache-server`, or by a test on ephemeral ports).

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::Settings;

/// A listen address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({key}): {source}")]
pub struct BindError {
    /// The configuration key of the address: `server.listen` or `admin.listen`.
    pub key: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// The operating system's refusal (address in use, not an address of this host, ...).
    pub source: std::io::Error,
}

/// The sockets a server listens on.
pub struct Listeners {
    /// The gRPC port (`server.listen`).
    pub grpc: TcpListener,
    /// The admin HTTP port (`admin.listen`).
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds both addresses of the settings; an error names the one that failed.
    pub async fn bind(settings: &Settings) -> Result<Self, BindError> {
        let bind = |key, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| BindError { key, addr, source })
        };
        Ok(Self {
            grpc: bind("server.listen", settings.grpc_listen()).await?,
            admin: bind("admin.listen", settings.admin_listen()).await?,
        })
    }
}
