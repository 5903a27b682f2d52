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
mod tests {
    use super::*;
    use crate::core::envelope::encode;
    use crate::core::item::{self, Change, GetOpts, Item, Write, WriteMode};
    use crate::core::ttl::Expiry;
    use proptest::prelude::*;

    fn view(ttl: u64, grace: u64, win: Option<Win>, stale: bool) -> ItemView {
        let (value, client_flags) = encode(b"payload", grace, 3, None);
        ItemView {
            value,
            client_flags,
            ttl_remaining: Some(ttl),
            cas: 42,
            instance: 5,
            stale,
            win,
            hot: false,
        }
    }

    fn outcome(step: Step) -> Option<MintOutcome> {
        match step {
            Step::Done(l) => Some(l.outcome),
            Step::Elect { .. } => None,
        }
    }

    #[test]
    fn table() {
        use MintOutcome::*;
        let placeholder = |win| ItemView {
            value: Bytes::new(),
            client_flags: 0,
            ttl_remaining: Some(5),
            cas: 9,
            instance: 5,
            stale: false,
            win,
            hot: false,
        };
        let cases: Vec<(&str, Option<ItemView>, bool, Option<MintOutcome>)> = vec![
            ("absent", None, false, Some(Miss)),
            ("fresh", Some(view(90, 30, None, false)), false, Some(Hit)),
            (
                "last fresh second",
                Some(view(31, 30, None, false)),
                false,
                Some(Hit),
            ),
            (
                "soft-expired, no election yet",
                Some(view(30, 30, None, false)),
                false,
                None,
            ),
            (
                "soft-expired, after election",
                Some(view(30, 30, None, false)),
                true,
                Some(Stale),
            ),
            (
                "won",
                Some(view(20, 30, Some(Win::Won), false)),
                false,
                Some(Refresh),
            ),
            (
                "lost",
                Some(view(20, 30, Some(Win::Lost), false)),
                false,
                Some(Stale),
            ),
            (
                "invalidated and won",
                Some(view(90, 30, Some(Win::Won), true)),
                false,
                Some(Refresh),
            ),
            (
                "invalidated, lost",
                Some(view(90, 30, Some(Win::Lost), true)),
                false,
                Some(Stale),
            ),
            (
                "invalidated, no election",
                Some(view(90, 30, None, true)),
                false,
                None,
            ),
            (
                "placeholder won",
                Some(placeholder(Some(Win::Won))),
                false,
                Some(Miss),
            ),
            (
                "placeholder lost",
                Some(placeholder(Some(Win::Lost))),
                false,
                Some(Pending),
            ),
            (
                "unknown format",
                Some(ItemView {
                    client_flags: 77,
                    ..view(90, 30, None, false)
                }),
                false,
                Some(Miss),
            ),
        ];
        for (name, v, flag, want) in cases {
            // The placeholder rows use the flag for "caller did not ask for protection".
            let (elected, protection) = if name.starts_with("placeholder") {
                (false, !flag)
            } else {
                (flag, true)
            };
            assert_eq!(outcome(decide(v, elected, protection)), want, "{name}");
        }
    }

    #[test]
    fn answers_carry_what_callers_need() {
        let Step::Done(miss) = decide(None, false, false) else {
            panic!("miss expected")
        };
        assert_eq!(
            (miss.outcome, miss.lease),
            (MintOutcome::Miss, Some(LeaseToken::Absent))
        );
        let Step::Done(hit) = decide(Some(view(90, 30, None, false)), false, false) else {
            panic!("hit expected")
        };
        assert_eq!(
            (hit.value.as_ref(), hit.flags, hit.ttl_seconds, hit.lease),
            (&b"payload"[..], 3, 60, None)
        );
        let Step::Done(refresh) = decide(Some(view(10, 30, Some(Win::Won), false)), false, false)
        else {
            panic!("refresh expected")
        };
        assert_eq!(
            (refresh.value.as_ref(), refresh.ttl_seconds, refresh.lease),
            (
                &b"payload"[..],
                0,
                Some(LeaseToken::Cas(Cas {
                    instance: 5,
                    value: 42
                }))
            )
        );
        assert_eq!(
            decide(Some(view(10, 30, None, false)), false, false),
            Step::Elect { recache_below: 31 }
        );
    }

    #[test]
    fn peeks_never_elect_and_never_lease() {
        use MintOutcome::*;
        let cases: Vec<(&str, Option<ItemView>, MintOutcome, bool)> = vec![
            ("absent", None, Miss, false),
            ("fresh", Some(view(90, 30, None, false)), Hit, false),
            (
                "soft-expired",
                Some(view(30, 30, None, false)),
                Stale,
                false,
            ),
            (
                "lost",
                Some(view(20, 30, Some(Win::Lost), false)),
                Stale,
                false,
            ),
            // memcached gave this read the election of an invalidated item: give it back.
            (
                "invalidated, won",
                Some(view(25, 30, Some(Win::Won), true)),
                Stale,
                true,
            ),
            (
                "placeholder being filled",
                Some(ItemView {
                    value: Bytes::new(),
                    client_flags: 0,
                    ttl_remaining: Some(5),
                    cas: 9,
                    instance: 5,
                    stale: false,
                    win: Some(Win::Lost),
                    hot: false,
                }),
                Pending,
                false,
            ),
        ];
        for (name, v, want, gives_back) in cases {
            let p = peek(v);
            assert_eq!(p.lookup.outcome, want, "{name}");
            assert_eq!(p.lookup.lease, None, "{name}");
            assert_eq!(p.give_back.is_some(), gives_back, "{name}");
        }
        let p = peek(Some(view(25, 30, Some(Win::Won), true)));
        assert_eq!(
            p.give_back,
            Some(GiveBack {
                cas: Cas {
                    instance: 5,
                    value: 42
                },
                stale_ttl: 25
            })
        );
    }

