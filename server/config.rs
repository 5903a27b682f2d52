//! Configuration: defaults < TOML file (`--config PATH` or `MINTCACHE_CONFIG`) < environment
//! (`MINTCACHE_` prefix, `__` between section and key, e.g.
//! `MINTCACHE_MEMCACHED__SERVERS=10.0.0.1:11211,10.0.0.2:11211`).
//!
//! One struct per section, each with named defaults. Unknown keys are errors, and every error
//! names the key it is about. [`Config::load`] validates everything before any port is bound.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::core::auth::{AuthPolicy, TokenDigests};
use crate::core::envelope::MAX_GRACE_SECONDS;
use crate::core::key::{KeySpace, validate_label};
use crate::core::ttl::MAX_TTL_SECONDS;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "MINTCACHE_CONFIG";
/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "MINTCACHE_";

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The sources could not be read or do not match the schema (unknown key, wrong type).
    #[error("{}", describe(.0))]
    Load(#[from] Box<figment::Error>),
    /// A value has the right type but is not acceptable.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid {
        /// The dotted key, e.g. `cache.default_version`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Renders every figment error as `key: problem (source)`, keys in lower-case dotted form.
fn describe(e: &figment::Error) -> String {
    let lines: Vec<String> = (*e)
        .clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_ascii_lowercase();
            let source = e.metadata.as_ref().map(|m| match &m.source {
                Some(src) => format!("{} {src}", m.name),
                None => m.name.to_string(),
            });
            let mut line = if key.is_empty() {
                e.kind.to_string()
            } else {
                format!("`{key}`: {}", e.kind)
            };
            if let Some(source) = source {
                line.push_str(&format!(" (in {source})"));
            }
            line
        })
        .collect();
    lines.join("; ")
}

