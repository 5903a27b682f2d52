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
use super::item::{ItemView, Win};
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
    pub(crate) flags: u32,
    /// Seconds the value stays fresh (0 if stale or absent).
    pub(crate) ttl_seconds: u64,
    /// The lease for `Refresh` and `Miss`.
    pub(crate) lease: Option<LeaseToken>,
}

impl Lookup {
    /// Nothing cached, no lease.
    pub(crate) fn miss() -> Self {
        Self {
            outcome: MintOutcome::Miss,
            value: Bytes::new(),
            flags: 0,
            ttl_seconds: 0,
            lease: None,
        }
    }

    fn outcome_only(outcome: MintOutcome, lease: Option<LeaseToken>) -> Self {
        Self {
            outcome,
            lease,
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

/// Decides what a read means. `elected` is true for the second read of [`Step::Elect`]: its
/// answer is final. `cold_miss_protection` is whether this caller asked for it: only such
/// callers are told to wait (`Pending`) for another caller's fill.
pub(crate) fn decide(view: Option<ItemView>, elected: bool, cold_miss_protection: bool) -> Step {
    let Some(view) = view else {
        return Step::Done(Lookup::outcome_only(
            MintOutcome::Miss,
            Some(LeaseToken::Absent),
        ));
    };
    match decode(view.client_flags, view.value) {
        Decoded::Placeholder => Step::Done(match view.win {
            Some(Win::Won) => {
                Lookup::outcome_only(MintOutcome::Miss, Some(LeaseToken::Cas(view.cas)))
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
        Decoded::Counter(value) => Step::Done(Lookup {
            outcome: MintOutcome::Hit,
            value,
            flags: 0,
            ttl_seconds: view.ttl_remaining.unwrap_or(0),
            lease: None,
        }),
        Decoded::Value {
            grace,
            flags,
            payload,
        } => {
            let fresh = match view.ttl_remaining {
                None => Some(0),
                Some(t) => fresh_remaining(t, grace),
            };
            let outcome = match (view.win, fresh) {
                (Some(Win::Won), _) => MintOutcome::Refresh,
                (Some(Win::Lost), _) => MintOutcome::Stale,
                (None, Some(_)) if !view.stale => MintOutcome::Hit,
                (None, _) if elected => MintOutcome::Stale,
                (None, _) => {
                    return Step::Elect {
                        recache_below: grace.saturating_add(1),
                    };
                }
            };
            Step::Done(Lookup {
                outcome,
                value: payload,
                flags,
                ttl_seconds: if outcome == MintOutcome::Hit {
                    fresh.unwrap_or(0)
                } else {
                    0
                },
                lease: (outcome == MintOutcome::Refresh).then_some(LeaseToken::Cas(view.cas)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::envelope::encode;
    use crate::core::item::{self, Change, GetOpts, Item, Write, WriteMode};
    use proptest::prelude::*;

    fn view(ttl: u64, grace: u64, win: Option<Win>, stale: bool) -> ItemView {
        let (value, client_flags) = encode(b"payload", grace, 3);
        ItemView {
            value,
            client_flags,
            ttl_remaining: Some(ttl),
            cas: 42,
            stale,
            win,
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
            stale: false,
            win,
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
            (&b"payload"[..], 0, Some(LeaseToken::Cas(42)))
        );
        assert_eq!(
            decide(Some(view(10, 30, None, false)), false, false),
            Step::Elect { recache_below: 31 }
        );
    }

    proptest! {
        /// Many readers of one stale item, interleaved in any order against the store's own
        /// rules: exactly one of them is told to refresh, all others get the stale value.
        #[test]
        fn exactly_one_refresher(readers in 1usize..64, grace in 1u64..120, left in 1u64..120, order in proptest::collection::vec(any::<bool>(), 64)) {
            prop_assume!(left <= grace);
            let now = 10_000_000;
            let (value, client_flags) = encode(b"v", grace, 0);
            let w = Write { value, client_flags, ttl: left, mode: WriteMode::Set, cas: None };
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
                if *go_now {
                    if let Some((_, r)) = electing.pop() {
                        let (v, ch) = item::get(slot.as_ref(), GetOpts { recache_below: Some(r), ..GetOpts::default() }, now, 2);
                        if let Change::Put(it) = ch { slot = Some(it); }
                        if let Step::Done(l) = decide(v, true, false) { outcomes.push(l.outcome); }
                    }
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
    }
}
