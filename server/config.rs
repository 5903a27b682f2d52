//! Configuration: defaults < TOML file (`--config PATH` or `MINTCACHE_CONFIG`) < environment
//! (`MINTCACHE_` prefix, `__` between section and key, e.g.
//! `MINTCACHE_MEMCACHED__SERVERS=10.0.0.1:11211,10.0.0.2:11211`).
//!
//! Two forms of it: [`Config`] is what an operator writes, one serde struct per section with
//! named defaults; [`Settings`] is what the server runs with. [`Config::validate`] turns the
//! first into the second once, before any port is bound: each section checks and parses its own
//! values (listen addresses resolved, the default key space, token digests, TLS PEM files read),
//! then the checks that span sections run. Every problem found is reported, each naming its key,
//! not just the first; nothing is parsed again later.
//!
//! Environment values are taken as the strings they are: a version `42` or `007` stays that
//! string, and numbers and booleans are read from their text where a setting is one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::core::auth::{AuthPolicy, TokenDigests};
use crate::core::envelope::MAX_GRACE_SECONDS;
use crate::core::key::{KeySpace, validate_label};
use crate::core::ttl::MAX_TTL_SECONDS;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "MINTCACHE_CONFIG";
/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "MINTCACHE_";
/// The section names, in the order they are checked and printed.
const SECTIONS: &[&str] = &[
    "server",
    "memcached",
    "embedded",
    "cache",
    "limits",
    "log",
    "auth",
    "tls",
    "admin",
    "telemetry",
    "hot_cache",
];

/// One configuration problem: the dotted key it is about (empty when it is about the sources
/// themselves, such as a missing file) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key, e.g. `cache.default_version`.
    pub key: String,
    /// What is wrong, and where the value came from when that is known.
    pub problem: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "`{}`: {}", self.key, self.problem)
        }
    }
}

/// Every problem of a configuration (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Whether one of the problems is about `key`.
    pub fn names(&self, key: &str) -> bool {
        self.0.iter().any(|e| e.key == key)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} problems:", all.len())?;
                for e in all {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

/// Problems found so far, while checking.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.0.push(ConfigError::new(key, problem));
    }

    /// Records a problem unless `ok`.
    fn check(&mut self, ok: bool, key: &str, problem: impl FnOnce() -> String) {
        if !ok {
            self.add(key, problem());
        }
    }
}

/// The whole configuration, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The gRPC server.
    pub server: ServerConfig,
    /// The memcached pool.
    pub memcached: MemcachedConfig,
    /// The embedded store (used when `memcached.servers` is empty).
    pub embedded: EmbeddedConfig,
    /// Cache semantics.
    pub cache: CacheConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Tokens, admin rights.
    pub auth: AuthConfig,
    /// TLS on the gRPC port.
    pub tls: TlsConfig,
    /// The admin HTTP port: metrics, liveness and readiness.
    pub admin: AdminConfig,
    /// OpenTelemetry export.
    pub telemetry: TelemetryConfig,
    /// The per-replica cache of hot keys.
    pub hot_cache: HotCacheConfig,
}

/// `[hot_cache]`: a per-replica cache of keys memcached reports hot, so that one viral key
/// does not put all its load on one memcached server. Off unless `max_staleness_ms` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HotCacheConfig {
    /// Longest a replica serves a hot key's value from its own memory without asking memcached
    /// (0: no hot cache). Writes through other replicas are seen within this delay; writes
    /// through this one at once.
    pub max_staleness_ms: u64,
    /// Memory the hot cache may hold (values and keys, at their cost).
    pub max_bytes: u64,
}

impl Default for HotCacheConfig {
    fn default() -> Self {
        Self {
            max_staleness_ms: 0,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A listen address as written: `host:port`, where the host is an IP address (`[::1]` for
/// IPv6) or a name resolved at startup. Port 0 asks the system for a free port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    host: String,
    port: u16,
}

impl ListenAddr {
    /// `host:port`.
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: host.to_owned(),
            port,
        }
    }

    /// Resolves the host: the address to bind, the first IPv4 address of a name if it has
    /// one (so that `localhost` means 127.0.0.1, as clients usually take it).
    fn resolve(&self) -> Result<SocketAddr, String> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = (host, self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{}`: {e}", self.host))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| format!("`{}` resolves to no address", self.host))
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not host:port (e.g. 127.0.0.1:50051 or localhost:50051)");
        let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let bracketed = host.starts_with('[') && host.ends_with(']');
        // A colon outside brackets is an IPv6 address written without them: ambiguous.
        if host.is_empty() || (host.contains(':') && !bracketed) || host.contains(['/', ' ']) {
            return Err(bad());
        }
        Ok(Self::new(host, port))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`).
    pub listen: ListenAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        // Not 9090: that is Prometheus's own port, often on the same host.
        Self {
            listen: ListenAddr::new("127.0.0.1", 50052),
        }
    }
}

/// `[telemetry]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint of an OpenTelemetry collector (e.g. `http://otel-collector:4317`).
    /// Empty: no export (metrics are still served at `/metrics`).
    pub otlp_endpoint: String,
    /// `service.name` of the exported telemetry.
    pub service_name: String,
    /// Fraction of traces sampled when the caller did not decide (parent-based), 0.0..=1.0.
    pub sample_ratio: f64,
    /// Seconds between metric exports over OTLP.
    pub export_interval_seconds: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "mintcache".to_owned(),
            sample_ratio: 1.0,
            export_interval_seconds: 15,
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// SHA-256 digests (hex) of admin tokens: `echo -n TOKEN | sha256sum`. Admins may use
    /// `x-cache-debug`. None configured: debug mode is refused to everyone.
    #[serde(deserialize_with = "strings_from_list_or_string")]
    pub admin_token_sha256: Vec<String>,
    /// SHA-256 digests (hex) of client tokens.
    #[serde(deserialize_with = "strings_from_list_or_string")]
    pub client_token_sha256: Vec<String>,
    /// Refuse `Cache` calls that present no token (or verified client certificate).
    /// Health and reflection stay open.
    pub require_token: bool,
    /// Subjects of TLS client certificates with admin rights, as the server renders them
    /// (e.g. `CN=ops-admin` or `CN=ops-admin, O=Example`). Needs `tls.client_ca`.
    #[serde(deserialize_with = "strings_from_list_or_string")]
    pub admin_subjects: Vec<String>,
}

