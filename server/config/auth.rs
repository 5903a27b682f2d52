//! `[auth]` (tokens and admin rights) and `[tls]` (the gRPC port's certificates, mutual TLS):
//! their settings, defaults and checks; token digests parsed and PEM files read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::errors::Problems;
use super::serde::strings_from_list_or_string;
use super::settings::TlsSettings;
use crate::core::auth::{AuthPolicy, TokenDigests};

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

impl AuthConfig {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<AuthPolicy> {
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
    pub(super) fn validate(&self, p: &mut Problems) -> Option<Option<TlsSettings>> {
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
#[cfg(test)]
mod tests {
    use crate::config::tests::load_in_jail;

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
}
