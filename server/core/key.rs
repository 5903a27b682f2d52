//! Key derivation: `(namespace, version, user key)` → the key memcached stores.
//!
//! The stored key is `<namespace>:<version>:<key>` when that fits memcached (at most 250 bytes),
//! and `<namespace>:<version>#<sha256(key) in unpadded base64url>` when it does not. Once a key
//! space has been flushed, its keys carry the key space's generation after the version:
//! `<namespace>:<version>~<generation>:<key>` (or `…~<generation>#<hash>`); generation 0, the
//! generation of a key space never flushed, is written as nothing, so keys stored before
//! flushing existed keep their names. Namespaces and versions only contain `[A-Za-z0-9._-]`, so
//! the first `:` ends the namespace and the next `:`, `#` or `~` ends the version: the stored key
//! can be parsed back (`parse_stored_key`, in the tests), which makes the encoding injective (up
//! to SHA-256 collisions for hashed keys).
//!
//! The generation itself is stored under `<namespace>:<version>@generation`, a name no user key
//! can take (`@` never follows a version in a user key's name).
//!
//! How the stored key travels on the wire is a separate choice: keys made only of printable
//! ASCII other than space go as they are; any other key (spaces, `\r\n`, NUL, non-UTF-8) goes
//! base64-encoded with the meta protocol's `b` flag, so that no key byte can ever reach
//! memcached as protocol syntax. Both forms name the same memcached item.

use base64::Engine as _;
#[cfg(test)]
use base64::engine::general_purpose::STANDARD;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// memcached's longest key, in bytes.
pub(crate) const MEMCACHED_MAX_KEY: usize = 250;
/// Longest stored key sent base64-encoded: the base64 of 186 bytes is 248 characters, and the
/// encoded form must itself fit in 250.
pub(crate) const MAX_BASE64_KEY: usize = 186;
/// Longest namespace or version, in bytes.
pub(crate) const MAX_LABEL_LEN: usize = 64;

/// Why a namespace or version is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LabelError {
    /// The label is empty where one is required.
    #[error("must not be empty")]
    Empty,
    /// The label is longer than [`MAX_LABEL_LEN`].
    #[error("must be at most {MAX_LABEL_LEN} bytes long, got {0}")]
    TooLong(usize),
    /// The label contains a byte outside `[A-Za-z0-9._-]`.
    #[error("may only contain A-Z, a-z, 0-9, '.', '_' and '-' (byte {0:#04x} at position {1})")]
    BadByte(u8, usize),
}

/// True for the bytes a namespace or version may contain.
fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Checks a namespace (`allow_empty`) or version (non-empty) label.
pub(crate) fn validate_label(label: &[u8], allow_empty: bool) -> Result<(), LabelError> {
    if label.is_empty() && !allow_empty {
        return Err(LabelError::Empty);
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(LabelError::TooLong(label.len()));
    }
    match label.iter().position(|&b| !is_label_byte(b)) {
        Some(pos) => Err(LabelError::BadByte(label[pos], pos)),
        None => Ok(()),
    }
}

/// The key space of a call: a namespace (may be empty) and an application version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KeySpace {
    // Shared strings: a key space is cloned into every call, and cloning it is then two
    // reference-count increments.
    namespace: Arc<str>,
    version: Arc<str>,
}

impl KeySpace {
    /// Builds a key space, validating both labels.
    pub(crate) fn new(namespace: &str, version: &str) -> Result<Self, KeySpaceError> {
        validate_label(namespace.as_bytes(), true).map_err(KeySpaceError::Namespace)?;
        validate_label(version.as_bytes(), false).map_err(KeySpaceError::Version)?;
        Ok(Self {
            namespace: namespace.into(),
            version: version.into(),
        })
    }

    /// A key space from labels the caller has already checked with [`validate_label`].
    pub(crate) fn from_validated(namespace: Arc<str>, version: Arc<str>) -> Self {
        debug_assert!(validate_label(namespace.as_bytes(), true).is_ok());
        debug_assert!(validate_label(version.as_bytes(), false).is_ok());
        Self { namespace, version }
    }

    /// The namespace, shared.
    pub(crate) fn namespace_shared(&self) -> Arc<str> {
        self.namespace.clone()
    }

    /// The version, shared.
    pub(crate) fn version_shared(&self) -> Arc<str> {
        self.version.clone()
    }

    /// The namespace (possibly empty).
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The application version.
    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    /// Derives the memcached key of `key` in this key space, at generation 0 (a key space
    /// never flushed). `key` must not be empty (callers check limits before).
    pub(crate) fn store_key(&self, key: &[u8]) -> StoreKey {
        self.store_key_at(0, key)
    }