/// `[tls]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain of the server. With `key`, turns TLS on.
    pub cert: Option<PathBuf>,
    /// PEM private key of the server.
    pub key: Option<PathBuf>,
    /// PEM CA bundle that client certificates must chain to (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: accept clients without a certificate too (they are then ordinary,
    /// token-authenticated callers). Default: a certificate is required.
    pub client_cert_optional: bool,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the gRPC listener.
    pub listen: ListenAddr,
    /// Seconds in-flight calls get to finish on shutdown.
    pub shutdown_grace_seconds: u64,
    /// Calls served at once; calls beyond it are shed at once with `RESOURCE_EXHAUSTED`.
    pub max_concurrent_calls: usize,
    /// Largest gRPC message accepted or sent, in bytes. Must leave room for the largest value.
    pub max_message_bytes: usize,
    /// Calls one HTTP/2 connection may have open at once (its `SETTINGS_MAX_CONCURRENT_STREAMS`);
    /// a client's further calls wait in the client until one ends.
    pub max_concurrent_streams: u32,
    /// Milliseconds a call's request has to arrive in full, counted from the call's arrival;
    /// a call whose request is not complete by then is answered `DEADLINE_EXCEEDED`.
    pub request_read_timeout_ms: u64,
    /// Bytes of request messages that all calls together may hold while they are read and
    /// served; a call whose message does not fit is refused with `RESOURCE_EXHAUSTED`. At least
    /// `max_message_bytes`.
    pub max_buffered_request_bytes: usize,
    /// Bytes of values read back from memcached that all calls together may hold until their
    /// answers are sent; a value that does not fit is not read (`RESOURCE_EXHAUSTED` for its
    /// key). At least `max_message_bytes`.
    pub max_buffered_reply_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: ListenAddr::new("127.0.0.1", 50051),
            shutdown_grace_seconds: 20,
            max_concurrent_calls: 1024,
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 100,
            request_read_timeout_ms: 10_000,
            max_buffered_request_bytes: 64 * 1024 * 1024,
            max_buffered_reply_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `[memcached]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemcachedConfig {
    /// `host:port` or `host:port:weight` entries; a list, or one comma-separated string.
    #[serde(deserialize_with = "servers_from_list_or_string")]
    pub servers: Vec<ServerSpec>,
    /// Milliseconds to establish a connection.
    pub connect_timeout_ms: u64,
    /// Milliseconds for one operation.
    pub timeout_ms: u64,
    /// Connections per memcached server. Each carries many operations at once (pipelined):
    /// a few are enough.
    pub pool_size: usize,
    /// Consecutive failures after which a server is ejected (0: never eject).
    pub failure_limit: u32,
    /// Milliseconds an ejected server is left alone before it is tried again.
    pub retry_timeout_ms: u64,
    /// Where the keys of an ejected server go: `fail` (reads miss, writes fail, as if the
    /// server were down) or `remap` (onto the remaining servers, like twemproxy's
    /// `auto_eject_hosts`).
    pub ejected_keys: EjectedKeys,
    /// Milliseconds a connection may sit idle before TCP keepalive probes it (0: off). A
    /// connection to a host that went silent then fails by itself within about twice this.
    pub keepalive_ms: u64,
    /// Commands that may wait on one connection (queued or sent, unanswered); calls beyond
    /// it fail at once (reads as misses, writes with `UNAVAILABLE`) instead of queueing
    /// without bound.
    pub max_queued_commands: usize,
}

/// What happens to the keys of an ejected memcached server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EjectedKeys {
    /// Reads of its keys miss (fail open), writes fail: no other server sees them.
    Fail,
    /// Its keys are served by the remaining servers until it returns.
    Remap,
}

impl Default for MemcachedConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            connect_timeout_ms: 1000,
            timeout_ms: 500,
            pool_size: 2,
            failure_limit: 3,
            retry_timeout_ms: 5000,
            ejected_keys: EjectedKeys::Fail,
            keepalive_ms: 10_000,
            max_queued_commands: 8192,
        }
    }
}

/// `[embedded]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// Memory budget of the embedded store, in bytes (keys and values).
    pub max_bytes: u64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// `[cache]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Version used when a call has no `x-cache-version`.
    #[serde(deserialize_with = "string_whatever_it_looks_like")]
    pub default_version: String,
    /// Namespace used when a call has no `x-cache-namespace` (may be empty).
    #[serde(deserialize_with = "string_whatever_it_looks_like")]
    pub namespace: String,
    /// Fresh seconds when a write asks for 0.
    pub default_ttl_seconds: u64,
    /// Grace seconds when a write asks for 0.
    pub grace_seconds: u64,
    /// Cold-miss protection when a read does not say.
    pub lease_on_miss: bool,
    /// Seconds a cold-miss placeholder waits for its filler before the next caller may try.
    pub fill_timeout_seconds: u64,
    /// Answer reads as `MISS` when the backend fails (true), or fail them with `UNAVAILABLE`.
    pub fail_open: bool,
    /// Seconds a `REFRESH` winner has to store a new value; after that the refresh election
    /// reopens and a later reader gets `REFRESH` (0: never reopen).
    pub refresh_timeout_seconds: u64,
    /// Milliseconds a replica trusts its copy of a key space's generation: after a `Flush`
    /// through another replica, this one stops serving the flushed keys within this delay
    /// (0: read the generation from the backend on every call).
    pub flush_sync_ms: u64,
    /// β of early refresh: a read of a fresh value asks to refresh it with a probability that
    /// rises as its soft expiry nears and with the time its last recomputation took (0: only
    /// after the soft expiry, as before; also keeps values in the value format and leases in
    /// the token formats of versions without early refresh, for rolling upgrades).
    pub early_refresh_beta: f64,
    /// β per namespace (`{ shop = 2.0 }`), over `early_refresh_beta`.
    pub early_refresh_beta_by_namespace: BTreeMap<String, f64>,
    /// Longest a read may wait for another caller's fill (`GetRequest.wait_ms` is cut to it).
    pub max_wait_ms: u64,
    /// How often a waiting read looks for the fill in memcached when it is stored through
    /// another replica (through this one, the read is answered at once).
    pub wait_poll_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            default_version: "1".to_owned(),
            namespace: String::new(),
            default_ttl_seconds: 300,
            grace_seconds: 30,
            lease_on_miss: false,
            fill_timeout_seconds: 5,
            fail_open: true,
            refresh_timeout_seconds: 10,
            flush_sync_ms: 1000,
            early_refresh_beta: 1.0,
            early_refresh_beta_by_namespace: BTreeMap::new(),
            max_wait_ms: 10_000,
            wait_poll_ms: 10,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest accepted key, in bytes.
    pub max_key_bytes: usize,
    /// Longest accepted value, in bytes. The default leaves room, within memcached's default
    /// 1 MiB item size, for the key, memcached's item header and mintcache's 8-byte envelope.
    pub max_value_bytes: usize,
}

/// Largest `server.max_buffered_request_bytes`: 1 TiB, far beyond any machine's need (and
/// within what the budget's semaphore can count on 64-bit platforms).
const MAX_BUFFERED_REQUEST_BYTES: u64 = 1 << 40;

/// Default `limits.max_value_bytes`: 1 MiB minus 1 KiB of overhead.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024 - 1024;

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_key_bytes: 4096,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A level (`info`) or `tracing` filter directives (`mintcache=debug,info`). `RUST_LOG`
    /// overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// One memcached server: `host:port` with an optional `:weight` (default 1). The host is a
