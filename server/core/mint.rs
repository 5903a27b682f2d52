//! The mint decisions: what a read of an item means for the caller.
//!
//! A read goes to the store once, with no recache threshold (the store does not know the
//! item's grace yet). The store itself reports invalidated items and elections already
//! decided (`W`/`Z`), so most answers come from that single round trip. Only when the value
//! turns out to be past its soft expiry with no election yet does the service ask the store to
//! hold one (`mg … R<grace+1>`): the store, not the service, picks the single winner, and the
//! answer to that second read is final.

use bytes::Bytes;

use super::envelope::{Decoded, decode};
use super::item::{Cas, ItemView, Win};
use super::lease::LeaseToken;
use super::ttl::fresh_remaining;

/// The outcome of a read, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MintOutcome {
    /// A fresh value.
    Hit,
    /// A stale value; someone else is refreshing it.
    Stale,
    /// A stale value; this caller refreshes it.
    Refresh,
    /// No value; compute it.
    Miss,
    /// No value; someone else is computing it.
    Pending,
}

impl MintOutcome {
    /// Every outcome (metrics show each from the start, at zero).
    pub(crate) const ALL: [Self; 5] = [
        Self::Hit,
        Self::Stale,
        Self::Refresh,
        Self::Miss,
        Self::Pending,
    ];

    /// The lower-case name used in logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Stale => "stale",
            Self::Refresh => "refresh",
            Self::Miss => "miss",
            Self::Pending => "pending",
        }
    }
}

/// What a read answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookup {
    /// The outcome.
    pub(crate) outcome: MintOutcome,
    /// The value (for `Hit`, `Stale`, `Refresh`).
    pub(crate) value: Bytes,
    /// The caller's flags.
    pub flags: u32,
    /// Seconds the value stays fresh (0 if stale, absent, or never expiring).
    pub ttl_seconds: u64,
    /// The value never expires.
    pub no_expiry: bool,
    /// For `Hit`: the grace period after `ttl_seconds`; for `Stale` and `Refresh`: seconds the
    /// stale value stays servable; 0 otherwise.
    pub grace_seconds: u64,
    /// The value is a counter.
    pub counter: bool,
    /// The lease for `Refresh` and `Miss`.
    pub(crate) lease: Option<LeaseToken>,
    /// When the lease was issued (Unix ms), carried in the token so that the `Set` bringing it
    /// back learns how long the value took to recompute (set by the service, which has the
    /// clock; `None`: a token without it).
    pub(crate) issued_at_ms: Option<u64>,
}

impl Lookup {
    /// Nothing cached, no lease.
    pub(crate) fn miss() -> Self {
        Self {
            outcome: MintOutcome::Miss,
            value: Bytes::new(),
            flags: 0,
            ttl_seconds: 0,
            no_expiry: false,
            grace_seconds: 0,
            counter: false,
            lease: None,
            issued_at_ms: None,
        }
    }

    /// Nothing cached yet, someone else is filling it.
    pub(crate) fn pending() -> Self {
        Self::outcome_only(MintOutcome::Pending, None)
    }

    fn outcome_only(outcome: MintOutcome, lease: Option<LeaseToken>) -> Self {
        Self {
            outcome,
            lease,
            ..Self::miss()
        }
    }

    /// A counter's value (counters are not minted: always a hit while they exist).
    fn counter(value: Bytes, ttl_remaining: Option<u64>) -> Self {
        Self {
            outcome: MintOutcome::Hit,
            value,
            ttl_seconds: ttl_remaining.unwrap_or(0),
            no_expiry: ttl_remaining.is_none(),
            counter: true,
            ..Self::miss()
        }
    }
}

/// The next step after a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The read is answered.
    Done(Lookup),
    /// The value is past its soft expiry and no election was held: read again with
    /// `recache_below` so that the store elects the refresher.
    Elect {
        /// The `R` threshold: strictly more than the grace, so every stale item qualifies.
        recache_below: u64,
    },
}

