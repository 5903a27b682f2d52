//! The mint decisions: a table of what each item state answers, what answers carry, and
//! property and model tests of the election (exactly one refresher under any interleaving).

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

/// An item reported without an election, then the same read after the election was held.
#[test]
fn table() {
    use MintOutcome::*;
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
    ];
    for (name, v, elected, want) in cases {
        assert_eq!(outcome(decide(v, elected, true)), want, "{name}");
    }
}

/// A cold fill's placeholder (with cold-miss protection asked for), and a value in a format
/// this server does not know.
#[test]
fn placeholders_and_unknown_formats() {
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
    let unknown = ItemView {
        client_flags: 77,
        ..view(90, 30, None, false)
    };
    let cases = [
        ("placeholder won", placeholder(Some(Win::Won)), Some(Miss)),
        (
            "placeholder lost",
            placeholder(Some(Win::Lost)),
            Some(Pending),
        ),
        ("unknown format", unknown, Some(Miss)),
    ];
    for (name, v, want) in cases {
        assert_eq!(outcome(decide(Some(v), false, true)), want, "{name}");
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
    let Step::Done(stale) = decide(Some(view(12, 30, Some(Win::Lost), false)), false, false) else {
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
    let Step::Done(won) = decide_with(Some(timed(40, 30, 200, Some(Win::Won))), true, true, None)
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
