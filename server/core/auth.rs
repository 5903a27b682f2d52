//! Who a caller is, and what per-call debug mode it may use.
//!
//! Pure functions over raw header bytes, run once per call by [`crate::layers::auth`]:
//! - `authorization: Bearer <token>`: the token's SHA-256 is compared, in constant time, with
//!   every configured admin and client digest (tokens themselves are never stored or logged);
//! - a TLS client certificate whose subject is in the admin list also makes a caller admin;
//! - `x-cache-debug: off | write-only` (also the original's `turn_off`, `write_only`, any case)
//!   is accepted from admin callers only.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Metadata key carrying the bearer token.
pub(crate) const AUTHORIZATION_HEADER: &str = "authorization";
/// Metadata key choosing a debug mode.
pub(crate) const DEBUG_HEADER: &str = "x-cache-debug";
/// Response metadata key naming the debug mode that was applied.
pub(crate) const DEBUG_APPLIED_HEADER: &str = "x-cache-debug-applied";
/// Longest accepted `authorization` value.
pub(crate) const MAX_AUTHORIZATION_LEN: usize = 4096;

/// A per-call debug mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DebugMode {
    /// Reads miss without touching the store; writes are accepted and not performed;
    /// `Increment` fails.
    Off,
    /// Reads miss without touching the store; writes go through.
    WriteOnly,
}

impl DebugMode {
    /// Parses a header value: `off`, `turn_off`, `write-only` or `write_only`, in any case.
    pub(crate) fn parse(value: &[u8]) -> Result<Self, AuthError> {
        const SPELLINGS: [(&str, DebugMode); 4] = [
            ("off", DebugMode::Off),
            ("turn_off", DebugMode::Off),
            ("write-only", DebugMode::WriteOnly),
            ("write_only", DebugMode::WriteOnly),
        ];
        SPELLINGS
            .iter()
            .find(|(name, _)| value.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, mode)| *mode)
            .ok_or(AuthError::BadDebugValue)
    }

    /// The canonical name (`off`, `write-only`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::WriteOnly => "write-only",
        }
    }
}

/// What a debug mode does to one kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Run it normally.
    Perform,
    /// A read: answer "nothing cached" without touching the store.
    Miss,
    /// A write: accept it, do not perform it (report that nothing was stored/removed).
    Skip,
    /// Refuse it (`Increment` with the cache off).
    Refuse,
}

/// Kinds of cache operations, as debug modes see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// `Get`, `GetMany`.
    Read,
    /// `Set`, `Add`, `Touch`, `Delete`, `Invalidate` and their batched forms.
    Write,
    /// `Increment` (a write that answers with a value).
    Counter,
}

/// The effect of a (possibly absent) debug mode on an operation.
pub(crate) fn effect(mode: Option<DebugMode>, op: OpKind) -> Effect {
    match (mode, op) {
        (None, _) => Effect::Perform,
        (Some(_), OpKind::Read) => Effect::Miss,
        (Some(DebugMode::Off), OpKind::Write) => Effect::Skip,
        (Some(DebugMode::Off), OpKind::Counter) => Effect::Refuse,
        (Some(DebugMode::WriteOnly), OpKind::Write | OpKind::Counter) => Effect::Perform,
    }
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// `authorization` is longer than [`MAX_AUTHORIZATION_LEN`].
    #[error("authorization header is too long")]
    AuthorizationTooLong,
    /// `authorization` is not `Bearer <token>` (or appears twice).
    #[error("authorization must be `Bearer <token>`")]
    MalformedAuthorization,
    /// The token is not a configured admin or client token.
    #[error("unknown token")]
    UnknownToken,
    /// The server requires a token and the call has none.
    #[error("this server requires a token (authorization: Bearer <token>)")]
    MissingToken,
    /// `x-cache-debug` from a caller that is not an admin.
    #[error("x-cache-debug is reserved for admin callers")]
    DebugNotAllowed,
    /// `x-cache-debug` with an unknown value (or appearing twice).
    #[error("x-cache-debug must be `off` or `write-only`")]
    BadDebugValue,
}

