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
//!
//! A file per job, as pelikan's config crate has one per section: this one loads (the layered
//! sources, [`Config::validate`], the rules between sections); `errors` says what a
//! configuration is refused for; `env` reads the environment, `extract` reads each section out
//! of the sources, `serde` reads values from their text; `server`, `memcached`, `cache`, `auth`
//! and `telemetry` each hold a section or two (struct, defaults, checks); `settings` holds the
//! checked [`Settings`] and its parts.

mod auth;
mod cache;
mod env;
mod errors;
mod extract;
mod memcached;
mod serde;
mod server;
mod settings;
mod telemetry;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Format, Serialized, Toml};
use figment::{Figment, Provider};
// `::serde`, the crate: `serde` alone is also this module's child.
use ::serde::{Deserialize, Serialize};

pub use self::auth::{AuthConfig, TlsConfig};
pub use self::cache::{
    CacheConfig, DEFAULT_MAX_VALUE_BYTES, HotCacheConfig, LimitsConfig, MAX_BETA,
};
pub use self::errors::{ConfigError, ConfigErrors};
pub use self::memcached::{EjectedKeys, EmbeddedConfig, MemcachedConfig};
pub use self::serde::{ListenAddr, ServerSpec};
pub use self::server::{AdminConfig, ServerConfig};
pub use self::settings::Settings;
pub(crate) use self::settings::{
    Backend, CacheSettings, ServerSettings, TelemetrySettings, TlsSettings,
};
pub use self::telemetry::{LogConfig, LogFormat, TelemetryConfig};

use self::env::RawEnv;
use self::errors::Problems;
use self::extract::render_source;
use crate::core::auth::AuthPolicy;

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