/// name, an IPv4 address, or an IPv6 address in brackets (`[::1]:11211`); an IPv6 address
/// without brackets (`::1:11211`) could be read several ways and is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerSpec {
    /// `host:port`, as a socket address is written (`[::1]:11211` for IPv6).
    pub addr: String,
    /// Relative share of keys.
    pub weight: u32,
}

impl FromStr for ServerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || {
            format!(
                "`{s}` is not host:port or host:port:weight (e.g. 10.0.0.1:11211, \
                 cache-0.memcached:11211:2; an IPv6 address goes in brackets: [::1]:11211)"
            )
        };
        // The host ends at its closing bracket (IPv6) or at the first colon.
        let (host, rest) = match s.strip_prefix('[') {
            Some(bracketed) => {
                let (ip, rest) = bracketed.split_once(']').ok_or_else(bad)?;
                if format!("[{ip}]:0")
                    .parse::<std::net::SocketAddrV6>()
                    .is_err()
                {
                    return Err(format!(
                        "`{s}`: `{ip}` is not an IPv6 address (write e.g. [::1]:11211)"
                    ));
                }
                (&s[..ip.len() + 2], rest.strip_prefix(':').ok_or_else(bad)?)
            }
            None => s.split_once(':').ok_or_else(bad)?,
        };
        let (port, weight) = match rest.split_once(':') {
            None => (rest, 1),
            Some((port, w)) => {
                let weight: u32 = w.parse().map_err(|_| bad())?;
                if weight == 0 {
                    return Err(format!("`{s}`: weight must be at least 1"));
                }
                (port, weight)
            }
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        let bracketed = host.starts_with('[');
        let stray = if bracketed {
            host.contains(['/', ' ', ','])
        } else {
            host.contains(['/', ' ', ',', '[', ']'])
        };
        if host.is_empty() || port == 0 || stray {
            return Err(bad());
        }
        Ok(Self {
            addr: format!("{host}:{port}"),
            weight,
        })
    }
}

impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.weight)
    }
}

impl Serialize for ServerSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServerSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A string, or a whole number taken as its decimal text (TOML `default_version = 42`). A
/// fractional number is refused: its spelling (`1.10`) is already lost.
struct StringLike;

impl Visitor<'_> for StringLike {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Err(E::custom(format!(
            "found the number {v}: write it as a string in quotes, as it should be spelled"
        )))
    }
}

fn string_whatever_it_looks_like<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(StringLike)
}

/// A list of strings: a TOML list, or one comma-separated string (environment; surrounding
/// `[` `]` and quotes around items are allowed). Items that look like numbers are strings.
struct StringList;

impl<'de> Visitor<'de> for StringList {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings, or one comma-separated string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
        let v = v.trim();
        let v = v
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(v);
        Ok(v.split(',')
            .map(|item| item.trim().trim_matches(['"', '\'']).trim())
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<String>, E> {
        StringLike.visit_f64(v).map(|s| vec![s])
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        struct Item;
        impl<'de> de::DeserializeSeed<'de> for Item {
            type Value = String;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
                d.deserialize_any(StringLike)
            }
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Item)? {
            items.push(item);
        }
        Ok(items)
    }
}

fn strings_from_list_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(StringList)
}

fn servers_from_list_or_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<ServerSpec>, D::Error> {
    strings_from_list_or_string(d)?
        .iter()
        .map(|s| s.parse().map_err(de::Error::custom))
        .collect()
}

/// `MINTCACHE_SECTION__KEY` variables, each value kept as the string it is. (figment's own
/// `Env` guesses types from the text, which turns a version `007` into the number 7.)
struct RawEnv(Env);

impl RawEnv {
    fn new() -> Self {
        Self(
            Env::prefixed(ENV_PREFIX)
                // Only `SECTION__KEY` variables are settings. Others, such as the
                // `MINTCACHE_SERVICE_HOST` / `MINTCACHE_PORT` that Kubernetes service links
                // inject for a Service named `mintcache`, and `MINTCACHE_CONFIG`, are not.
                .filter(|key| key.as_str().contains("__"))
                .split("__")
                .map(|k| k.as_str().to_ascii_lowercase().into()),
        )
    }
}

impl Provider for RawEnv {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (key, value) in self.0.iter() {
            let path: Vec<&str> = key.as_str().split('.').collect();
            insert_at(&mut root, &path, Value::from(value));
        }
        Ok(Profile::Default.collect(root))
    }
}

/// Puts `value` at a dotted path in `dict`, making the tables on the way.
fn insert_at(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry((*first).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_at(inner, rest, value);
            }
        }
    }
}

