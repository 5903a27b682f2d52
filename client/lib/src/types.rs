//! Typed results and options of the wrapper: outcomes, lookups, lease tokens, write options,
//! debug modes. Conversion from the generated protobuf types lives here too.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tonic::Code;

use crate::error::Error;
use crate::proto;

/// What a read found, and what the caller should do about it.
///
/// The wire enum ([`proto::Outcome`]) also has `UNSPECIFIED`, which the server never sends;
/// this one has only the five real outcomes.
///
/// ```
/// use mintcache_client::Outcome;
///
/// assert!(Outcome::Stale.is_usable());
/// assert!(!Outcome::Refresh.is_usable());
/// assert!(Outcome::Refresh.has_value());
/// assert_eq!(Outcome::Pending.to_string(), "PENDING");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A fresh value. Use it.
    Hit,
    /// Past its soft expiry (or invalidated) and another caller is refreshing it. The stale
    /// value is returned: use it.
    Stale,
    /// Stale, and this caller won the refresh: recompute and `Set` with the lease token. The
    /// stale value is returned too. At most one caller per stale period gets it, fleet-wide.
    Refresh,
    /// Nothing cached: compute and `Set` (with the lease token).
    Miss,
    /// Nothing cached and another caller is filling it (cold-miss protection): retry shortly.
    Pending,
}

impl Outcome {
    /// Whether a Django-style "get" returns the value: `HIT` and `STALE`.
    pub fn is_usable(self) -> bool {
        matches!(self, Self::Hit | Self::Stale)
    }

    /// Whether the answer carries a (possibly stale) value: `HIT`, `STALE` and `REFRESH`.
    pub fn has_value(self) -> bool {
        matches!(self, Self::Hit | Self::Stale | Self::Refresh)
    }

    /// The outcome's name as in the API, without the `OUTCOME_` prefix (`HIT`, `STALE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Stale => "STALE",
            Self::Refresh => "REFRESH",
            Self::Miss => "MISS",
            Self::Pending => "PENDING",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<proto::Outcome> for Outcome {
    type Error = Error;

    fn try_from(outcome: proto::Outcome) -> Result<Self, Error> {
        match outcome {
            proto::Outcome::Hit => Ok(Self::Hit),
            proto::Outcome::Stale => Ok(Self::Stale),
            proto::Outcome::Refresh => Ok(Self::Refresh),
            proto::Outcome::Miss => Ok(Self::Miss),
            proto::Outcome::Pending => Ok(Self::Pending),
            proto::Outcome::Unspecified => Err(Error::Protocol("outcome UNSPECIFIED".into())),
        }
    }
}

impl From<Outcome> for proto::Outcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Hit => Self::Hit,
            Outcome::Stale => Self::Stale,
            Outcome::Refresh => Self::Refresh,
            Outcome::Miss => Self::Miss,
            Outcome::Pending => Self::Pending,
        }
    }
}

/// Converts the wire integer, rejecting values this client does not know.
pub(crate) fn outcome_from_wire(value: i32) -> Result<Outcome, Error> {
    proto::Outcome::try_from(value)
        .map_err(|_| Error::Protocol(format!("unknown outcome {value}")))
        .and_then(Outcome::try_from)
}

/// An opaque lease token from a `REFRESH` or `MISS` answer, to pass back when setting the
/// value ([`SetOptions::lease`]): the value is then stored only if nothing happened to the key
/// since that read.
///
/// ```
/// use mintcache_client::LeaseToken;
///
/// let token = LeaseToken::from(vec![0xab, 0x01]);
/// assert_eq!(token.to_string(), "ab01");
/// assert_eq!("ab01".parse::<LeaseToken>().unwrap(), token);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LeaseToken(Vec<u8>);

impl LeaseToken {
    /// The token's bytes, as sent on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The token's bytes, as sent on the wire.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for LeaseToken {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

/// Lower-case hex, the form the CLI prints and accepts.
impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseToken({self})")
    }
}

/// The error of parsing a [`LeaseToken`] from hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a lease token is an even number of hex digits")]
pub struct ParseLeaseTokenError;