/// The whole configuration.
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
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`).
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
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
    pub cert: Option<std::path::PathBuf>,
    /// PEM private key of the server.
    pub key: Option<std::path::PathBuf>,
    /// PEM CA bundle that client certificates must chain to (mutual TLS).
    pub client_ca: Option<std::path::PathBuf>,
    /// With `client_ca`: accept clients without a certificate too (they are then ordinary,
    /// token-authenticated callers). Default: a certificate is required.
    pub client_cert_optional: bool,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the gRPC listener.
    pub listen: SocketAddr,
    /// Seconds in-flight calls get to finish on shutdown.
    pub shutdown_grace_seconds: u64,
    /// Calls served at once; calls beyond it are shed at once with `RESOURCE_EXHAUSTED`.
    pub max_concurrent_calls: usize,
    /// Largest gRPC message accepted or sent, in bytes. Must leave room for the largest value.
    pub max_message_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            shutdown_grace_seconds: 20,
            max_concurrent_calls: 1024,
            max_message_bytes: 4 * 1024 * 1024,
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
    /// Milliseconds for one operation (including waiting for a pooled connection).
    pub timeout_ms: u64,
    /// Connections per memcached server.
    pub pool_size: usize,
    /// Consecutive failures after which a server is ejected (0: never eject).
    pub failure_limit: u32,
    /// Milliseconds an ejected server is left alone before it is tried again.
    pub retry_timeout_ms: u64,
    /// Where the keys of an ejected server go: `fail` (reads miss, writes fail, as if the
    /// server were down) or `remap` (onto the remaining servers, like twemproxy's
    /// `auto_eject_hosts`).
    pub ejected_keys: EjectedKeys,
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
            pool_size: 16,
            failure_limit: 3,
            retry_timeout_ms: 5000,
            ejected_keys: EjectedKeys::Fail,
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
    pub default_version: String,
    /// Namespace used when a call has no `x-cache-namespace` (may be empty).
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
    /// A `tracing` filter, e.g. `info` or `mintcache=debug,info`. `RUST_LOG` overrides it.
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

impl TlsConfig {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
        match (&self.cert, &self.key) {
            (Some(_), None) => {
                return invalid("tls.key", "tls.cert is set, tls.key is missing".into());
            }
            (None, Some(_)) => {
                return invalid("tls.cert", "tls.key is set, tls.cert is missing".into());
            }
            _ => {}
        }
        if self.client_ca.is_some() && self.cert.is_none() {
            return invalid("tls.client_ca", "needs tls.cert and tls.key".into());
        }
        for (key, path) in [
            ("tls.cert", &self.cert),
            ("tls.key", &self.key),
            ("tls.client_ca", &self.client_ca),
        ] {
            if let Some(path) = path {
                match std::fs::read_to_string(path) {
                    Ok(pem) if pem.contains("-----BEGIN ") => {}
                    Ok(_) => return invalid(key, format!("{} is not a PEM file", path.display())),
                    Err(e) => return invalid(key, format!("cannot read {}: {e}", path.display())),
                }
            }
        }
        Ok(())
    }
}

/// One memcached server: `host:port` with an optional `:weight` (default 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerSpec {
    /// `host:port`.
    pub addr: String,
    /// Relative share of keys.
    pub weight: u32,
}

impl FromStr for ServerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("`{s}` is not host:port or host:port:weight");
        let parts: Vec<&str> = s.rsplitn(3, ':').collect();
        let (host, port, weight) = match parts.as_slice() {
            [port, host] => (*host, *port, 1),
            [w, port, host] => {
                let weight: u32 = w.parse().map_err(|_| bad())?;
                if weight == 0 {
                    return Err(format!("`{s}`: weight must be at least 1"));
                }
                (*host, *port, weight)
            }
            _ => return Err(bad()),
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 || host.contains(['/', ' ', ',']) {
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
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A list of strings from a TOML list, or from one comma-separated string (environment).
fn strings_from_list_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        One(String),
    }
    Ok(match ListOrString::deserialize(d)? {
        ListOrString::List(items) => items,
        ListOrString::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn servers_from_list_or_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<ServerSpec>, D::Error> {
    strings_from_list_or_string(d)?
        .iter()
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

impl Config {
    /// Loads defaults, then the TOML file (if any), then `MINTCACHE_*` variables, and
    /// validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment(file))
    }

    /// The layered sources, for callers that add their own on top.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            fig = fig.merge(Toml::file_exact(path));
        }
        fig.merge(
            Env::prefixed(ENV_PREFIX)
                // Only `SECTION__KEY` variables are settings. Others, such as the
                // `MINTCACHE_SERVICE_HOST` / `MINTCACHE_PORT` that Kubernetes service links
                // inject for a Service named `mintcache`, and `MINTCACHE_CONFIG`, are not.
                .filter(|key| key.as_str().contains("__"))
                .split("__")
                .map(|k| k.as_str().to_ascii_lowercase().into()),
        )
    }

    /// Extracts and validates a configuration from any figment.
    pub fn from_figment(fig: Figment) -> Result<Self, ConfigError> {
        let config: Config = fig.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
        if let Err(e) = validate_label(self.cache.default_version.as_bytes(), false) {
            return invalid("cache.default_version", e.to_string());
        }
        if let Err(e) = validate_label(self.cache.namespace.as_bytes(), true) {
            return invalid("cache.namespace", e.to_string());
        }
        let ttl_range = 1..=MAX_TTL_SECONDS;
        if !ttl_range.contains(&self.cache.default_ttl_seconds) {
            return invalid(
                "cache.default_ttl_seconds",
                format!("must be in {ttl_range:?}"),
            );
        }
        if self.cache.grace_seconds > MAX_GRACE_SECONDS {
            return invalid(
                "cache.grace_seconds",
                format!("must be at most {MAX_GRACE_SECONDS}"),
            );
        }
        if !(1..=3600).contains(&self.cache.fill_timeout_seconds) {
            return invalid("cache.fill_timeout_seconds", "must be in 1..=3600".into());
        }
        if self.cache.refresh_timeout_seconds > 3600 {
            return invalid(
                "cache.refresh_timeout_seconds",
                "must be in 0..=3600 (0: never reopen a refresh election)".into(),
            );
        }
        if self.cache.flush_sync_ms > 60_000 {
            return invalid("cache.flush_sync_ms", "must be in 0..=60000".into());
        }
        if self.limits.max_key_bytes == 0 || self.limits.max_key_bytes > 1 << 20 {
            return invalid("limits.max_key_bytes", "must be in 1..=1048576".into());
        }
        if self.limits.max_value_bytes == 0 || self.limits.max_value_bytes > 1 << 30 {
            return invalid("limits.max_value_bytes", "must be in 1..=1073741824".into());
        }
        if self.memcached.pool_size == 0 {
            return invalid("memcached.pool_size", "must be at least 1".into());
        }
        if self.memcached.timeout_ms == 0 {
            return invalid("memcached.timeout_ms", "must be at least 1".into());
        }
        if self.memcached.connect_timeout_ms == 0 {
            return invalid("memcached.connect_timeout_ms", "must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self
            .memcached
            .servers
            .iter()
            .find(|s| !seen.insert(&s.addr))
        {
            return invalid(
                "memcached.servers",
                format!("`{}` is listed twice", dup.addr),
            );
        }
        if self.embedded.max_bytes < 1024 * 1024 {
            return invalid("embedded.max_bytes", "must be at least 1048576".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return invalid("log.level", e.to_string());
        }
        if let Err(e) = TokenDigests::from_hex(&self.auth.admin_token_sha256) {
            return invalid("auth.admin_token_sha256", e.to_string());
        }
        if let Err(e) = TokenDigests::from_hex(&self.auth.client_token_sha256) {
            return invalid("auth.client_token_sha256", e.to_string());
        }
        if !self.auth.admin_subjects.is_empty() && self.tls.client_ca.is_none() {
            return invalid(
                "auth.admin_subjects",
                "needs tls.client_ca (admin rights by client certificate need mutual TLS)".into(),
            );
        }
        self.tls.validate()?;
        if self.server.max_concurrent_calls == 0 {
            return invalid("server.max_concurrent_calls", "must be at least 1".into());
        }
        let needed = self.limits.max_value_bytes + self.limits.max_key_bytes + 1024;
        if self.server.max_message_bytes < needed {
            return invalid(
                "server.max_message_bytes",
                format!(
                    "must be at least {needed} (limits.max_value_bytes + limits.max_key_bytes + 1024)"
                ),
            );
        }
        if self.memcached.retry_timeout_ms == 0 {
            return invalid("memcached.retry_timeout_ms", "must be at least 1".into());
        }
        if self.admin.listen == self.server.listen {
            return invalid("admin.listen", "must differ from server.listen".into());
        }
        if !(0.0..=1.0).contains(&self.telemetry.sample_ratio) {
            return invalid("telemetry.sample_ratio", "must be in 0.0..=1.0".into());
        }
        if self.telemetry.export_interval_seconds == 0 {
            return invalid(
                "telemetry.export_interval_seconds",
                "must be at least 1".into(),
            );
        }
        let endpoint = &self.telemetry.otlp_endpoint;
        let is_url = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !endpoint.is_empty() && !is_url {
            return invalid(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL".into(),
            );
        }
        if self.telemetry.service_name.is_empty() {
            return invalid("telemetry.service_name", "must not be empty".into());
        }
        Ok(())
    }

    /// The authorization rules of this configuration (validated).
    pub fn auth_policy(&self) -> AuthPolicy {
        AuthPolicy {
            admins: TokenDigests::from_hex(&self.auth.admin_token_sha256).unwrap_or_default(),
            clients: TokenDigests::from_hex(&self.auth.client_token_sha256).unwrap_or_default(),
            require_token: self.auth.require_token,
            admin_subjects: self.auth.admin_subjects.clone(),
        }
    }

    /// The key space used when a call names none.
    pub fn default_key_space(&self) -> KeySpace {
        KeySpace::new(&self.cache.namespace, &self.cache.default_version)
            .unwrap_or_else(|e| unreachable!("validated config: {e}"))
    }

    /// The effective configuration as TOML (what `--check-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    /// A config file, environment variables, and the key the error must name.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn load_in_jail(toml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let mut out = Err(String::new());
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            out = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string());
            Ok(())
        });
        out
    }

    #[test]
    fn defaults_are_valid() {
        let c = load_in_jail("", &[]).expect("defaults load");
        assert_eq!(c, Config::default());
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:50051");
        assert!(c.memcached.servers.is_empty());
    }

    #[test]
    fn file_then_env() {
        let c = load_in_jail(
            "[cache]\ndefault_version = \"v7\"\ngrace_seconds = 10\n[memcached]\nservers = [\"10.0.0.1:11211\", \"10.0.0.2:11211:3\"]\n",
            &[("MINTCACHE_CACHE__GRACE_SECONDS", "12"), ("MINTCACHE_LIMITS__MAX_KEY_BYTES", "100")],
        )
        .expect("loads");
        assert_eq!(c.cache.default_version, "v7");
        assert_eq!(c.cache.grace_seconds, 12);
        assert_eq!(c.limits.max_key_bytes, 100);
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
        let c = load_in_jail(
            "",
            &[
                ("MINTCACHE_SERVICE_HOST", "10.96.0.12"),
                ("MINTCACHE_PORT", "tcp://10.96.0.12:50051"),
                ("MINTCACHE_PORT_50051_TCP_ADDR", "10.96.0.12"),
            ],
        )
        .expect("service-link variables are not settings");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn servers_from_a_comma_separated_env_var() {
        let c = load_in_jail(
            "",
            &[(
                "MINTCACHE_MEMCACHED__SERVERS",
                "10.0.0.1:11211,10.0.0.2:11211:2",
            )],
        )
        .expect("loads");
        assert_eq!(c.memcached.servers.len(), 2);
        assert_eq!(c.memcached.servers[1].weight, 2);
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
        ];
        for (toml, env, key) in cases {
            let err = load_in_jail(toml, env).expect_err(toml);
            assert!(
                err.contains(key),
                "error for {toml:?} {env:?} should name {key}: {err}"
            );
        }
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
        for bad in [
            "",
            "host",
            "host:",
            ":11211",
            "host:0",
            "host:99999",
            "host:1:x",
            "host:1:0",
            "a b:1",
        ] {
            assert!(
                bad.parse::<ServerSpec>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let mut c = Config::default();
        c.memcached.servers = vec!["h:1:2".parse().expect("valid")];
        let text = c.to_toml();
        let back: Config = toml::from_str(&text).expect("parses");
        assert_eq!(back, c);
    }
}