impl Config {
    /// Loads defaults, then the TOML file (if any), then `MINTCACHE_*` variables, and
    /// validates the result.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigErrors> {
        Self::from_figment(&Self::figment(file))
    }

    /// The layered sources, for callers that add their own on top.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            fig = fig.merge(Toml::file_exact(path));
        }
        fig.merge(RawEnv::new())
    }

    /// Extracts and validates a configuration from any figment, reporting every problem:
    /// each section's, and those of the checks between sections.
    pub fn from_figment(fig: &Figment) -> Result<Settings, ConfigErrors> {
        let mut problems = Problems::default();
        let (config, unreadable) = Self::extract(fig, &mut problems);
        let read_problems = problems.0.len();
        let settings = config.validate_sections(&unreadable, &mut problems);
        // Say where each refused value came from, unless it is a default.
        let defaults = Serialized::defaults(Config::default()).metadata().name;
        for e in &mut problems.0[read_problems..] {
            if let Some(m) = fig.find_metadata(&e.key).filter(|m| m.name != defaults) {
                e.problem.push_str(&render_source(m));
            }
        }
        match settings {
            Some(settings) if problems.0.is_empty() => Ok(settings),
            _ => Err(ConfigErrors(problems.0)),
        }
    }

    /// Validates a configuration built in code.
    pub fn validate(&self) -> Result<Settings, ConfigErrors> {
        let mut problems = Problems::default();
        match self.validate_sections(&BTreeSet::new(), &mut problems) {
            Some(settings) if problems.0.is_empty() => Ok(settings),
            _ => Err(ConfigErrors(problems.0)),
        }
    }

    /// Reads each section on its own, so that a bad value in one does not hide the others.
    /// Sections that cannot be read are left at their defaults and named in the returned set.
    fn extract(fig: &Figment, problems: &mut Problems) -> (Self, BTreeSet<&'static str>) {
        let mut config = Config::default();
        let mut unreadable: BTreeSet<&'static str> = SECTIONS.iter().copied().collect();
        let top: BTreeMap<String, Value> = match fig.extract() {
            Ok(top) => top,
            Err(e) => {
                // The sources themselves: a missing file, a TOML syntax error.
                for e in e {
                    let key = key_of(&e);
                    problems.add(key.as_str(), describe(&key, &e, fig));
                }
                return (config, unreadable);
            }
        };
        for name in top.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
            problems.add(
                name.as_str(),
                format!(
                    "unknown section (expected one of: {}){}",
                    SECTIONS.join(", "),
                    source_of(fig, name)
                ),
            );
        }
        macro_rules! section {
            ($field:ident) => {
                let name = stringify!($field);
                if let Some(value) = read_section(fig, name, problems) {
                    config.$field = value;
                    unreadable.remove(name);
                }
            };
        }
        section!(server);
        section!(memcached);
        section!(embedded);
        section!(cache);
        section!(limits);
        section!(log);
        section!(auth);
        section!(tls);
        section!(admin);
        section!(telemetry);
        section!(hot_cache);
        (config, unreadable)
    }

    /// Checks every section that could be read, then (when all could) the rules that span
    /// sections. `None` when something is wrong.
    fn validate_sections(
        &self,
        unreadable: &BTreeSet<&'static str>,
        p: &mut Problems,
    ) -> Option<Settings> {
        let readable = |name: &str| !unreadable.contains(name);
        let server = readable("server")
            .then(|| self.server.validate(p))
            .flatten();
        let admin_listen = readable("admin").then(|| self.admin.validate(p)).flatten();
        if readable("memcached") {
            self.memcached.validate(p);
        }
        if readable("embedded") {
            self.embedded.validate(p);
        }
        let key_space_ok = readable("cache") && self.cache.validate(p);
        if readable("limits") {
            self.limits.validate(p);
        }
        let log = readable("log").then(|| self.log.validate(p)).flatten();
        let auth = readable("auth").then(|| self.auth.validate(p)).flatten();
        let tls = readable("tls").then(|| self.tls.validate(p)).flatten();
        let telemetry = readable("telemetry")
            .then(|| self.telemetry.validate(p))
            .flatten();
        if readable("hot_cache") {
            self.hot_cache.validate(p);
        }
        if !unreadable.is_empty() {
            return None;
        }
        let (server, admin_listen, log, auth, tls, telemetry) =
            (server?, admin_listen?, log?, auth?, tls?, telemetry?);
        let cache = key_space_ok.then(|| CacheSettings::new(self)).flatten()?;
        self.validate_across(&server, admin_listen, &auth, p);
        let backend = if self.memcached.servers.is_empty() {
            Backend::Embedded {
                max_bytes: self.embedded.max_bytes,
            }
        } else {
            Backend::Memcached(self.memcached.clone())
        };
        Some(Settings {
            server,
            admin_listen,
            backend,
            cache,
            log,
            auth,
            tls,
            telemetry,
            effective: self.clone(),
        })
    }

    /// The rules between sections.
    fn validate_across(
        &self,
        server: &ServerSettings,
        admin_listen: SocketAddr,
        auth: &AuthPolicy,
        p: &mut Problems,
    ) {
        let needed = self.limits.max_value_bytes + self.limits.max_key_bytes + 1024;
        p.check(
            server.max_message_bytes >= needed,
            "server.max_message_bytes",
            || {
                format!(
                    "must be at least {needed} (limits.max_value_bytes + limits.max_key_bytes + 1024)"
                )
            },
        );
        let ephemeral = server.listen.port() == 0 || admin_listen.port() == 0;
        p.check(
            ephemeral || admin_listen != server.listen,
            "admin.listen",
            || format!("must differ from server.listen (both are {admin_listen})"),
        );
        let client_ca = self.tls.client_ca.is_some();
        p.check(
            self.auth.admin_subjects.is_empty() || client_ca,
            "auth.admin_subjects",
            || "needs tls.client_ca (admin rights by client certificate need mutual TLS)".into(),
        );
        let can_authenticate = !auth.admins.is_empty() || !auth.clients.is_empty() || client_ca;
        p.check(
            !auth.require_token || can_authenticate,
            "auth.require_token",
            || {
                "is true, but no caller could ever present a credential: configure \
                 auth.client_token_sha256, auth.admin_token_sha256 or tls.client_ca"
                    .into()
            },
        );
    }
}

/// Reads one section (numbers and booleans may be written as text), recording each of its
/// problems. serde stops at a section's first bad value, so each bad value is taken out in turn
/// and the rest read again, until what is left reads.
fn read_section<T: DeserializeOwned>(
    fig: &Figment,
    name: &'static str,
    p: &mut Problems,
) -> Option<T> {
    let mut error = match fig.extract_inner_lossy::<T>(name) {
        Ok(section) => return Some(section),
        Err(e) => e,
    };
    let mut values = fig.extract_inner::<Dict>(name).unwrap_or_default();
    // Each round takes out at least one value, or stops.
    for _ in 0..=values.len() {
        let mut removed = false;
        for e in error {
            let key = key_in(name, &e);
            p.add(key.as_str(), describe(&key, &e, fig));
            let field = key
                .strip_prefix(name)
                .and_then(|k| k.strip_prefix('.'))
                .and_then(|k| k.split('.').next());
            removed |= field.is_some_and(|f| values.remove(f).is_some());
        }
        if !removed {
            break;
        }
        match Figment::from(Serialized::default(name, &values)).extract_inner_lossy::<T>(name) {
            Ok(_) => break,
            Err(e) => error = e,
        }
    }
    None
}

/// The full dotted key of an error met while reading section `name`. (figment puts the
/// section last in the path of such errors: `["bogus", "cache"]` for `cache.bogus`.)
fn key_in(name: &str, e: &figment::Error) -> String {
    let mut path: Vec<String> = e.path.iter().map(|p| p.to_ascii_lowercase()).collect();
    if path.last().is_some_and(|last| last == name) {
        path.pop();
    }
    if path.first().is_none_or(|first| first != name) {
        path.insert(0, name.to_owned());
    }
    path.join(".")
}

/// The dotted, lower-case key of a figment error.
fn key_of(e: &figment::Error) -> String {
    let path: Vec<String> = e.path.iter().map(|p| p.to_ascii_lowercase()).collect();
    path.join(".")
}

/// What is wrong, and where the value of `key` came from.
fn describe(key: &str, e: &figment::Error, fig: &Figment) -> String {
    let problem = match &e.kind {
        figment::error::Kind::UnknownField(_, expected) => {
            format!("unknown key (expected one of: {})", expected.join(", "))
        }
        kind => kind.to_string(),
    };
    // The source is looked up in the original sources: errors met while re-reading what is
    // left of a section come from a copy of its values.
    let source = match fig.find_metadata(key) {
        Some(m) => render_source(m),
        None => e.metadata.as_ref().map(render_source).unwrap_or_default(),
    };
    format!("{problem}{source}")
}

/// ` (in <source>)` for the provider that set `key`, if known.
fn source_of(fig: &Figment, key: &str) -> String {
    fig.find_metadata(key)
        .map(render_source)
        .unwrap_or_default()
}

