//! Per-call gRPC metadata: which key space a call works in.
//!
//! Parsing is a pure function over the raw header bytes, run once per call by the call
//! metadata layer (`layers::call_meta`).

use std::sync::Arc;

use super::key::{KeySpace, LabelError, validate_label};

/// Metadata key choosing the application version.
pub(crate) const VERSION_HEADER: &str = "x-cache-version";
/// Metadata key choosing the namespace.
pub(crate) const NAMESPACE_HEADER: &str = "x-cache-namespace";
/// Response metadata key set when a read failed open.
pub(crate) const DEGRADED_HEADER: &str = "x-cache-degraded";
/// Metadata key asking reads to skip the hot-key cache (`strong`).
pub(crate) const CONSISTENCY_HEADER: &str = "x-cache-consistency";

/// How fresh a call's reads must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Consistency {
    /// Reads may be answered from the hot-key cache, within its staleness bound.
    #[default]
    Default,
    /// Reads always ask memcached.
    Strong,
}

/// The consistency a call asks for (`default` or `strong`; absent: default).
pub(crate) fn consistency(values: &[&[u8]]) -> Result<Consistency, MetaError> {
    match single(CONSISTENCY_HEADER, values)? {
        None | Some(b"default") => Ok(Consistency::Default),
        Some(b"strong") => Ok(Consistency::Strong),
        Some(_) => Err(MetaError::Unknown {
            header: CONSISTENCY_HEADER,
            expected: "`strong` or `default`",
        }),
    }
}

/// Why the call metadata is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MetaError {
    /// A header is present but its value is not acceptable.
    #[error("metadata `{header}`: {reason}")]
    Invalid {
        /// The header name.
        header: &'static str,
        /// What is wrong with it.
        reason: LabelError,
    },
    /// A header is present more than once: which key space was meant is unknown.
    #[error("metadata `{header}` must appear at most once")]
    Repeated {
        /// The header name.
        header: &'static str,
    },
    /// A header has a value it does not take.
    #[error("metadata `{header}` must be {expected}")]
    Unknown {
        /// The header name.
        header: &'static str,
        /// The values it takes.
        expected: &'static str,
    },
}