    /// Derives the memcached key of `key` in this key space at `generation`.
    pub(crate) fn store_key_at(&self, generation: u64, key: &[u8]) -> StoreKey {
        let mut digits = itoa_buf();
        let generation: &[u8] = if generation == 0 {
            b""
        } else {
            decimal(generation, &mut digits)
        };
        let gen_len = if generation.is_empty() {
            0
        } else {
            1 + generation.len()
        };
        let prefix_len = self.namespace.len() + 1 + self.version.len() + gen_len;
        let plain_len = prefix_len + 1 + key.len();
        let mut stored = BytesMut::with_capacity(plain_len.min(prefix_len + 44));
        stored.put_slice(self.namespace.as_bytes());
        stored.put_u8(b':');
        stored.put_slice(self.version.as_bytes());
        if !generation.is_empty() {
            stored.put_u8(b'~');
            stored.put_slice(generation);
        }
        let text_safe = key.iter().all(|&b| is_text_key_byte(b));
        let wire = if plain_len <= MEMCACHED_MAX_KEY && text_safe {
            stored.put_u8(b':');
            stored.put_slice(key);
            WireForm::Text
        } else if plain_len <= MAX_BASE64_KEY {
            stored.put_u8(b':');
            stored.put_slice(key);
            WireForm::Base64
        } else {
            stored.put_u8(b'#');
            let digest = Sha256::digest(key);
            stored.put_slice(URL_SAFE_NO_PAD.encode(digest).as_bytes());
            WireForm::Text
        };
        StoreKey {
            stored: stored.freeze(),
            wire,
        }
    }
}

impl KeySpace {
    /// The key under which the key space's generation is stored.
    pub(crate) fn generation_key(&self) -> StoreKey {
        let mut stored = BytesMut::with_capacity(self.namespace.len() + self.version.len() + 12);
        stored.put_slice(self.namespace.as_bytes());
        stored.put_u8(b':');
        stored.put_slice(self.version.as_bytes());
        stored.put_slice(b"@generation");
        StoreKey {
            stored: stored.freeze(),
            wire: WireForm::Text,
        }
    }
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// The decimal digits of `n`, written into `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Why a key space is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeySpaceError {
    /// The namespace is not acceptable.
    #[error("namespace {0}")]
    Namespace(LabelError),
    /// The version is not acceptable.
    #[error("version {0}")]
    Version(LabelError),
}

/// Bytes memcached accepts in a text key: printable ASCII other than space.
fn is_text_key_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// How a stored key is written in a memcached command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WireForm {
    /// As it is (every byte is printable ASCII other than space).
    Text,
    /// base64-encoded, with the meta protocol's `b` flag.
    Base64,
}

/// The key of an item in memcached (or in the embedded store).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StoreKey {
    stored: Bytes,
    wire: WireForm,
}

impl StoreKey {
    /// The key as memcached stores it (binary; what consistent hashing uses).
    pub(crate) fn stored(&self) -> &Bytes {
        &self.stored
    }

    /// How the key goes on the wire.
    pub(crate) fn wire_form(&self) -> WireForm {
        self.wire
    }

    /// The token to write in a memcached command: always printable ASCII without spaces, at
    /// most 250 bytes. The reference the wire encoder (which writes it straight into its
    /// buffer) is tested against.
    #[cfg(test)]
    pub(crate) fn wire_token(&self) -> String {
        match self.wire {
            WireForm::Text => self
                .stored
                .iter()
                .map(|&b| char::from(b))
                .collect::<String>(),
            WireForm::Base64 => STANDARD.encode(&self.stored),
        }
    }
}

impl fmt::Display for StoreKey {
    /// Never prints the key itself (keys may carry user data): only its length and form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}-byte {:?} key>", self.stored.len(), self.wire)
    }
}

/// The parts of a stored key, recovered by [`parse_stored_key`].
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedStoredKey<'a> {
    /// The namespace.
    pub(crate) namespace: &'a [u8],
    /// The version.
    pub version: &'a [u8],
    /// The key space's generation (0: never flushed).
    pub generation: u64,
    /// The user key, or its hash.
    pub(crate) tail: KeyTail<'a>,
}