impl FromStr for LeaseToken {
    type Err = ParseLeaseTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.len().is_multiple_of(2) {
            return Err(ParseLeaseTokenError);
        }
        // `u8::from_str_radix` would accept a sign ("+1"), so digits are checked one by one.
        // A hex digit is below 16, so the cast is lossless.
        let nibble = |b: u8| {
            char::from(b)
                .to_digit(16)
                .map(|d| d as u8)
                .ok_or(ParseLeaseTokenError)
        };
        s.as_bytes()
            .chunks_exact(2)
            .map(|pair| Ok((nibble(pair[0])? << 4) | nibble(pair[1])?))
            .collect::<Result<Vec<u8>, _>>()
            .map(Self)
    }
}

/// The answer to a read ([`Client::get`](crate::Client::get), [`Client::peek`](crate::Client::peek)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// What was found.
    pub outcome: Outcome,
    /// The value for `HIT`, `STALE` and `REFRESH`; empty otherwise.
    pub value: Vec<u8>,
    /// The flags stored with the value.
    pub flags: u32,
    /// How long the value stays fresh (zero once it is stale, for a value that never expires,
    /// and for `MISS` and `PENDING`).
    pub ttl: Duration,
    /// For `HIT`: the grace period that follows [`ttl`](Self::ttl). For `STALE` and
    /// `REFRESH`: how long the stale value stays servable. Zero otherwise.
    pub grace: Duration,
    /// The value never expires (it was stored with [`SetOptions::no_expiry`]).
    pub no_expiry: bool,
    /// The value is a counter (decimal digits that `increment` can change).
    pub counter: bool,
    /// For `REFRESH` and `MISS`: pass it back in [`SetOptions::lease`]. Never set by a peek.
    pub lease: Option<LeaseToken>,
    /// The server's backend failed and the read was answered as a miss (`x-cache-degraded`).
    pub degraded: bool,
}

/// The fields of a read answer as they come off the wire (`GetResponse`, `GetManyResult`).
pub(crate) struct WireLookup {
    pub(crate) outcome: i32,
    pub(crate) value: Vec<u8>,
    pub(crate) flags: u32,
    pub(crate) ttl_seconds: i64,
    pub(crate) grace_seconds: i64,
    pub(crate) no_expiry: bool,
    pub(crate) counter: bool,
    pub(crate) lease_token: Vec<u8>,
}

impl From<proto::GetResponse> for WireLookup {
    fn from(r: proto::GetResponse) -> Self {
        Self {
            outcome: r.outcome,
            value: r.value,
            flags: r.flags,
            ttl_seconds: r.ttl_seconds,
            grace_seconds: r.grace_seconds,
            no_expiry: r.no_expiry,
            counter: r.counter,
            lease_token: r.lease_token,
        }
    }
}

impl From<proto::GetManyResult> for WireLookup {
    fn from(r: proto::GetManyResult) -> Self {
        Self {
            outcome: r.outcome,
            value: r.value,
            flags: r.flags,
            ttl_seconds: r.ttl_seconds,
            grace_seconds: r.grace_seconds,
            no_expiry: r.no_expiry,
            counter: r.counter,
            lease_token: r.lease_token,
        }
    }
}