fn render_source(m: &Metadata) -> String {
    match &m.source {
        Some(src) => format!(" (in {} {src})", m.name),
        None => format!(" (in {})", m.name),
    }
}

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
    effective: Config,
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

fn resolve(addr: &ListenAddr, key: &str, p: &mut Problems) -> Option<SocketAddr> {
    addr.resolve().map_err(|e| p.add(key, e)).ok()
}

impl ServerConfig {
    fn validate(&self, p: &mut Problems) -> Option<ServerSettings> {
        p.check(
            self.max_concurrent_calls > 0,
            "server.max_concurrent_calls",
            || "must be at least 1".into(),
        );
        p.check(
            self.max_concurrent_streams > 0,
            "server.max_concurrent_streams",
            || "must be at least 1".into(),
        );
        p.check(
            (1..=3_600_000).contains(&self.request_read_timeout_ms),
            "server.request_read_timeout_ms",
            || "must be in 1..=3600000".into(),
        );
        let budget = self.max_buffered_request_bytes;
        p.check(
            budget >= self.max_message_bytes
                && u64::try_from(budget).is_ok_and(|b| b <= MAX_BUFFERED_REQUEST_BYTES),
            "server.max_buffered_request_bytes",
            || {
                format!(
                    "must be in {}..={MAX_BUFFERED_REQUEST_BYTES} (at least server.max_message_bytes, \
                     or a message of that size could never be read)",
                    self.max_message_bytes
                )
            },
        );
        p.check(
            self.max_buffered_reply_bytes >= self.max_message_bytes,
            "server.max_buffered_reply_bytes",
            || {
                format!(
                    "must be at least server.max_message_bytes ({}), or a full answer could never \
                     be read",
                    self.max_message_bytes
                )
            },
        );
        Some(ServerSettings {
            listen: resolve(&self.listen, "server.listen", p)?,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            max_concurrent_calls: self.max_concurrent_calls,
            max_message_bytes: self.max_message_bytes,
            max_concurrent_streams: self.max_concurrent_streams,
            request_read_timeout: Duration::from_millis(self.request_read_timeout_ms),
            max_buffered_request_bytes: self.max_buffered_request_bytes,
            max_buffered_reply_bytes: self.max_buffered_reply_bytes,
        })
    }
}

impl AdminConfig {
    fn validate(&self, p: &mut Problems) -> Option<SocketAddr> {
        resolve(&self.listen, "admin.listen", p)
    }
}

impl MemcachedConfig {
    fn validate(&self, p: &mut Problems) {
        let at_least_one = || "must be at least 1".to_owned();
        p.check(self.pool_size > 0, "memcached.pool_size", at_least_one);
        p.check(
            self.max_queued_commands > 0,
            "memcached.max_queued_commands",
            at_least_one,
        );
        p.check(self.timeout_ms > 0, "memcached.timeout_ms", at_least_one);
        p.check(
            self.connect_timeout_ms > 0,
            "memcached.connect_timeout_ms",
            at_least_one,
        );
        p.check(
            self.retry_timeout_ms > 0,
            "memcached.retry_timeout_ms",
            at_least_one,
        );
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.servers.iter().find(|s| !seen.insert(&s.addr)) {
            p.add(
                "memcached.servers",
                format!("`{}` is listed twice", dup.addr),
            );
        }
    }
}

impl HotCacheConfig {
    fn validate(&self, p: &mut Problems) {
        p.check(
            self.max_staleness_ms <= 60_000,
            "hot_cache.max_staleness_ms",
            || "must be in 0..=60000 (0: no hot cache)".into(),
        );
        p.check(self.max_bytes >= 1024 * 1024, "hot_cache.max_bytes", || {
            "must be at least 1048576".into()
        });
    }
}

impl EmbeddedConfig {
    fn validate(&self, p: &mut Problems) {
        p.check(self.max_bytes >= 1024 * 1024, "embedded.max_bytes", || {
            "must be at least 1048576".into()
        });
    }
}

impl CacheConfig {
    /// Whether the default key space is valid (other problems are recorded too).
    fn validate(&self, p: &mut Problems) -> bool {
        let label = |key: &str, value: &str, allow_empty: bool, p: &mut Problems| {
            validate_label(value.as_bytes(), allow_empty)
                .map_err(|e| p.add(key, e.to_string()))
                .is_ok()
        };
        let version_ok = label("cache.default_version", &self.default_version, false, p);
        let namespace_ok = label("cache.namespace", &self.namespace, true, p);
        let ttl_range = 1..=MAX_TTL_SECONDS;
        p.check(
            ttl_range.contains(&self.default_ttl_seconds),
            "cache.default_ttl_seconds",
            || format!("must be in {ttl_range:?}"),
        );
        p.check(
            self.grace_seconds <= MAX_GRACE_SECONDS,
            "cache.grace_seconds",
            || format!("must be at most {MAX_GRACE_SECONDS}"),
        );
        p.check(
            (1..=3600).contains(&self.fill_timeout_seconds),
            "cache.fill_timeout_seconds",
            || "must be in 1..=3600".into(),
        );
        p.check(
            self.refresh_timeout_seconds <= 3600,
            "cache.refresh_timeout_seconds",
            || "must be in 0..=3600 (0: never reopen a refresh election)".into(),
        );
        p.check(self.flush_sync_ms <= 60_000, "cache.flush_sync_ms", || {
            "must be in 0..=60000".into()
        });
        let beta_ok = |beta: f64| beta.is_finite() && (0.0..=MAX_BETA).contains(&beta);
        p.check(
            beta_ok(self.early_refresh_beta),
            "cache.early_refresh_beta",
            || format!("must be a number in 0..={MAX_BETA} (0: no early refresh)"),
        );
        for (namespace, beta) in &self.early_refresh_beta_by_namespace {
            let key = format!("cache.early_refresh_beta_by_namespace.{namespace}");
            if let Err(e) = validate_label(namespace.as_bytes(), false) {
                p.add(&key, format!("not a namespace: {e}"));
            }
            p.check(beta_ok(*beta), &key, || {
                format!("must be a number in 0..={MAX_BETA} (0: no early refresh)")
            });
        }
        p.check(self.max_wait_ms <= 600_000, "cache.max_wait_ms", || {
            "must be in 0..=600000".into()
        });
        p.check(
            (1..=10_000).contains(&self.wait_poll_ms),
            "cache.wait_poll_ms",
            || "must be in 1..=10000".into(),
        );
        version_ok && namespace_ok
    }
}

impl LimitsConfig {
    fn validate(&self, p: &mut Problems) {
        p.check(
            (1..=1 << 20).contains(&self.max_key_bytes),
            "limits.max_key_bytes",
            || "must be in 1..=1048576".into(),
        );
        p.check(
            (1..=1 << 30).contains(&self.max_value_bytes),
            "limits.max_value_bytes",
            || "must be in 1..=1073741824".into(),
        );
    }
}

