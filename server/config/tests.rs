//! Loading a whole configuration: defaults, a file and the environment together, every problem
//! reported and named by its key, the rules between sections. Each section's own tests are in
//! its file; they load through [`load_in_jail`] too.

use std::path::Path;

use figment::Jail;

use super::*;
use crate::core::key::KeySpace;

/// Loads `toml` as the config file, with `env` set, in a jail (its own directory and
/// environment).
#[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
pub(super) fn load_in_jail(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
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

/// As [`load_in_jail`], the configuration of settings that must load.
pub(super) fn config_in_jail(toml: &str, env: &[(&str, &str)]) -> Config {
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

/// A config file, environment variables, and the key the error must name.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// Configurations that must be refused, each with the key its error names.
const ERROR_CASES: &[Case] = &[
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

#[test]
fn errors_name_the_key() {
    // Every case runs; the failures are reported together, by case.
    let failures: Vec<String> = ERROR_CASES
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
fn effective_config_round_trips_through_toml() {
    let mut c = Config::default();
    c.memcached.servers = vec!["h:1:2".parse().expect("valid")];
    c.cache.default_version = "007".into();
    let text = c.validate().expect("valid").to_toml();
    let back: Config = toml::from_str(&text).expect("parses");
    assert_eq!(back, c);
}