/// Extracts the token of an `authorization` header (`None` if the call has none).
pub(crate) fn bearer_token(value: Option<&[u8]>) -> Result<Option<&[u8]>, AuthError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(AuthError::AuthorizationTooLong);
    }
    const SCHEME: &[u8] = b"bearer ";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return Err(AuthError::MalformedAuthorization);
    }
    let token = &value[SCHEME.len()..];
    if token.iter().all(|b| (0x21..=0x7e).contains(b)) {
        Ok(Some(token))
    } else {
        Err(AuthError::MalformedAuthorization)
    }
}

/// A set of SHA-256 token digests.
#[derive(Clone, Default)]
pub(crate) struct TokenDigests(Vec<[u8; 32]>);

impl std::fmt::Debug for TokenDigests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenDigests({} entries)", self.0.len())
    }
}

/// A configured digest is not a SHA-256 digest in hex. The message describes the entry without
/// quoting it: a token pasted where its digest belongs must not end up in a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "entry {number}: expected a SHA-256 digest, 64 hex digits (`echo -n TOKEN | sha256sum` prints \
     one); found {found}"
)]
pub(crate) struct DigestError {
    /// Position of the bad entry, from 1.
    pub(crate) number: usize,
    /// What the entry is instead.
    pub(crate) found: DigestFound,
}

/// What a configured digest that is not 64 hex digits is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DigestFound {
    /// The wrong number of characters.
    #[error("{0} characters")]
    Length(usize),
    /// 64 characters, one of which is not a hex digit.
    #[error("a character that is not a hex digit at position {0}")]
    NotHex(usize),
}

/// A digest as `sha256sum` prints it for standard input, `<hex>  -`, is the digest: the file
/// name column (`-` or `*-`) and surrounding whitespace are not part of it.
fn digest_text(entry: &str) -> &str {
    let entry = entry.trim();
    let without_name = entry
        .strip_suffix("*-")
        .or_else(|| entry.strip_suffix('-'))
        .filter(|rest| rest.ends_with(char::is_whitespace));
    without_name.map_or(entry, str::trim_end)
}

/// Parses one digest in hex (either case).
fn parse_digest(entry: &str, number: usize) -> Result<[u8; 32], DigestError> {
    let text = digest_text(entry);
    let error = |found| DigestError { number, found };
    if text.chars().count() != 64 {
        return Err(error(DigestFound::Length(text.chars().count())));
    }
    if let Some(pos) = text.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(error(DigestFound::NotHex(pos + 1)));
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest).map_err(|_| error(DigestFound::NotHex(1)))?;
    Ok(digest)
}

impl TokenDigests {
    /// Parses hex digests (either case; `sha256sum`'s `  -` suffix is allowed).
    pub(crate) fn from_hex<S: AsRef<str>>(entries: &[S]) -> Result<Self, DigestError> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_digest(e.as_ref(), i + 1))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether no digest is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `token` hashes to one of the digests. Every digest is compared, in constant
    /// time, whatever matches: timing says nothing about which entry or how many bytes matched.
    pub(crate) fn contains(&self, token: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(token).into();
        let mut found = Choice::from(0);
        for candidate in &self.0 {
            found |= candidate.ct_eq(&digest);
        }
        found.into()
    }
}

/// Who the caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    /// No credentials.
    Anonymous,
    /// A client token, or a verified TLS client certificate.
    Client,
    /// An admin token, or a TLS client certificate with an admin subject.
    Admin,
}

/// The result of authorizing a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    /// Who the caller is.
    pub(crate) role: Role,
    /// The debug mode to apply.
    pub(crate) debug: Option<DebugMode>,
}

/// The credentials a call presented.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Presented<'a> {
    /// The `authorization` header value(s).
    pub(crate) authorization: &'a [&'a [u8]],
    /// The `x-cache-debug` header value(s).
    pub(crate) debug: &'a [&'a [u8]],
    /// The subject of a verified TLS client certificate.
    pub(crate) peer_subject: Option<&'a str>,
}

