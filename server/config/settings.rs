//! What the server runs with: [`Settings`], made once from a [`Config`] that passed every check,
//! and its parts, one per section, each with its values parsed (addresses resolved, durations,
//! the default key space, token digests, PEM files).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::{Config, LogFormat, MemcachedConfig, TelemetryConfig};
use crate::core::auth::AuthPolicy;
use crate::core::key::KeySpace;

/// What the server runs with: a configuration that passed every check, its values parsed.
/// Made by [`Config::validate`] or [`Config::load`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) server: ServerSettings,
    pub(crate) admin_listen: SocketAddr,
    pub(crate) backend: Backend,
    pub(crate) cache: CacheSettings,
    pub(crate) log: LogSettings,
    pub(crate) auth: AuthPolicy,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) telemetry: TelemetrySettings,
    pub(super) effective: Config,
}

impl Settings {
    /// The configuration these settings were made from.
    pub fn config(&self) -> &Config {
        &self.effective
    }

    /// The gRPC listen address (`server.listen`, resolved).
    pub fn grpc_listen(&self) -> SocketAddr {
        self.server.listen
    }

    /// The admin listen address (`admin.listen`, resolved).
    pub fn admin_listen(&self) -> SocketAddr {
        self.admin_listen
    }

    /// The effective configuration as TOML (what `--check-config` prints): itself a valid
    /// configuration file.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.effective)
            .unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// `[server]`, checked.
#[derive(Debug, Clone)]
pub(crate) struct ServerSettings {
    pub(crate) listen: SocketAddr,
    pub(crate) shutdown_grace: Duration,
    pub(crate) max_concurrent_calls: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) max_concurrent_streams: u32,
    pub(crate) request_read_timeout: Duration,
    pub(crate) max_buffered_request_bytes: usize,
    pub(crate) max_buffered_reply_bytes: usize,
}

/// Which store serves the cache.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// The in-process store, with its memory budget in bytes.
    Embedded { max_bytes: u64 },
    /// The memcached pool.
    Memcached(MemcachedConfig),
}

/// `[cache]` and `[limits]`, checked: what the mint cache runs with.
#[derive(Debug, Clone)]
pub(crate) struct CacheSettings {
    /// The key space of calls that name none.
    pub(crate) default_space: KeySpace,
    pub(crate) default_ttl_seconds: u64,
    pub(crate) default_grace_seconds: u64,
    pub(crate) lease_on_miss: bool,
    pub(crate) fill_timeout_seconds: u64,
    pub(crate) fail_open: bool,
    /// How long a refresh winner has before the election reopens (`None`: never).
    pub(crate) refresh_timeout: Option<Duration>,
    /// How long a key space's generation is trusted before it is read again.
    pub(crate) flush_sync: Duration,
    pub(crate) max_key_bytes: usize,
    pub(crate) max_value_bytes: usize,
    /// The largest gRPC message: a batched answer is built within it.
    pub(crate) max_message_bytes: usize,
    /// β of early refresh, and per namespace.
    pub(crate) early_refresh_beta: f64,
    pub(crate) early_refresh_beta_by_namespace: BTreeMap<String, f64>,
    /// Longest a read waits for a fill, and how often it looks in the store meanwhile.
    pub(crate) max_wait: Duration,
    pub(crate) wait_poll: Duration,
    /// The hot-key cache, when on.
    pub(crate) hot_cache: Option<HotCacheSettings>,
}

impl CacheSettings {
    /// The β of early refresh in a key space.
    pub(crate) fn beta(&self, space: &KeySpace) -> f64 {
        self.early_refresh_beta_by_namespace
            .get(space.namespace())
            .copied()
            .unwrap_or(self.early_refresh_beta)
    }
}

/// `[hot_cache]`, checked (only when on).
#[derive(Debug, Clone)]
pub(crate) struct HotCacheSettings {
    pub(crate) max_staleness: Duration,
    pub(crate) max_bytes: u64,
}

/// `[log]`, checked.
#[derive(Debug, Clone)]
pub(crate) struct LogSettings {
    pub(crate) format: LogFormat,
    /// Valid `tracing` filter directives.
    pub(crate) filter: String,
}

/// `[tls]`, checked, with the PEM files read.
#[derive(Clone)]
pub(crate) struct TlsSettings {
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) key_pem: Vec<u8>,
    /// The client CA bundle (mutual TLS), and whether clients may come without a certificate.
    pub(crate) client_ca: Option<(Vec<u8>, bool)>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("TlsSettings")
            .field("mutual", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

/// `[telemetry]`, checked.
#[derive(Debug, Clone)]
pub(crate) struct TelemetrySettings {
    pub(crate) otlp_endpoint: Option<String>,
    pub(crate) service_name: String,
    pub(crate) sample_ratio: f64,
    pub(crate) export_interval: Duration,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        let config = TelemetryConfig::default();
        Self {
            otlp_endpoint: None,
            service_name: config.service_name,
            sample_ratio: config.sample_ratio,
            export_interval: Duration::from_secs(config.export_interval_seconds),
        }
    }
}
