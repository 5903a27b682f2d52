//! `[log]` and `[telemetry]` (OpenTelemetry export): their settings, defaults and checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::errors::Problems;
use super::settings::{LogSettings, TelemetrySettings};

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

/// The level names `tracing` knows.
const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

impl LogConfig {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<LogSettings> {
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

impl TelemetryConfig {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<TelemetrySettings> {
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
    use crate::config::tests::{config_in_jail, load_in_jail};

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
}