    #[test]
    fn answers_say_expiry_grace_and_counters() {
        let Step::Done(hit) = decide(Some(view(90, 30, None, false)), false, false) else {
            panic!("hit expected")
        };
        assert_eq!(
            (hit.grace_seconds, hit.no_expiry, hit.counter),
            (30, false, false)
        );
        let forever = ItemView {
            ttl_remaining: None,
            ..view(0, 30, None, false)
        };
        let Step::Done(hit) = decide(Some(forever), false, false) else {
            panic!("hit expected")
        };
        assert_eq!(
            (hit.outcome, hit.ttl_seconds, hit.no_expiry),
            (MintOutcome::Hit, 0, true)
        );
        let Step::Done(stale) = decide(Some(view(12, 30, Some(Win::Lost), false)), false, false)
        else {
            panic!("stale expected")
        };
        assert_eq!((stale.ttl_seconds, stale.grace_seconds), (0, 12));
        let counter = ItemView {
            value: Bytes::from_static(b"17"),
            client_flags: 0,
            ttl_remaining: None,
            cas: 1,
            instance: 5,
            stale: false,
            win: None,
            hot: false,
        };
        let Step::Done(c) = decide(Some(counter), false, false) else {
            panic!("counter expected")
        };
        assert_eq!(
            (c.outcome, c.value.as_ref(), c.counter, c.no_expiry),
            (MintOutcome::Hit, &b"17"[..], true, true)
        );
    }

    /// A fresh format-2 item: `ttl` seconds left of which `grace` are grace, recomputed in
    /// `recompute_ms`.
    fn timed(ttl: u64, grace: u64, recompute_ms: u32, win: Option<Win>) -> ItemView {
        let (value, client_flags) = encode(b"payload", grace, 3, Some(recompute_ms));
        ItemView {
            value,
            client_flags,
            ttl_remaining: Some(ttl),
            cas: 42,
            instance: 5,
            stale: false,
            win,
            hot: false,
        }
    }

    #[test]
    fn early_refresh_draws_rise_as_the_soft_expiry_nears() {
        let early = |u| Some(Early::draw(1.0, u));
        // One fresh second left and a 200 ms recomputation: only a draw of -ln(u) >= 5.
        let last_second = || Some(timed(31, 30, 200, None));
        assert_eq!(
            decide_with(last_second(), false, true, early(0.5)),
            decide(last_second(), false, true)
        );
        assert_eq!(
            decide_with(last_second(), false, true, early(0.999)),
            Step::Elect { recache_below: 32 }
        );
        // Far from expiry, no draw is that high in practice.
        assert_eq!(
            outcome(decide_with(
                Some(timed(3630, 30, 200, None)),
                false,
                true,
                early(0.999)
            )),
            Some(MintOutcome::Hit)
        );
        // No recomputation time known, or β = 0: never early.
        assert_eq!(
            outcome(decide_with(
                Some(view(31, 30, None, false)),
                false,
                true,
                early(0.999_999)
            )),
            Some(MintOutcome::Hit)
        );
        assert_eq!(
            outcome(decide_with(
                last_second(),
                false,
                true,
                Some(Early::draw(0.0, 0.999_999))
            )),
            Some(MintOutcome::Hit)
        );
        // The probability at one second left, 200 ms, β = 1: e^-5.
        let hits = (0..100_000)
            .filter(|i| Early::draw(1.0, f64::from(*i) / 100_000.0).refresh_now(1, 200))
            .count();
        assert!((600..=750).contains(&hits), "{hits} of 100000");
    }

    #[test]
    fn an_early_election_answers_refresh_to_its_winner_and_hit_to_everyone_else() {
        let Step::Done(won) =
            decide_with(Some(timed(40, 30, 200, Some(Win::Won))), true, true, None)
        else {
            panic!("final")
        };
        assert_eq!(won.outcome, MintOutcome::Refresh);
        assert_eq!(
            (won.ttl_seconds, won.grace_seconds),
            (10, 30),
            "still fresh"
        );
        assert!(won.lease.is_some());
        let Step::Done(lost) =
            decide_with(Some(timed(40, 30, 200, Some(Win::Lost))), false, true, None)
        else {
            panic!("final")
        };
        assert_eq!((lost.outcome, lost.ttl_seconds), (MintOutcome::Hit, 10));
        assert!(lost.lease.is_none());
        // A peek of an item being refreshed early is a hit too.
        assert_eq!(
            peek(Some(timed(40, 30, 200, Some(Win::Lost))))
                .lookup
                .outcome,
            MintOutcome::Hit
        );
    }