/// The one value of a header that may appear at most once.
fn single<'a>(header: &'static str, values: &[&'a [u8]]) -> Result<Option<&'a [u8]>, MetaError> {
    match values {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(MetaError::Repeated { header }),
    }
}

/// Resolves the key space of a call from the values of its headers (each may appear at most
/// once) and the configured defaults. A header that is present always wins, and must be valid:
/// an empty `x-cache-namespace` selects the empty namespace, an empty `x-cache-version` is an
/// error.
pub(crate) fn key_space(
    versions: &[&[u8]],
    namespaces: &[&[u8]],
    defaults: &KeySpace,
) -> Result<KeySpace, MetaError> {
    let check = |header: &'static str, value: &[u8], allow_empty: bool| {
        validate_label(value, allow_empty).map_err(|reason| MetaError::Invalid { header, reason })
    };
    let version = single(VERSION_HEADER, versions)?;
    if let Some(v) = version {
        check(VERSION_HEADER, v, false)?;
    }
    let namespace = single(NAMESPACE_HEADER, namespaces)?;
    if let Some(ns) = namespace {
        check(NAMESPACE_HEADER, ns, true)?;
    }
    if version.is_none() && namespace.is_none() {
        return Ok(defaults.clone());
    }
    // Both labels were validated above (or come from the validated defaults): they are ASCII,
    // so the conversion is exact.
    let text = |b: &[u8]| Arc::from(String::from_utf8_lossy(b).as_ref());
    Ok(KeySpace::from_validated(
        namespace.map_or_else(|| defaults.namespace_shared(), text),
        version.map_or_else(|| defaults.version_shared(), text),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn defaults() -> KeySpace {
        KeySpace::new("shop", "7").expect("valid")
    }

    /// The values of a header that appears once, or not at all.
    fn one(value: Option<&[u8]>) -> Vec<&[u8]> {
        value.into_iter().collect()
    }

    fn key_space(
        version: Option<&[u8]>,
        namespace: Option<&[u8]>,
        defaults: &KeySpace,
    ) -> Result<KeySpace, MetaError> {
        super::key_space(&one(version), &one(namespace), defaults)
    }

    #[test]
    fn repeated_headers_are_refused() {
        let d = defaults();
        for (versions, namespaces, header) in [
            (&[&b"1"[..], b"2"][..], &[][..], VERSION_HEADER),
            (&[b"1", b"1"], &[], VERSION_HEADER),
            (&[], &[&b"a"[..], b"b"][..], NAMESPACE_HEADER),
            (&[b"1"], &[b"", b""], NAMESPACE_HEADER),
        ] {
            assert_eq!(
                super::key_space(versions, namespaces, &d),
                Err(MetaError::Repeated { header }),
                "{versions:?} {namespaces:?}"
            );
        }
    }

    #[test]
    fn table() {
        let d = defaults();
        let ok = |ns: &str, v: &str| Ok(KeySpace::new(ns, v).expect("valid"));
        assert_eq!(key_space(None, None, &d), ok("shop", "7"));
        assert_eq!(key_space(Some(b"8"), None, &d), ok("shop", "8"));
        assert_eq!(key_space(None, Some(b"blog"), &d), ok("blog", "7"));
        assert_eq!(key_space(None, Some(b""), &d), ok("", "7"));
        assert_eq!(
            key_space(Some(b"v2.1-rc_3"), Some(b"a"), &d),
            ok("a", "v2.1-rc_3")
        );
        assert!(matches!(
            key_space(Some(b""), None, &d),
            Err(MetaError::Invalid {
                header: VERSION_HEADER,
                reason: LabelError::Empty
            })
        ));
        assert!(matches!(
            key_space(Some(b"1:2"), None, &d),
            Err(MetaError::Invalid {
                header: VERSION_HEADER,
                ..
            })
        ));
        assert!(matches!(
            key_space(None, Some(b"a b"), &d),
            Err(MetaError::Invalid {
                header: NAMESPACE_HEADER,
                ..
            })
        ));
        assert!(matches!(
            key_space(Some(&[b'x'; 65]), None, &d),
            Err(MetaError::Invalid {
                header: VERSION_HEADER,
                reason: LabelError::TooLong(65)
            })
        ));
    }

    proptest! {
        /// Any header bytes either yield a key space using exactly those bytes, or an error;
        /// never a panic, never a silently altered label.
        #[test]
        fn arbitrary_headers(v in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
                             ns in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80))) {
            let d = defaults();
            match key_space(v.as_deref(), ns.as_deref(), &d) {
                Ok(space) => {
                    prop_assert_eq!(space.version().as_bytes(), v.as_deref().unwrap_or(b"7"));
                    prop_assert_eq!(space.namespace().as_bytes(), ns.as_deref().unwrap_or(b"shop"));
                }
                Err(MetaError::Repeated { .. } | MetaError::Unknown { .. }) => prop_assert!(false, "one value each"),
                Err(MetaError::Invalid { header, .. }) => {
                    let bad_v = v.as_deref().is_some_and(|v| validate_label(v, false).is_err());
                    let bad_ns = ns.as_deref().is_some_and(|n| validate_label(n, true).is_err());
                    let expected = if header == VERSION_HEADER { bad_v } else { bad_ns && !bad_v };
                    prop_assert!(expected, "error names the wrong header: {}", header);
                }
            }
        }
    }

    #[test]
    fn consistency_is_default_unless_strong_is_asked_for() {
        assert_eq!(consistency(&[]), Ok(Consistency::Default));
        assert_eq!(consistency(&[b"default"]), Ok(Consistency::Default));
        assert_eq!(consistency(&[b"strong"]), Ok(Consistency::Strong));
        assert!(matches!(
            consistency(&[b"STRONG"]),
            Err(MetaError::Unknown { .. })
        ));
        assert!(matches!(
            consistency(&[b"strong", b"strong"]),
            Err(MetaError::Repeated { .. })
        ));
    }
}