/// Seconds from the wire; negative values (never sent) read as zero.
fn duration_from_wire(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

impl Lookup {
    /// The value a Django-style "get" returns: `Some` for `HIT` and `STALE`.
    pub fn usable_value(&self) -> Option<&[u8]> {
        self.outcome.is_usable().then_some(self.value.as_slice())
    }

    /// Like [`usable_value`](Self::usable_value), by value.
    pub fn into_usable_value(self) -> Option<Vec<u8>> {
        self.outcome.is_usable().then_some(self.value)
    }

    pub(crate) fn from_wire(wire: WireLookup, degraded: bool) -> Result<Self, Error> {
        Ok(Self {
            outcome: outcome_from_wire(wire.outcome)?,
            value: wire.value,
            flags: wire.flags,
            ttl: duration_from_wire(wire.ttl_seconds),
            grace: duration_from_wire(wire.grace_seconds),
            no_expiry: wire.no_expiry,
            counter: wire.counter,
            lease: (!wire.lease_token.is_empty()).then_some(LeaseToken(wire.lease_token)),
            degraded,
        })
    }
}

/// How to store a value: ttl, grace, flags, lease token, and the explicit "never expires",
/// "no grace" and "counter" forms.
///
/// Zero durations mean the server's defaults (`cache.default_ttl_seconds`,
/// `cache.grace_seconds`). The server counts whole seconds: a duration with a fractional part
/// is rounded up, so a non-zero duration never turns into "server default".
/// [`no_expiry`](Self::no_expiry) needs a zero `ttl`, [`no_grace`](Self::no_grace) a zero
/// `grace`; the server refuses the other combinations with `INVALID_ARGUMENT`.
///
/// ```
/// use std::time::Duration;
/// use mintcache_client::SetOptions;
///
/// let options = SetOptions {
///     grace: Duration::from_secs(300),
///     ..SetOptions::ttl(Duration::from_secs(60))
/// };
/// assert_eq!(options.ttl, Duration::from_secs(60));
/// assert_eq!(options.flags, 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// How long the value is fresh (zero: server default).
    pub ttl: Duration,
    /// How long it stays servable as `STALE` after that (zero: server default).
    pub grace: Duration,
    /// Opaque flags stored and returned with the value.
    pub flags: u32,
    /// The lease token of the `REFRESH` or `MISS` this value answers, if any.
    pub lease: Option<LeaseToken>,
    /// The value never expires (until deleted, invalidated, flushed or evicted).
    pub no_expiry: bool,
    /// The value has no grace period: it is gone when `ttl` ends, with no `STALE` phase.
    pub no_grace: bool,
    /// Store the value as a counter that `increment` can change: the value must be the
    /// decimal digits of a `u64`, with no flags and no lease. Counters are not minted.
    pub counter: bool,
    /// How long computing the value took, if the caller measured it (the server uses it for
    /// early refresh; without it, it measures the time since the lease was handed out).
    pub recompute: Option<Duration>,
}

impl SetOptions {
    /// Options with this ttl and server defaults for the rest.
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            ..Self::default()
        }
    }
}

/// Whole seconds for the wire, rounded up, saturating (the server rejects absurd values).
pub(crate) fn wire_seconds(d: Duration) -> i64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// A per-call debug mode (`x-cache-debug`), honoured for admin callers only.
///
/// ```
/// use mintcache_client::DebugMode;
///
/// assert_eq!("write-only".parse::<DebugMode>(), Ok(DebugMode::WriteOnly));
/// assert_eq!("turn_off".parse::<DebugMode>(), Ok(DebugMode::Off));
/// assert_eq!(DebugMode::WriteOnly.as_str(), "write-only");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DebugMode {
    /// Reads miss without touching the cache; writes, deletes and invalidations are accepted
    /// and not performed; `Increment` fails with `FAILED_PRECONDITION`.
    Off,
    /// Reads miss without touching the cache; writes go through.
    WriteOnly,
}

impl DebugMode {
    /// The header value: `off` or `write-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::WriteOnly => "write-only",
        }
    }
}