    proptest! {
        /// Many readers of one stale item, interleaved in any order against the store's own
        /// rules: exactly one of them is told to refresh, all others get the stale value.
        #[test]
        fn exactly_one_refresher(readers in 1usize..64, grace in 1u64..120, left in 1u64..120, order in proptest::collection::vec(any::<bool>(), 64)) {
            prop_assume!(left <= grace);
            let now = 10_000_000;
            let (value, client_flags) = encode(b"v", grace, 0, None);
            let w = Write { value, client_flags, ttl: Expiry::After(left), mode: WriteMode::Set, cas: None };
            let mut slot: Option<Item> = None;
            if let (_, Change::Put(it)) = item::set(None, &w, now, 1) { slot = Some(it); }
            // Each reader does its first read; those told to elect do the second read later,
            // in an order chosen by `order`.
            let mut outcomes = Vec::new();
            let mut electing = Vec::new();
            for (i, go_now) in order.iter().take(readers).enumerate() {
                let (v, ch) = item::get(slot.as_ref(), GetOpts::default(), now, 2);
                if let Change::Put(it) = ch { slot = Some(it); }
                match decide(v, false, false) {
                    Step::Done(l) => outcomes.push(l.outcome),
                    Step::Elect { recache_below } => electing.push((i, recache_below)),
                }
                if *go_now
                    && let Some((_, r)) = electing.pop() {
                        let (v, ch) = item::get(slot.as_ref(), GetOpts { recache_below: Some(r), ..GetOpts::default() }, now, 2);
                        if let Change::Put(it) = ch { slot = Some(it); }
                        if let Step::Done(l) = decide(v, true, false) { outcomes.push(l.outcome); }
                    }
            }
            while let Some((_, r)) = electing.pop() {
                let (v, ch) = item::get(slot.as_ref(), GetOpts { recache_below: Some(r), ..GetOpts::default() }, now, 2);
                if let Change::Put(it) = ch { slot = Some(it); }
                if let Step::Done(l) = decide(v, true, false) { outcomes.push(l.outcome); }
            }
            prop_assert_eq!(outcomes.len(), readers);
            prop_assert_eq!(outcomes.iter().filter(|o| **o == MintOutcome::Refresh).count(), 1);
            prop_assert!(outcomes.iter().all(|o| matches!(o, MintOutcome::Refresh | MintOutcome::Stale)));
        }

        /// Many readers of one fresh item near its soft expiry, each with its own early-refresh
        /// draw, interleaved in any order against the store's rules: at most one refreshes
        /// (exactly one if any draw asked for it), everyone else gets a hit.
        #[test]
        fn at_most_one_early_refresher(readers in 1usize..64, grace in 1u64..120, fresh in 1u64..5, recompute_ms in 1u32..5000, draws in proptest::collection::vec(0.0f64..1.0, 64), order in proptest::collection::vec(any::<bool>(), 64)) {
            let now = 10_000_000;
            let (value, client_flags) = encode(b"v", grace, 0, Some(recompute_ms));
            let w = Write { value, client_flags, ttl: Expiry::After(grace + fresh), mode: WriteMode::Set, cas: None };
            let mut slot: Option<Item> = None;
            if let (_, Change::Put(it)) = item::set(None, &w, now, 1) { slot = Some(it); }
            let mut outcomes = Vec::new();
            let mut electing = Vec::new();
            let mut asked = false;
            for (i, go_now) in order.iter().take(readers).enumerate() {
                let early = Some(Early::draw(1.0, draws[i]));
                let (v, ch) = item::get(slot.as_ref(), GetOpts::default(), now, 2);
                if let Change::Put(it) = ch { slot = Some(it); }
                match decide_with(v, false, false, early) {
                    Step::Done(l) => outcomes.push(l.outcome),
                    Step::Elect { recache_below } => { asked = true; electing.push(recache_below) }
                }
                if *go_now && let Some(r) = electing.pop() {
                    let (v, ch) = item::get(slot.as_ref(), GetOpts { recache_below: Some(r), ..GetOpts::default() }, now, 2);
                    if let Change::Put(it) = ch { slot = Some(it); }
                    if let Step::Done(l) = decide_with(v, true, false, early) { outcomes.push(l.outcome); }
                }
            }
            while let Some(r) = electing.pop() {
                let (v, ch) = item::get(slot.as_ref(), GetOpts { recache_below: Some(r), ..GetOpts::default() }, now, 2);
                if let Change::Put(it) = ch { slot = Some(it); }
                if let Step::Done(l) = decide_with(v, true, false, None) { outcomes.push(l.outcome); }
            }
            prop_assert_eq!(outcomes.len(), readers);
            let refreshes = outcomes.iter().filter(|o| **o == MintOutcome::Refresh).count();
            prop_assert_eq!(refreshes, usize::from(asked));
            prop_assert!(outcomes.iter().all(|o| matches!(o, MintOutcome::Refresh | MintOutcome::Hit)));
        }
    }
}
