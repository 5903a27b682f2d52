//! The environment as a configuration source: `MINTCACHE_SECTION__KEY` variables, their values
//! kept as the strings they are.

use figment::providers::Env;
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::ENV_PREFIX;

/// `MINTCACHE_SECTION__KEY` variables, each value kept as the string it is. (figment's own
/// `Env` guesses types from the text, which turns a version `007` into the number 7.)
pub(super) struct RawEnv(Env);

impl RawEnv {
    pub(super) fn new() -> Self {
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
#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::tests::config_in_jail;

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
}