/// The authorization rules of a server.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthPolicy {
    /// Admin token digests.
    pub(crate) admins: TokenDigests,
    /// Client token digests.
    pub(crate) clients: TokenDigests,
    /// Calls without credentials are refused.
    pub(crate) require_token: bool,
    /// TLS client certificate subjects with admin rights.
    pub(crate) admin_subjects: Vec<String>,
}

impl AuthPolicy {
    /// Decides who the caller is and which debug mode applies.
    pub(crate) fn authorize(&self, presented: &Presented<'_>) -> Result<Grant, AuthError> {
        let authorization = match presented.authorization {
            [] => None,
            [one] => Some(*one),
            _ => return Err(AuthError::MalformedAuthorization),
        };
        let mut role = match bearer_token(authorization)? {
            None => Role::Anonymous,
            // Both sets are always checked, so timing does not tell admin from client tokens.
            Some(token) => match (self.admins.contains(token), self.clients.contains(token)) {
                (true, _) => Role::Admin,
                (false, true) => Role::Client,
                (false, false) => return Err(AuthError::UnknownToken),
            },
        };
        if let Some(subject) = presented.peer_subject {
            let admin = self.admin_subjects.iter().any(|s| s == subject);
            role = role.max(if admin { Role::Admin } else { Role::Client });
        }
        if self.require_token && role == Role::Anonymous {
            return Err(AuthError::MissingToken);
        }
        let debug = match presented.debug {
            [] => None,
            _ if role != Role::Admin => return Err(AuthError::DebugNotAllowed),
            [one] => Some(DebugMode::parse(one)?),
            _ => return Err(AuthError::BadDebugValue),
        };
        Ok(Grant { role, debug })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn digest_hex(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    fn policy(require_token: bool) -> AuthPolicy {
        AuthPolicy {
            admins: TokenDigests::from_hex(&[digest_hex("admin-secret")]).expect("hex"),
            clients: TokenDigests::from_hex(&[
                digest_hex("client-secret"),
                digest_hex("other-client"),
            ])
            .expect("hex"),
            require_token,
            admin_subjects: vec!["CN=ops-admin".to_owned()],
        }
    }

    fn authorize(
        p: &AuthPolicy,
        auth: Option<&str>,
        debug: Option<&str>,
        subject: Option<&str>,
    ) -> Result<Grant, AuthError> {
        let auth: Vec<&[u8]> = auth.map(str::as_bytes).into_iter().collect();
        let debug: Vec<&[u8]> = debug.map(str::as_bytes).into_iter().collect();
        p.authorize(&Presented {
            authorization: &auth,
            debug: &debug,
            peer_subject: subject,
        })
    }

    #[test]
    fn debug_mode_spellings() {
        for (v, want) in [
            ("off", Ok(DebugMode::Off)),
            ("OFF", Ok(DebugMode::Off)),
            ("turn_off", Ok(DebugMode::Off)),
            ("Turn_Off", Ok(DebugMode::Off)),
            ("write-only", Ok(DebugMode::WriteOnly)),
            ("write_only", Ok(DebugMode::WriteOnly)),
            ("WRITE-ONLY", Ok(DebugMode::WriteOnly)),
            ("", Err(AuthError::BadDebugValue)),
            ("on", Err(AuthError::BadDebugValue)),
            ("off ", Err(AuthError::BadDebugValue)),
            ("writeonly", Err(AuthError::BadDebugValue)),
        ] {
            assert_eq!(DebugMode::parse(v.as_bytes()), want, "{v:?}");
        }
    }

    #[test]
    fn effects() {
        use Effect::*;
        use OpKind::*;
        let table = [
            (None, Read, Perform),
            (None, Write, Perform),
            (None, Counter, Perform),
            (Some(DebugMode::Off), Read, Miss),
            (Some(DebugMode::Off), Write, Skip),
            (Some(DebugMode::Off), Counter, Refuse),
            (Some(DebugMode::WriteOnly), Read, Miss),
            (Some(DebugMode::WriteOnly), Write, Perform),
            (Some(DebugMode::WriteOnly), Counter, Perform),
        ];
        for (mode, op, want) in table {
            assert_eq!(effect(mode, op), want, "{mode:?} {op:?}");
        }
    }

    #[test]
    fn bearer_tokens_name_the_caller() {
        let open = policy(false);
        let admin = Ok(Grant {
            role: Role::Admin,
            debug: None,
        });
        assert_eq!(
            authorize(&open, None, None, None),
            Ok(Grant {
                role: Role::Anonymous,
                debug: None
            })
        );
        assert_eq!(
            authorize(&open, Some("Bearer admin-secret"), None, None),
            admin
        );
        assert_eq!(
            authorize(&open, Some("bearer admin-secret"), None, None),
            admin
        );
        assert_eq!(
            authorize(&open, Some("Bearer client-secret"), None, None).map(|g| g.role),
            Ok(Role::Client)
        );
        assert_eq!(
            authorize(&open, Some("Bearer other-client"), None, None).map(|g| g.role),
            Ok(Role::Client)
        );
        assert_eq!(
            authorize(&open, Some("Bearer wrong"), None, None),
            Err(AuthError::UnknownToken)
        );
        assert_eq!(
            authorize(&open, Some("Basic YWRtaW4="), None, None),
            Err(AuthError::MalformedAuthorization)
        );
        assert_eq!(
            authorize(&open, Some("Bearer "), None, None),
            Err(AuthError::MalformedAuthorization)
        );
        assert_eq!(
            authorize(&open, Some("Bearer two words"), None, None),
            Err(AuthError::MalformedAuthorization)
        );
        assert_eq!(
            authorize(&open, Some("admin-secret"), None, None),
            Err(AuthError::MalformedAuthorization)
        );
        let long = format!("Bearer {}", "x".repeat(MAX_AUTHORIZATION_LEN));
        assert_eq!(
            authorize(&open, Some(&long), None, None),
            Err(AuthError::AuthorizationTooLong)
        );
    }

    #[test]
    fn debug_modes_need_an_admin() {
        let open = policy(false);
        assert_eq!(
            authorize(&open, Some("Bearer admin-secret"), Some("write_only"), None),
            Ok(Grant {
                role: Role::Admin,
                debug: Some(DebugMode::WriteOnly)
            })
        );
        assert_eq!(
            authorize(&open, None, Some("off"), None),
            Err(AuthError::DebugNotAllowed)
        );
        assert_eq!(
            authorize(&open, Some("Bearer client-secret"), Some("off"), None),
            Err(AuthError::DebugNotAllowed)
        );
        assert_eq!(
            authorize(&open, Some("Bearer client-secret"), Some("bogus"), None),
            Err(AuthError::DebugNotAllowed)
        );
        assert_eq!(
            authorize(&open, Some("Bearer admin-secret"), Some("bogus"), None),
            Err(AuthError::BadDebugValue)
        );
    }

    #[test]
    fn client_certificates_name_the_caller() {
        let open = policy(false);
        let closed = policy(true);
        assert_eq!(
            authorize(&open, None, Some("off"), Some("CN=ops-admin")),
            Ok(Grant {
                role: Role::Admin,
                debug: Some(DebugMode::Off)
            })
        );
        assert_eq!(
            authorize(&open, None, Some("off"), Some("CN=ops-admin2")),
            Err(AuthError::DebugNotAllowed)
        );
        assert_eq!(
            authorize(&closed, None, None, Some("CN=someone")).map(|g| g.role),
            Ok(Role::Client)
        );
    }

    #[test]
    fn a_required_token_refuses_anonymous_callers() {
        let closed = policy(true);
        assert_eq!(
            authorize(&closed, None, None, None),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            authorize(&closed, Some("Bearer client-secret"), None, None).map(|g| g.role),
            Ok(Role::Client)
        );
    }

    #[test]
    fn without_admins_debug_is_refused_to_everyone() {
        let no_admins = AuthPolicy {
            admins: TokenDigests::default(),
            ..policy(false)
        };
        assert_eq!(
            authorize(&no_admins, Some("Bearer admin-secret"), Some("off"), None),
            Err(AuthError::UnknownToken)
        );
        assert_eq!(
            authorize(&no_admins, None, Some("off"), None),
            Err(AuthError::DebugNotAllowed)
        );
    }

    #[test]
    fn repeated_headers_are_refused() {
        let open = policy(false);
        let twice: [&[u8]; 2] = [b"Bearer admin-secret", b"Bearer admin-secret"];
        assert_eq!(
            open.authorize(&Presented {
                authorization: &twice,
                ..Presented::default()
            }),
            Err(AuthError::MalformedAuthorization)
        );
        let modes: [&[u8]; 2] = [b"off", b"write-only"];
        let admin_auth: [&[u8]; 1] = [b"Bearer admin-secret"];
        assert_eq!(
            open.authorize(&Presented {
                authorization: &admin_auth,
                debug: &modes,
                peer_subject: None
            }),
            Err(AuthError::BadDebugValue)
        );
    }

    #[test]
    fn digests_must_be_hex_sha256() {
        assert!(TokenDigests::from_hex(&[digest_hex("t").to_uppercase()]).is_ok());
        assert_eq!(
            TokenDigests::from_hex(&["abc"]).map(|_| ()),
            Err(DigestError {
                number: 1,
                found: DigestFound::Length(3)
            })
        );
        assert_eq!(
            TokenDigests::from_hex(&[digest_hex("t"), "z".repeat(64)]).map(|_| ()),
            Err(DigestError {
                number: 2,
                found: DigestFound::NotHex(1)
            })
        );
        // The digest of the empty string, as `echo -n "" | sha256sum` prints it.
        let d = TokenDigests::from_hex(&[
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  -",
        ])
        .expect("hex");
        assert!(d.contains(b""));
        assert!(!d.contains(b" "));
    }

    #[test]
    fn digests_as_tools_print_them() {
        let hex = digest_hex("tok");
        for written in [
            hex.clone(),
            format!("{hex}  -"),
            format!("  {hex}  -\n"),
            format!("{hex} *-"),
            format!("\t{hex}\n"),
        ] {
            let d = TokenDigests::from_hex(&[written.as_str()]).expect(&written);
            assert!(d.contains(b"tok"), "{written:?}");
        }
        // Only the standard-input marker is a file name column; anything else is refused.
        for (written, found) in [
            (format!("{hex}-"), DigestFound::Length(65)),
            (format!("{hex}  token.txt"), DigestFound::Length(75)),
            (format!("{}x", &hex[..63]), DigestFound::NotHex(64)),
            ("0123".to_owned(), DigestFound::Length(4)),
        ] {
            let e = TokenDigests::from_hex(&[written.as_str()]).expect_err(&written);
            assert_eq!(e.found, found, "{written:?}");
        }
        // The message says what was expected and what was found, never the entry itself.
        let e = TokenDigests::from_hex(&["my-secret-token"]).expect_err("not a digest");
        let message = e.to_string();
        assert!(message.contains("64 hex digits") && message.contains("15 characters"));
        assert!(!message.contains("my-secret-token"), "{message}");
    }

    proptest! {
        /// Any header bytes: no panic; a token is accepted iff its digest is configured; a
        /// debug mode is only ever granted to an admin.
        #[test]
        fn arbitrary_credentials(auth in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
                                 debug in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12))) {
            let p = policy(false);
            let auth_v: Vec<&[u8]> = auth.as_deref().into_iter().collect();
            let debug_v: Vec<&[u8]> = debug.as_deref().into_iter().collect();
            if let Ok(grant) = p.authorize(&Presented { authorization: &auth_v, debug: &debug_v, peer_subject: None }) {
                if grant.debug.is_some() { prop_assert_eq!(grant.role, Role::Admin); }
                if grant.role != Role::Anonymous {
                    let token = bearer_token(auth.as_deref()).ok().flatten().expect("a token was accepted");
                    prop_assert!(p.admins.contains(token) || p.clients.contains(token));
                }
            }
        }

        /// A well-formed bearer header always yields exactly its token.
        #[test]
        fn bearer_round_trip(token in "[!-~]{1,200}", scheme in "(?i)bearer") {
            let header = format!("{scheme} {token}");
            prop_assert_eq!(bearer_token(Some(header.as_bytes())), Ok(Some(token.as_bytes())));
        }
    }
}
