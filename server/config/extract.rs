//! Reading a configuration out of its sources: section by section, so that a bad value in one
//! does not hide the others, each problem named by its dotted key and where its value came from.

use std::collections::{BTreeMap, BTreeSet};

use figment::providers::Serialized;
use figment::value::{Dict, Value};
use figment::{Figment, Metadata};
use serde::de::DeserializeOwned;

use super::errors::Problems;
use super::{Config, SECTIONS};

impl Config {
    /// Reads each section on its own, so that a bad value in one does not hide the others.
    /// Sections that cannot be read are left at their defaults and named in the returned set.
    pub(super) fn extract(
        fig: &Figment,
        problems: &mut Problems,
    ) -> (Self, BTreeSet<&'static str>) {
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

pub(super) fn render_source(m: &Metadata) -> String {
    match &m.source {
        Some(src) => format!(" (in {} {src})", m.name),
        None => format!(" (in {})", m.name),
    }
}