/// The end of a stored key.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyTail<'a> {
    /// The user key as it was given.
    Plain(&'a [u8]),
    /// The unpadded base64url SHA-256 of a key too long to store as it is.
    Hashed(&'a [u8]),
}

/// Parses a stored key back into its parts (the left inverse of [`KeySpace::store_key`]).
#[cfg(test)]
pub(crate) fn parse_stored_key(stored: &[u8]) -> Option<ParsedStoredKey<'_>> {
    let ns_end = stored.iter().position(|&b| b == b':')?;
    let rest = &stored[ns_end + 1..];
    let ver_end = rest.iter().position(|&b| matches!(b, b':' | b'#' | b'~'))?;
    let version = &rest[..ver_end];
    let (generation, rest) = if rest[ver_end] == b'~' {
        let digits = &rest[ver_end + 1..];
        let gen_end = digits.iter().position(|&b| b == b':' || b == b'#')?;
        let generation = std::str::from_utf8(&digits[..gen_end]).ok()?.parse().ok()?;
        (generation, &digits[gen_end..])
    } else {
        (0, &rest[ver_end..])
    };
    let tail = &rest[1..];
    Some(ParsedStoredKey {
        namespace: &stored[..ns_end],
        version,
        generation,
        tail: if rest[0] == b':' {
            KeyTail::Plain(tail)
        } else {
            KeyTail::Hashed(tail)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn space(ns: &str, v: &str) -> KeySpace {
        KeySpace::new(ns, v).expect("valid key space")
    }

    #[test]
    fn labels_are_validated() {
        let cases: &[(&str, bool, Result<(), LabelError>)] = &[
            ("v1", false, Ok(())),
            ("1.2.3-rc_1", false, Ok(())),
            ("", true, Ok(())),
            ("", false, Err(LabelError::Empty)),
            ("a:b", false, Err(LabelError::BadByte(b':', 1))),
            ("a#b", true, Err(LabelError::BadByte(b'#', 1))),
            ("a b", false, Err(LabelError::BadByte(b' ', 1))),
            ("é", false, Err(LabelError::BadByte(0xc3, 0))),
        ];
        for (label, allow_empty, want) in cases {
            assert_eq!(
                &validate_label(label.as_bytes(), *allow_empty),
                want,
                "{label:?}"
            );
        }
        assert_eq!(
            validate_label("x".repeat(65).as_bytes(), false),
            Err(LabelError::TooLong(65))
        );
        assert!(validate_label("x".repeat(64).as_bytes(), false).is_ok());
    }

    #[test]
    fn forms_are_chosen_by_content_and_length() {
        let s = space("app", "v1");
        let k = s.store_key(b"user:42");
        assert_eq!(k.stored().as_ref(), b"app:v1:user:42");
        assert_eq!(k.wire_form(), WireForm::Text);
        assert_eq!(k.wire_token(), "app:v1:user:42");

        let k = s.store_key(b"with space\r\n\0");
        assert_eq!(k.wire_form(), WireForm::Base64);
        assert_eq!(k.stored().as_ref(), b"app:v1:with space\r\n\0");

        let long = vec![b'x'; 300];
        let k = s.store_key(&long);
        assert_eq!(k.wire_form(), WireForm::Text);
        assert!(k.stored().starts_with(b"app:v1#"));
        assert_eq!(k.stored().len(), "app:v1#".len() + 43);
    }

    #[test]
    fn text_keys_up_to_250_bytes_stay_plain() {
        let s = space("", "1");
        let fits = vec![b'k'; MEMCACHED_MAX_KEY - 3];
        assert_eq!(s.store_key(&fits).stored().len(), MEMCACHED_MAX_KEY);
        assert!(matches!(
            parse_stored_key(s.store_key(&fits).stored()).map(|p| p.tail),
            Some(KeyTail::Plain(_))
        ));
        let over = vec![b'k'; MEMCACHED_MAX_KEY - 2];
        assert!(matches!(
            parse_stored_key(s.store_key(&over).stored()).map(|p| p.tail),
            Some(KeyTail::Hashed(_))
        ));
    }

    #[test]
    fn generations_rename_keys_and_zero_is_the_old_name() {
        let s = space("app", "v1");
        assert_eq!(s.store_key_at(0, b"k"), s.store_key(b"k"));
        assert_eq!(
            s.store_key_at(1_700_000_000_123, b"k").stored().as_ref(),
            b"app:v1~1700000000123:k"
        );
        let long = vec![b'x'; 300];
        assert!(s.store_key_at(7, &long).stored().starts_with(b"app:v1~7#"));
        assert_eq!(s.generation_key().stored().as_ref(), b"app:v1@generation");
        assert_eq!(parse_stored_key(s.generation_key().stored()), None);
    }

    #[test]
    fn display_hides_the_key() {
        let k = space("ns", "v").store_key(b"secret-user-id");
        assert!(!k.to_string().contains("secret"));
    }

    fn label(allow_empty: bool) -> impl Strategy<Value = String> {
        let min = usize::from(!allow_empty);
        proptest::collection::vec(
            prop_oneof![
                proptest::char::range('a', 'z'),
                proptest::char::range('A', 'Z'),
                proptest::char::range('0', '9'),
                Just('.'),
                Just('_'),
                Just('-'),
            ],
            min..=MAX_LABEL_LEN,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn user_key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 1..64),
            proptest::collection::vec(any::<u8>(), 150..400),
            proptest::collection::vec(0x21u8..0x7f, 1..300),
            proptest::collection::vec(
                prop_oneof![
                    Just(b' '),
                    Just(b'\r'),
                    Just(b'\n'),
                    Just(0u8),
                    Just(b':'),
                    Just(b'#')
                ],
                1..40
            ),
        ]
    }

    fn wire_is_memcached_safe(k: &StoreKey) -> bool {
        let token = k.wire_token();
        !token.is_empty()
            && token.len() <= MEMCACHED_MAX_KEY
            && token.bytes().all(is_text_key_byte)
            && k.stored().len() <= MEMCACHED_MAX_KEY
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The stored key parses back to exactly the triple it came from.
        #[test]
        fn encoding_has_a_left_inverse(ns in label(true), v in label(false), key in user_key()) {
            let k = space(&ns, &v).store_key(&key);
            let parsed = parse_stored_key(k.stored()).expect("parses");
            prop_assert_eq!(parsed.namespace, ns.as_bytes());
            prop_assert_eq!(parsed.version, v.as_bytes());
            match parsed.tail {
                KeyTail::Plain(tail) => prop_assert_eq!(tail, &key[..]),
                KeyTail::Hashed(tail) => {
                    let hash = URL_SAFE_NO_PAD.encode(Sha256::digest(&key));
                    prop_assert_eq!(tail, hash.as_bytes());
                }
            }
        }

        /// With a generation too, the stored key parses back to exactly what it came from.
        #[test]
        fn generations_have_a_left_inverse(ns in label(true), v in label(false), generation: u64, key in user_key()) {
            let k = space(&ns, &v).store_key_at(generation, &key);
            prop_assert!(wire_is_memcached_safe(&k), "unsafe wire token for {:?}", k);
            let parsed = parse_stored_key(k.stored()).expect("parses");
            prop_assert_eq!(parsed.namespace, ns.as_bytes());
            prop_assert_eq!(parsed.version, v.as_bytes());
            prop_assert_eq!(parsed.generation, generation);
            if let KeyTail::Plain(tail) = parsed.tail {
                prop_assert_eq!(tail, &key[..]);
            }
            // No user key, at any generation, is named like a generation key.
            let generation_key = space(&ns, &v).generation_key();
            prop_assert_ne!(k.stored(), generation_key.stored());
        }

        /// Two different triples never share a stored key.
        #[test]
        fn encoding_is_injective(
            a in (label(true), label(false), user_key()),
            b in (label(true), label(false), user_key()),
        ) {
            let ka = space(&a.0, &a.1).store_key(&a.2);
            let kb = space(&b.0, &b.1).store_key(&b.2);
            prop_assert_eq!(a == b, ka.stored() == kb.stored());
        }

        /// Moving bytes between the version and the key (the ambiguity of plain concatenation,
        /// `"1" + "1key"` against `"11" + "key"`) always changes the stored key.
        #[test]
        fn moving_bytes_between_version_and_key_changes_the_key(
            v in label(false),
            first in proptest::sample::select(b"abcXYZ019._-".to_vec()),
            rest in user_key(),
        ) {
            let mut key = vec![first];
            key.extend_from_slice(&rest);
            prop_assume!(v.len() < MAX_LABEL_LEN);
            let joined = space("", &v).store_key(&key);
            let moved = space("", &format!("{v}{}", char::from(first))).store_key(&rest);
            prop_assert_ne!(joined.stored(), moved.stored());
        }

        /// Whatever the key, what reaches memcached is a single safe token.
        #[test]
        fn wire_token_is_always_memcached_safe(ns in label(true), v in label(false), key in user_key()) {
            let k = space(&ns, &v).store_key(&key);
            prop_assert!(wire_is_memcached_safe(&k), "unsafe wire token for {:?}", k);
            if k.wire_form() == WireForm::Base64 {
                let decoded = STANDARD.decode(k.wire_token()).expect("valid base64");
                prop_assert_eq!(&decoded[..], &k.stored()[..]);
            }
        }
    }
}