impl CacheSettings {
    /// The settings of two checked sections (`None` if the key space is not valid).
    fn new(config: &Config) -> Option<Self> {
        let Config {
            cache,
            limits,
            server,
            hot_cache,
            ..
        } = config;
        Some(Self {
            default_space: KeySpace::new(&cache.namespace, &cache.default_version).ok()?,
            default_ttl_seconds: cache.default_ttl_seconds,
            default_grace_seconds: cache.grace_seconds,
            lease_on_miss: cache.lease_on_miss,
            fill_timeout_seconds: cache.fill_timeout_seconds,
            fail_open: cache.fail_open,
            refresh_timeout: (cache.refresh_timeout_seconds > 0)
                .then(|| Duration::from_secs(cache.refresh_timeout_seconds)),
            flush_sync: Duration::from_millis(cache.flush_sync_ms),
            max_key_bytes: limits.max_key_bytes,
            max_value_bytes: limits.max_value_bytes,
            max_message_bytes: server.max_message_bytes,
            early_refresh_beta: cache.early_refresh_beta,
            early_refresh_beta_by_namespace: cache.early_refresh_beta_by_namespace.clone(),
            max_wait: Duration::from_millis(cache.max_wait_ms),
            wait_poll: Duration::from_millis(cache.wait_poll_ms),
            hot_cache: (hot_cache.max_staleness_ms > 0).then(|| HotCacheSettings {
                max_staleness: Duration::from_millis(hot_cache.max_staleness_ms),
                max_bytes: hot_cache.max_bytes,
            }),
        })
    }
}

/// Largest β of early refresh: far beyond any use (β = 1 is the paper's choice).
pub const MAX_BETA: f64 = 1000.0;

/// The level names `tracing` knows.
const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

impl LogConfig {
    fn validate(&self, p: &mut Problems) -> Option<LogSettings> {
        match check_log_filter(&self.level) {
            Ok(()) => Some(LogSettings {
                format: self.format,
                filter: self.level.clone(),
            }),
            Err(problem) => {
                p.add("log.level", problem);
                None
            }
        }
    }
}

