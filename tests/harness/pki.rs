//! A throwaway PKI for TLS tests: a CA, server certificates for localhost, client
//! certificates, written to a temporary directory.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use mintcache::config::Config;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use super::{Memcached, config};

/// A throwaway PKI: a CA, a server certificate for localhost, and client certificates.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, in PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "mintcache test CA");
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            ca,
        }
    }

    pub fn issue(&self, names: &[&str], common_name: &str) -> Pem {
        let mut params =
            CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("signed");
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write pem");
        path
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// Server TLS settings; `mtls`: client certificates required (or optional).
    pub fn server_config(&self, mc: &Memcached, mtls: Option<bool>) -> Config {
        let server = self.issue(&["localhost", "127.0.0.1"], "mintcache server");
        let mut cfg = config(&[mc]);
        cfg.tls.cert = Some(self.write("server.pem", &server.cert));
        cfg.tls.key = Some(self.write("server.key", &server.key));
        if let Some(required) = mtls {
            cfg.tls.client_ca = Some(self.write("ca.pem", &self.ca_pem()));
            cfg.tls.client_cert_optional = !required;
            cfg.auth.admin_subjects = vec!["CN=ops-admin".to_owned()];
        }
        cfg
    }
}