/// A minted value, as a read found it.
struct Found<'a> {
    view: &'a ItemView,
    grace: u64,
    flags: u32,
    payload: Bytes,
    /// Fresh seconds left (`Some(0)` for a value that never expires), `None` once stale.
    fresh: Option<u64>,
}

impl<'a> Found<'a> {
    fn new(view: &'a ItemView, grace: u64, flags: u32, payload: Bytes) -> Self {
        let fresh = match view.ttl_remaining {
            None => Some(0),
            Some(t) => fresh_remaining(t, grace),
        };
        Self {
            view,
            grace,
            flags,
            payload,
            fresh,
        }
    }

    /// Fresh, and not invalidated.
    fn is_fresh(&self) -> bool {
        self.fresh.is_some() && !self.view.stale
    }

    fn answer(self, outcome: MintOutcome) -> Lookup {
        // A hit, or an early refresh of a value still fresh.
        let fresh = outcome == MintOutcome::Hit || self.is_fresh();
        let never = self.view.ttl_remaining.is_none();
        Lookup {
            outcome,
            value: self.payload,
            flags: self.flags,
            ttl_seconds: if fresh { self.fresh.unwrap_or(0) } else { 0 },
            no_expiry: never,
            grace_seconds: match (fresh, self.view.ttl_remaining) {
                (true, _) => self.grace,
                (false, Some(left)) => left.min(self.grace),
                (false, None) => self.grace,
            },
            counter: false,
            lease: (outcome == MintOutcome::Refresh).then_some(LeaseToken::Cas(cas_of(self.view))),
            issued_at_ms: None,
        }
    }
}

/// The CAS value of the item a read saw, with the instance that holds it.
fn cas_of(view: &ItemView) -> Cas {
    Cas {
        instance: view.instance,
        value: view.cas,
    }
}

/// Early refresh (XFetch: Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic Cache
/// Stampede Prevention", VLDB 2015): a read of a fresh value whose last recomputation took δ
/// asks for the refresh election when `δ·β·draw ≥ fresh time left`, `draw = −ln(u)` for `u`
/// uniform in (0, 1]: the closer the soft expiry and the slower the recomputation, the likelier.
/// The store then elects at most one winner (memcached's `R` flag), which gets `REFRESH` with
/// the still-fresh value while everyone else keeps getting `HIT`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Early {
    /// β: 0 is off, 1 the paper's choice, more refreshes earlier.
    pub(crate) beta: f64,
    /// `−ln(u)`, drawn for this read.
    pub(crate) draw: f64,
}

impl Early {
    /// The draw of one read, from `uniform` in [0, 1).
    pub(crate) fn draw(beta: f64, uniform: f64) -> Self {
        Self {
            beta,
            draw: -(1.0 - uniform.clamp(0.0, 1.0 - f64::EPSILON)).ln(),
        }
    }

    /// Whether a value fresh for `fresh_left` more seconds, whose last recomputation took
    /// `recompute_ms`, asks for the election now.
    pub(crate) fn refresh_now(self, fresh_left: u64, recompute_ms: u32) -> bool {
        self.beta > 0.0
            && f64::from(recompute_ms) / 1000.0 * self.beta * self.draw >= fresh_left as f64
    }
}

/// Decides what a read means. `elected` is true for the second read of [`Step::Elect`]: its
/// answer is final. `cold_miss_protection` is whether this caller asked for it: only such
/// callers are told to wait (`Pending`) for another caller's fill.
pub(crate) fn decide(view: Option<ItemView>, elected: bool, cold_miss_protection: bool) -> Step {
    decide_with(view, elected, cold_miss_protection, None)
}

