//! One memcached server: its address and its connection pool.
//!
//! Connections are async-memcached clients in a deadpool pool. A client whose operation failed
//! midway or was cancelled (timeout, caller gone) closes itself; the pool's recycle check
//! (`is_closed`) then discards it instead of handing a connection with unread bytes to the
//! next caller.

use std::future::Future;
use std::time::Duration;

use async_memcached::{Client, Error as McError};
use deadpool::Runtime;
use deadpool::managed::{self, Metrics, Pool, PoolError, RecycleError, RecycleResult, Timeouts};

use crate::store::StoreError;

/// Creates and checks connections to one server.
#[derive(Debug)]
pub struct ConnManager {
    addr: String,
}

impl managed::Manager for ConnManager {
    type Type = Client;
    type Error = McError;

    async fn create(&self) -> Result<Client, McError> {
        Client::new(&self.addr).await
    }

    async fn recycle(&self, client: &mut Client, _: &Metrics) -> RecycleResult<McError> {
        if client.is_closed() {
            Err(RecycleError::message(
                "connection closed after an incomplete operation",
            ))
        } else {
            Ok(())
        }
    }
}

/// A pooled connection; returns to the pool when dropped.
pub type Conn = managed::Object<ConnManager>;

/// One memcached server.
pub struct Node {
    addr: String,
    pool: Pool<ConnManager>,
    timeout: Duration,
}

impl Node {
    /// A server at `addr` (`host:port`) with up to `pool_size` connections.
    pub fn new(addr: &str, pool_size: usize, connect_timeout: Duration, timeout: Duration) -> Self {
        let pool = Pool::builder(ConnManager {
            addr: format!("tcp://{addr}"),
        })
        .max_size(pool_size)
        .timeouts(Timeouts {
            wait: Some(timeout),
            create: Some(connect_timeout),
            recycle: Some(timeout),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .unwrap_or_else(|e| unreachable!("pool with a runtime always builds: {e}"));
        Self {
            addr: addr.to_owned(),
            pool,
            timeout,
        }
    }

    /// The server's `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Runs one operation on a pooled connection, within the operation timeout.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, McError>>,
    {
        let work = async {
            let conn = self.pool.get().await.map_err(|e| self.pool_error(e))?;
            op(conn).await.map_err(|e| StoreError::Protocol {
                node: self.addr.clone(),
                reason: e.to_string(),
            })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Timeout {
                    node: self.addr.clone(),
                })
            })
    }

    fn pool_error(&self, e: PoolError<McError>) -> StoreError {
        let node = self.addr.clone();
        match e {
            PoolError::Timeout(_) => StoreError::Timeout { node },
            PoolError::Backend(e) => StoreError::Connect {
                node,
                reason: e.to_string(),
            },
            other => StoreError::Connect {
                node,
                reason: other.to_string(),
            },
        }
    }
}