/// A log filter must say something `tracing` understands as intended. `tracing` reads a bare
/// word as a target name (`verbose` would enable the target `verbose` and silence everything
/// else), so a directive without `=` must be a level.
fn check_log_filter(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err(format!(
            "must not be empty (a level: {})",
            LEVELS.join(", ")
        ));
    }
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let is_level = LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive));
        if !directive.contains(['=', '[']) && !is_level {
            return Err(format!(
                "`{directive}` is not a level ({}) nor a `target=level` directive",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl AuthConfig {
    fn validate(&self, p: &mut Problems) -> Option<AuthPolicy> {
        let digests = |key: &str, entries: &[String], p: &mut Problems| {
            TokenDigests::from_hex(entries)
                .map_err(|e| p.add(key, e.to_string()))
                .ok()
        };
        let admins = digests("auth.admin_token_sha256", &self.admin_token_sha256, p);
        let clients = digests("auth.client_token_sha256", &self.client_token_sha256, p);
        Some(AuthPolicy {
            admins: admins?,
            clients: clients?,
            require_token: self.require_token,
            admin_subjects: self.admin_subjects.clone(),
        })
    }
}

impl TlsConfig {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    /// `Some(None)`: valid, TLS off.
    fn validate(&self, p: &mut Problems) -> Option<Option<TlsSettings>> {
        match (&self.cert, &self.key) {
            (Some(_), None) => p.add("tls.key", "tls.cert is set, tls.key is missing"),
            (None, Some(_)) => p.add("tls.cert", "tls.key is set, tls.cert is missing"),
            _ => {}
        }
        p.check(
            self.client_ca.is_none() || self.cert.is_some(),
            "tls.client_ca",
            || "needs tls.cert and tls.key".into(),
        );
        let cert = read_pem("tls.cert", self.cert.as_deref(), p);
        let key = read_pem("tls.key", self.key.as_deref(), p);
        let client_ca = read_pem("tls.client_ca", self.client_ca.as_deref(), p);
        match (cert?, key?, client_ca?) {
            (Some(cert_pem), Some(key_pem), client_ca) => Some(Some(TlsSettings {
                cert_pem,
                key_pem,
                client_ca: client_ca.map(|pem| (pem, self.client_cert_optional)),
            })),
            (None, None, None) => Some(None),
            _ => None,
        }
    }
}

/// Reads a PEM file named by `key`: `Some(None)` when it is not set, `None` when it cannot be
/// read or is not PEM.
fn read_pem(key: &str, path: Option<&Path>, p: &mut Problems) -> Option<Option<Vec<u8>>> {
    let Some(path) = path else {
        return Some(None);
    };
    match std::fs::read(path) {
        Ok(pem) if pem.windows(11).any(|w| w == b"-----BEGIN ") => Some(Some(pem)),
        Ok(_) => {
            p.add(key, format!("{} is not a PEM file", path.display()));
            None
        }
        Err(e) => {
            p.add(key, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

impl TelemetryConfig {
    fn validate(&self, p: &mut Problems) -> Option<TelemetrySettings> {
        let before = p.0.len();
        p.check(
            (0.0..=1.0).contains(&self.sample_ratio),
            "telemetry.sample_ratio",
            || "must be in 0.0..=1.0".into(),
        );
        p.check(
            self.export_interval_seconds > 0,
            "telemetry.export_interval_seconds",
            || "must be at least 1".into(),
        );
        let endpoint = &self.otlp_endpoint;
        let is_url = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        p.check(
            endpoint.is_empty() || is_url,
            "telemetry.otlp_endpoint",
            || "must be an http:// or https:// URL".into(),
        );
        p.check(
            !self.service_name.is_empty(),
            "telemetry.service_name",
            || "must not be empty".into(),
        );
        (p.0.len() == before).then(|| TelemetrySettings {
            otlp_endpoint: (!endpoint.is_empty()).then(|| endpoint.clone()),
            service_name: self.service_name.clone(),
            sample_ratio: self.sample_ratio,
            export_interval: Duration::from_secs(self.export_interval_seconds),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    /// A config file, environment variables, and the key the error must name.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn load_in_jail(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
        let mut out = None;
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            out = Some(Config::load(Some(Path::new("c.toml"))));
            Ok(())
        });
        out.expect("the jail ran")
    }

    fn config_in_jail(toml: &str, env: &[(&str, &str)]) -> Config {
        load_in_jail(toml, env)
            .unwrap_or_else(|e| panic!("{toml:?} {env:?} should load: {e}"))
            .config()
            .clone()
    }

    #[test]
    fn defaults_are_valid() {
        let s = load_in_jail("", &[]).expect("defaults load");
        assert_eq!(s.config(), &Config::default());
        assert_eq!(s.grpc_listen().to_string(), "127.0.0.1:50051");
        assert_eq!(s.admin_listen().to_string(), "127.0.0.1:50052");
        assert!(matches!(s.backend, Backend::Embedded { .. }));
        assert_eq!(
            s.cache.default_space,
            KeySpace::new("", "1").expect("valid")
        );
    }

    #[test]
    fn file_then_env() {
        let c = config_in_jail(
            "[cache]\ndefault_version = \"v7\"\ngrace_seconds = 10\n[memcached]\nservers = [\"10.0.0.1:11211\", \"10.0.0.2:11211:3\"]\n",
            &[
                ("MINTCACHE_CACHE__GRACE_SECONDS", "12"),
                ("MINTCACHE_LIMITS__MAX_KEY_BYTES", "100"),
                ("MINTCACHE_CACHE__FAIL_OPEN", "false"),
            ],
        );
        assert_eq!(c.cache.default_version, "v7");
        assert_eq!(c.cache.grace_seconds, 12);
        assert_eq!(c.limits.max_key_bytes, 100);
        assert!(!c.cache.fail_open);
        assert_eq!(
            c.memcached.servers[1],
            ServerSpec {
                addr: "10.0.0.2:11211".into(),
                weight: 3
            }
        );
    }

    #[test]
    fn variables_that_are_not_settings_are_left_alone() {
        let c = config_in_jail(
            "",
            &[
                ("MINTCACHE_SERVICE_HOST", "10.96.0.12"),
                ("MINTCACHE_PORT", "tcp://10.96.0.12:50051"),
                ("MINTCACHE_PORT_50051_TCP_ADDR", "10.96.0.12"),
            ],
        );
        assert_eq!(c, Config::default());
    }

    #[test]
    fn servers_from_a_comma_separated_env_var() {
        for written in [
            "10.0.0.1:11211,10.0.0.2:11211:2",
            " 10.0.0.1:11211 , 10.0.0.2:11211:2 ",
            "[\"10.0.0.1:11211\", \"10.0.0.2:11211:2\"]",
        ] {
            let c = config_in_jail("", &[("MINTCACHE_MEMCACHED__SERVERS", written)]);
            assert_eq!(c.memcached.servers.len(), 2, "{written}");
            assert_eq!(c.memcached.servers[1].weight, 2, "{written}");
        }
    }

    #[test]
    fn versions_and_namespaces_are_strings_whatever_they_look_like() {
        for (written, version) in [
            ("42", "42"),
            ("007", "007"),
            ("1.50", "1.50"),
            ("true", "true"),
        ] {
            let c = config_in_jail("", &[("MINTCACHE_CACHE__DEFAULT_VERSION", written)]);
            assert_eq!(c.cache.default_version, version);
        }
        let c = config_in_jail("", &[("MINTCACHE_CACHE__NAMESPACE", "2024")]);
        assert_eq!(c.cache.namespace, "2024");
        let c = config_in_jail("[cache]\ndefault_version = 42\n", &[]);
        assert_eq!(c.cache.default_version, "42");
        // A TOML float has already lost its spelling: refused, saying how to write it.
        let e = load_in_jail("[cache]\ndefault_version = 1.50\n", &[]).expect_err("a float");
        assert!(e.names("cache.default_version"), "{e}");
        assert!(e.to_string().contains("string in quotes"), "{e}");
    }

    #[test]
    fn log_levels_must_be_levels() {
        for good in [
            "info",
            "WARN",
            "off",
            "mintcache=debug,info",
            "mintcache=trace",
        ] {
            let c = config_in_jail("", &[("MINTCACHE_LOG__LEVEL", good)]);
            assert_eq!(c.log.level, good);
        }
        for bad in ["verbose", "info,loud", "", "mintcache=loud"] {
            let e = load_in_jail(&format!("[log]\nlevel = {bad:?}\n"), &[]).expect_err(bad);
            assert!(e.names("log.level"), "{bad:?}: {e}");
        }
        let e = load_in_jail("[log]\nlevel = \"verbose\"\n", &[]).expect_err("not a level");
        assert!(e.to_string().contains("`verbose` is not a level"), "{e}");
    }

    #[test]
    fn token_digests_as_sha256sum_prints_them() {
        let digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let printed = format!("{digest}  -");
        let s = load_in_jail("", &[("MINTCACHE_AUTH__ADMIN_TOKEN_SHA256", &printed)])
            .expect("sha256sum output is a digest");
        assert!(s.auth.admins.contains(b""));
        let s = load_in_jail(
            &format!("[auth]\nclient_token_sha256 = [{printed:?}]\n"),
            &[],
        )
        .expect("in a file too");
        assert!(s.auth.clients.contains(b""));
        // Number-looking values are strings, refused for what they are, not for their type.
        for (toml, env) in [
            ("", &[("MINTCACHE_AUTH__ADMIN_TOKEN_SHA256", "0123")][..]),
            ("[auth]\nadmin_token_sha256 = 123\n", &[][..]),
            ("[auth]\nadmin_token_sha256 = [123]\n", &[][..]),
        ] {
            let e = load_in_jail(toml, env).expect_err("not a digest");
            let message = e.to_string();
            assert!(e.names("auth.admin_token_sha256"), "{message}");
            assert!(message.contains("64 hex digits"), "{message}");
            assert!(
                message.contains("found 4 characters") || message.contains("found 3 characters"),
                "{message}"
            );
            assert!(!message.contains("untagged"), "{message}");
        }
    }

    #[test]
    fn a_required_token_needs_a_way_to_present_one() {
        let e = load_in_jail("[auth]\nrequire_token = true\n", &[]).expect_err("refuses all");
        assert!(e.names("auth.require_token"), "{e}");
        let digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for key in ["client_token_sha256", "admin_token_sha256"] {
            let toml = format!("[auth]\nrequire_token = true\n{key} = [\"{digest}\"]\n");
            assert!(load_in_jail(&toml, &[]).is_ok(), "{toml}");
        }
    }

    #[test]
    fn listen_addresses_may_be_host_names() {
        let s = load_in_jail(
            "[server]\nlisten = \"localhost:50061\"\n[admin]\nlisten = \"[::1]:50062\"\n",
            &[],
        )
        .expect("host names resolve");
        assert_eq!(s.grpc_listen().to_string(), "127.0.0.1:50061");
        assert_eq!(s.admin_listen().to_string(), "[::1]:50062");
        assert_eq!(s.config().server.listen.to_string(), "localhost:50061");
        let e = load_in_jail(
            "",
            &[("MINTCACHE_SERVER__LISTEN", "no-such-host.invalid:1")],
        )
        .expect_err("unresolvable");
        assert!(e.names("server.listen"), "{e}");
        assert!(e.to_string().contains("cannot resolve"), "{e}");
        // Two ephemeral ports on one address are two ports.
        let s = load_in_jail(
            "",
            &[
                ("MINTCACHE_SERVER__LISTEN", "127.0.0.1:0"),
                ("MINTCACHE_ADMIN__LISTEN", "127.0.0.1:0"),
            ],
        )
        .expect("port 0 twice");
        assert_eq!(s.grpc_listen().port(), 0);
        let e = load_in_jail("[admin]\nlisten = \"127.0.0.1:50051\"\n", &[]).expect_err("same");
        assert!(e.names("admin.listen"), "{e}");
    }

    #[test]
    fn every_problem_is_reported() {
        let e = load_in_jail(
            "[cache]\ndefault_ttl_seconds = \"soon\"\nbogus = 1\ngrace_seconds = -1\n\
             [limits]\nmax_key_bytes = 0\n[log]\nlevel = \"verbose\"\n[nope]\n",
            &[("MINTCACHE_MEMCACHED__POOL_SIZE", "0")],
        )
        .expect_err("many problems");
        for key in [
            "cache.default_ttl_seconds",
            "cache.bogus",
            "cache.grace_seconds",
            "limits.max_key_bytes",
            "log.level",
            "nope",
            "memcached.pool_size",
        ] {
            assert!(e.names(key), "{key} missing in: {e}");
        }
        assert!(e.to_string().starts_with("7 problems:"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[Case<'_>] = &[
            ("[cache]\nbogus = 1\n", &[], "bogus"),
            ("[nope]\n", &[], "nope"),
            ("", &[("MINTCACHE_CACHE__NOPE", "1")], "nope"),
            (
                "[cache]\ndefault_version = \"a b\"\n",
                &[],
                "cache.default_version",
            ),
            ("[cache]\nnamespace = \"x:y\"\n", &[], "cache.namespace"),
            (
                "[cache]\ndefault_ttl_seconds = -5\n",
                &[],
                "default_ttl_seconds",
            ),
            (
                "[cache]\ndefault_ttl_seconds = 0\n",
                &[],
                "cache.default_ttl_seconds",
            ),
            ("[limits]\nmax_key_bytes = 0\n", &[], "limits.max_key_bytes"),
            ("[memcached]\nservers = [\"nohost\"]\n", &[], "servers"),
            ("[memcached]\nservers = [\"a:1:0\"]\n", &[], "servers"),
            (
                "[memcached]\nservers = [\"a:1\", \"a:1:2\"]\n",
                &[],
                "memcached.servers",
            ),
            ("[server]\nlisten = \"not an address\"\n", &[], "listen"),
            ("[log]\nformat = \"xml\"\n", &[], "format"),
            (
                "[auth]\nadmin_token_sha256 = [\"abc\"]\n",
                &[],
                "auth.admin_token_sha256",
            ),
            (
                "",
                &[("MINTCACHE_AUTH__CLIENT_TOKEN_SHA256", "nothex")],
                "auth.client_token_sha256",
            ),
            (
                "[auth]\nadmin_subjects = [\"CN=x\"]\n",
                &[],
                "auth.admin_subjects",
            ),
            (
                "[tls]\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.pem\"\n",
                &[],
                "tls.cert",
            ),
            ("[tls]\ncert = \"/nonexistent.pem\"\n", &[], "tls.key"),
            (
                "[tls]\nclient_ca = \"/nonexistent.pem\"\n",
                &[],
                "tls.client_ca",
            ),
            ("[auth]\nrequire_token = true\n", &[], "auth.require_token"),
            ("[log]\nlevel = \"verbose\"\n", &[], "log.level"),
            (
                "[server]\nmax_concurrent_streams = 0\n",
                &[],
                "server.max_concurrent_streams",
            ),
            (
                "[server]\nrequest_read_timeout_ms = 0\n",
                &[],
                "server.request_read_timeout_ms",
            ),
            (
                "[server]\nmax_buffered_request_bytes = 1000\n",
                &[],
                "server.max_buffered_request_bytes",
            ),
            (
                "",
                &[("MINTCACHE_MEMCACHED__SERVERS", "::1:11211")],
                "memcached.servers",
            ),
        ];
        // Every case runs; the failures are reported together, by case.
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|(toml, env, key)| match load_in_jail(toml, env) {
                Ok(_) => Some(format!("{toml:?} {env:?}: accepted, should name {key}")),
                Err(e) if !e.to_string().contains(key) => {
                    Some(format!("{toml:?} {env:?}: should name {key}: {e}"))
                }
                Err(_) => None,
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn server_specs() {
        let ok = |s: &str, addr: &str, w: u32| {
            assert_eq!(
                s.parse::<ServerSpec>(),
                Ok(ServerSpec {
                    addr: addr.into(),
                    weight: w
                }),
                "{s}"
            )
        };
        ok("127.0.0.1:11211", "127.0.0.1:11211", 1);
        ok(" cache-0.memcached:11211:4 ", "cache-0.memcached:11211", 4);
        ok("[::1]:11211", "[::1]:11211", 1);
        ok("[::1]:11211:2", "[::1]:11211", 2);
        ok("[2001:db8::7]:11212", "[2001:db8::7]:11212", 1);
        for bad in [
            "",
            "host",
            "host:",
            ":11211",
            "host:0",
            "host:99999",
            "host:1:x",
            "host:1:0",
            "host:1:2:3",
            "a b:1",
        ] {
            assert!(
                bad.parse::<ServerSpec>().is_err(),
                "{bad:?} should be refused"
            );
        }
        for bad in [
            // IPv6 without brackets: `::1:11211` would otherwise be host `:`, port 1,
            // weight 11211.
            "::1:11211",
            "::1",
            "fe80::1:11211:2",
            "[::1]",
            "[::1]11211",
            "[::1:11211",
            "::1]:11211",
            "[cache-0]:11211",
            "[::1]:0",
        ] {
            let e = bad.parse::<ServerSpec>().expect_err(bad);
            assert!(
                e.contains("[::1]:11211"),
                "{bad:?}: says how to write it: {e}"
            );
        }
        // Printed as written, and read back the same.
        for spec in ["[::1]:11211:3", "10.0.0.1:11211:1"] {
            let parsed: ServerSpec = spec.parse().expect("valid");
            assert_eq!(parsed.to_string(), spec);
        }
    }

    #[test]
    fn listen_addrs() {
        for good in [
            "127.0.0.1:0",
            "0.0.0.0:50051",
            "localhost:1",
            "[::1]:50051",
            "a.b-c:9",
        ] {
            assert_eq!(
                good.parse::<ListenAddr>().map(|a| a.to_string()),
                Ok(good.to_owned())
            );
        }
        for bad in [
            "",
            "host",
            ":1",
            "host:",
            "host:x",
            "host:70000",
            "::1:5",
            "a b:1",
        ] {
            assert!(
                bad.parse::<ListenAddr>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let mut c = Config::default();
        c.memcached.servers = vec!["h:1:2".parse().expect("valid")];
        c.cache.default_version = "007".into();
        let text = c.validate().expect("valid").to_toml();
        let back: Config = toml::from_str(&text).expect("parses");
        assert_eq!(back, c);
    }
}