impl fmt::Display for DebugMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`DebugMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown debug mode {0:?} (expected `off` or `write-only`)")]
pub struct ParseDebugModeError(String);

/// Accepts `off` and `write-only`, and the original's `turn_off` and `write_only`.
impl FromStr for DebugMode {
    type Err = ParseDebugModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" | "turn_off" => Ok(Self::Off),
            "write-only" | "write_only" => Ok(Self::WriteOnly),
            other => Err(ParseDebugModeError(other.to_owned())),
        }
    }
}

/// Why one key of a batched call failed; the rest of the batch is unaffected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", crate::error::code_name(*.code))]
pub struct KeyError {
    /// The gRPC status code (e.g. `INVALID_ARGUMENT`).
    pub code: Code,
    /// A human-readable reason.
    pub message: String,
}

impl From<proto::KeyError> for KeyError {
    fn from(e: proto::KeyError) -> Self {
        Self {
            code: Code::from_i32(e.code),
            message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_the_wire_enum() {
        for o in [
            Outcome::Hit,
            Outcome::Stale,
            Outcome::Refresh,
            Outcome::Miss,
            Outcome::Pending,
        ] {
            let wire = proto::Outcome::from(o);
            assert_eq!(outcome_from_wire(wire as i32).ok(), Some(o));
            assert_eq!(
                wire.as_str_name().strip_prefix("OUTCOME_"),
                Some(o.as_str())
            );
        }
        assert!(matches!(outcome_from_wire(0), Err(Error::Protocol(_))));
        assert!(matches!(outcome_from_wire(99), Err(Error::Protocol(_))));
    }

    #[test]
    fn lookups_drop_empty_leases_and_negative_ttls() {
        let wire = |outcome, value: &[u8], ttl_seconds, lease_token: Vec<u8>| WireLookup {
            outcome,
            value: value.to_vec(),
            flags: 7,
            ttl_seconds,
            grace_seconds: 30,
            no_expiry: false,
            counter: false,
            lease_token,
        };
        let l = Lookup::from_wire(wire(4, b"", -5, Vec::new()), true).expect("valid");
        assert_eq!(l.outcome, Outcome::Miss);
        assert_eq!(l.lease, None);
        assert_eq!(l.ttl, Duration::ZERO);
        assert!(l.degraded);
        assert_eq!(l.usable_value(), None);
        let l = Lookup::from_wire(wire(2, b"v", 0, vec![1]), false).expect("valid");
        assert_eq!(l.usable_value(), Some(&b"v"[..]));
        assert_eq!(l.lease, Some(LeaseToken::from(vec![1])));
        assert_eq!((l.flags, l.grace), (7, Duration::from_secs(30)));
    }

    #[test]
    fn read_answers_keep_expiry_grace_and_counter_marks() {
        let l = Lookup::from_wire(
            WireLookup::from(proto::GetManyResult {
                outcome: 1,
                value: b"12".to_vec(),
                no_expiry: true,
                counter: true,
                grace_seconds: 0,
                ..proto::GetManyResult::default()
            }),
            false,
        )
        .expect("valid");
        assert!(l.no_expiry && l.counter);
        assert_eq!((l.ttl, l.grace), (Duration::ZERO, Duration::ZERO));
        let l = Lookup::from_wire(
            WireLookup::from(proto::GetResponse {
                outcome: 2,
                grace_seconds: 12,
                ..proto::GetResponse::default()
            }),
            false,
        )
        .expect("valid");
        assert_eq!(l.grace, Duration::from_secs(12));
        assert!(!l.no_expiry && !l.counter);
    }

    #[test]
    fn wire_seconds_round_up_and_saturate() {
        assert_eq!(wire_seconds(Duration::ZERO), 0);
        assert_eq!(wire_seconds(Duration::from_millis(1)), 1);
        assert_eq!(wire_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(wire_seconds(Duration::from_secs(60)), 60);
        assert_eq!(wire_seconds(Duration::MAX), i64::MAX);
    }

    #[test]
    fn lease_tokens_parse_from_hex() {
        assert_eq!("".parse::<LeaseToken>(), Ok(LeaseToken::from(Vec::new())));
        assert_eq!(
            "00FFa0".parse::<LeaseToken>(),
            Ok(LeaseToken::from(vec![0, 255, 160]))
        );
        assert!("abc".parse::<LeaseToken>().is_err());
        assert!("zz".parse::<LeaseToken>().is_err());
        assert!("+1".parse::<LeaseToken>().is_err());
        assert!("é0".parse::<LeaseToken>().is_err());
    }

    #[test]
    fn debug_modes_parse_both_spellings() {
        assert_eq!("off".parse(), Ok(DebugMode::Off));
        assert_eq!("write_only".parse(), Ok(DebugMode::WriteOnly));
        assert!("normal".parse::<DebugMode>().is_err());
    }

    #[test]
    fn key_errors_keep_code_and_message() {
        let e = KeyError::from(proto::KeyError {
            code: 3,
            message: "empty key".into(),
        });
        assert_eq!(e.code, Code::InvalidArgument);
        assert_eq!(e.to_string(), "INVALID_ARGUMENT: empty key");
    }
}