/// [`decide`], with this read's draw for early refresh.
pub(crate) fn decide_with(
    view: Option<ItemView>,
    elected: bool,
    cold_miss_protection: bool,
    early: Option<Early>,
) -> Step {
    let Some(view) = view else {
        return Step::Done(Lookup::outcome_only(
            MintOutcome::Miss,
            Some(LeaseToken::Absent),
        ));
    };
    match decode(view.client_flags, view.value.clone()) {
        Decoded::Placeholder => Step::Done(match view.win {
            Some(Win::Won) => {
                Lookup::outcome_only(MintOutcome::Miss, Some(LeaseToken::Cas(cas_of(&view))))
            }
            Some(Win::Lost) if cold_miss_protection => {
                Lookup::outcome_only(MintOutcome::Pending, None)
            }
            // Someone else's fill, and this caller did not ask to wait for it; or a placeholder
            // nobody holds (memcached always elects when it creates one). A plain set
            // overwrites it.
            Some(Win::Lost) | None => Lookup::miss(),
        }),
        Decoded::Unknown => Step::Done(Lookup::miss()),
        Decoded::Counter(value) => Step::Done(Lookup::counter(value, view.ttl_remaining)),
        Decoded::Value {
            grace,
            flags,
            payload,
            recompute_ms,
        } => {
            let found = Found::new(&view, grace, flags, payload);
            let outcome = match view.win {
                Some(Win::Won) => MintOutcome::Refresh,
                // Fresh, and someone is refreshing it early.
                Some(Win::Lost) if found.is_fresh() => MintOutcome::Hit,
                Some(Win::Lost) => MintOutcome::Stale,
                None if found.is_fresh() => {
                    let early_now = match (early, recompute_ms, found.fresh, view.ttl_remaining) {
                        (Some(early), Some(ms), Some(left), Some(_)) => {
                            !elected && early.refresh_now(left, ms)
                        }
                        _ => false,
                    };
                    if early_now {
                        // Any remaining time qualifies: the store elects whoever asks first.
                        return Step::Elect {
                            recache_below: view.ttl_remaining.unwrap_or(0).saturating_add(1),
                        };
                    }
                    MintOutcome::Hit
                }
                None if elected => MintOutcome::Stale,
                None => {
                    return Step::Elect {
                        recache_below: grace.saturating_add(1),
                    };
                }
            };
            Step::Done(found.answer(outcome))
        }
    }
}

/// What a peek found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peek {
    /// The answer: never `Refresh`, never a lease.
    pub lookup: Lookup,
    /// The peek's read took the refresh election of an invalidated item (memcached hands the
    /// win to the first read of such an item, whatever its flags): give it back by
    /// invalidating again, only if the item still has this CAS value, for this many seconds.
    pub give_back: Option<GiveBack>,
}

/// An election a peek took and must give back (see [`Peek::give_back`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GiveBack {
    /// The CAS value the item had when the peek read it.
    pub cas: Cas,
    /// Seconds the item stays stale after the re-invalidation.
    pub stale_ttl: u64,
}

/// Decides what a peek (a plain read, without `R` or `N`) means: the value and its state,
/// without taking part in the refresh election.
pub(crate) fn peek(view: Option<ItemView>) -> Peek {
    let done = |lookup| Peek {
        lookup,
        give_back: None,
    };
    let Some(view) = view else {
        return done(Lookup::miss());
    };
    match decode(view.client_flags, view.value.clone()) {
        // Someone holds the fill of a missing value.
        Decoded::Placeholder if view.win == Some(Win::Lost) => {
            done(Lookup::outcome_only(MintOutcome::Pending, None))
        }
        Decoded::Placeholder | Decoded::Unknown => done(Lookup::miss()),
        Decoded::Counter(value) => done(Lookup::counter(value, view.ttl_remaining)),
        Decoded::Value {
            grace,
            flags,
            payload,
            ..
        } => {
            let found = Found::new(&view, grace, flags, payload);
            let give_back = (view.win == Some(Win::Won)).then(|| GiveBack {
                cas: cas_of(&view),
                stale_ttl: view.ttl_remaining.unwrap_or(grace).clamp(1, grace.max(1)),
            });
            // A fresh value is a hit even while someone refreshes it early.
            let outcome = if found.is_fresh() {
                MintOutcome::Hit
            } else {
                MintOutcome::Stale
            };
            Peek {
                lookup: found.answer(outcome),
                give_back,
            }
        }
    }
}

#[cfg(test)]
mod tests;
