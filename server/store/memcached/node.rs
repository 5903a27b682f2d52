//! One memcached server: its address, its connection pool, and its health.
//!
//! Connections are async-memcached clients in a deadpool pool. A client whose operation failed
//! midway or was cancelled (timeout, deadline, caller gone) closes itself; the pool's recycle
//! check (`is_closed`) then discards it instead of handing a connection with unread bytes to
//! the next caller.
//!
//! Health follows twemproxy: after `failure_limit` consecutive failures the server is ejected
//! for `retry_timeout`; while ejected, operations fail at once (no waiting for timeouts) and,
//! with `ejected_keys = remap`, its keys go to the other servers. After the timeout the next
//! probe or operation tries it again.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_memcached::{Client, Error as McError};
use deadpool::Runtime;
use deadpool::managed::{
    self, Metrics as PoolMetrics, Pool, PoolError, RecycleError, RecycleResult, Timeouts,
};
use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::store::{PoolStats, StoreError};

/// Creates and checks connections to one server.
#[derive(Debug)]
pub(crate) struct ConnManager {
    dsn: String,
}

impl managed::Manager for ConnManager {
    type Type = Client;
    type Error = McError;

    async fn create(&self) -> Result<Client, McError> {
        Client::new(&self.dsn).await
    }

    async fn recycle(&self, client: &mut Client, _: &PoolMetrics) -> RecycleResult<McError> {
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
pub(crate) type Conn = managed::Object<ConnManager>;

/// Settings of one server.
#[derive(Debug, Clone)]
pub(crate) struct NodeSettings {
    /// Connections in the pool.
    pub(crate) pool_size: usize,
    /// Time to connect.
    pub(crate) connect_timeout: Duration,
    /// Time for one operation, waiting for a connection included.
    pub(crate) timeout: Duration,
    /// Consecutive failures before ejection (0: never).
    pub(crate) failure_limit: u32,
    /// How long an ejected server is left alone.
    pub(crate) retry_timeout: Duration,
}

/// One memcached server.
pub(crate) struct Node {
    addr: String,
    pool: Pool<ConnManager>,
    settings: NodeSettings,
    metrics: Metrics,
    failures: AtomicU32,
    /// Until when the server is ejected. A std mutex: it is held for a few instructions and
    /// never across an await.
    ejected_until: Mutex<Option<Instant>>,
}

impl Node {
    /// A server at `addr` (`host:port`).
    pub(crate) fn new(addr: &str, settings: NodeSettings, metrics: Metrics) -> Self {
        let pool = Pool::builder(ConnManager {
            dsn: format!("tcp://{addr}"),
        })
        .max_size(settings.pool_size)
        .timeouts(Timeouts {
            wait: Some(settings.timeout),
            create: Some(settings.connect_timeout),
            recycle: Some(settings.timeout),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .unwrap_or_else(|e| unreachable!("pool with a runtime always builds: {e}"));
        Self {
            addr: addr.to_owned(),
            pool,
            settings,
            metrics,
            failures: AtomicU32::new(0),
            ejected_until: Mutex::new(None),
        }
    }

    /// The server's `host:port`.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the server is ejected now.
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejection().is_some_and(|until| Instant::now() < until)
    }

    fn ejection(&self) -> Option<Instant> {
        *self
            .ejected_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_ejection(&self, until: Option<Instant>) {
        *self
            .ejected_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = until;
    }

    /// Connection pool usage.
    pub(crate) fn pool_stats(&self) -> PoolStats {
        let status = self.pool.status();
        PoolStats {
            node: self.addr.clone(),
            in_use: status.size.saturating_sub(status.available),
            idle: status.available,
            waiting: status.waiting,
        }
    }

    /// Runs one operation on a pooled connection, within the operation timeout. Fails at once
    /// while the server is ejected.
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, McError>>,
    {
        if self.is_ejected() {
            self.metrics
                .backend(&self.addr, Duration::ZERO, Some("ejected"));
            return Err(StoreError::Ejected {
                node: self.addr.clone(),
            });
        }
        let span = tracing::info_span!(
            "memcached",
            otel.kind = "client",
            db.system = "memcached",
            node = %self.addr
        );
        self.attempt(op).instrument(span).await
    }

    /// Checks that the server answers (`version`). An ejected server is only tried once its
    /// retry timeout has passed. Whether it answered.
    pub(crate) async fn probe(&self) -> bool {
        if self.is_ejected() {
            return false;
        }
        self.attempt(|mut conn| async move { conn.version().await })
            .await
            .is_ok()
    }

    async fn attempt<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, McError>>,
    {
        let started = Instant::now();
        let work = async {
            let conn = self.pool.get().await.map_err(|e| self.pool_error(e))?;
            op(conn).await.map_err(|e| StoreError::Protocol {
                node: self.addr.clone(),
                reason: e.to_string(),
            })
        };
        let result = tokio::time::timeout(self.settings.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Timeout {
                    node: self.addr.clone(),
                })
            });
        self.metrics.backend(
            &self.addr,
            started.elapsed(),
            result.as_ref().err().map(StoreError::kind),
        );
        match &result {
            Ok(_) => {
                self.failures.store(0, Ordering::Relaxed);
                if self.ejection().is_some() {
                    self.set_ejection(None);
                    tracing::info!(node = %self.addr, "memcached server is back");
                }
            }
            Err(e) => self.failed(e),
        }
        result
    }

    fn failed(&self, e: &StoreError) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let limit = self.settings.failure_limit;
        if limit > 0 && failures >= limit {
            self.failures.store(0, Ordering::Relaxed);
            self.set_ejection(Some(Instant::now() + self.settings.retry_timeout));
            self.metrics.ejection(&self.addr);
            tracing::warn!(
                node = %self.addr,
                error = %e,
                retry_in_ms = self.settings.retry_timeout.as_millis() as u64,
                "memcached server ejected after {failures} consecutive failures"
            );
        }
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
