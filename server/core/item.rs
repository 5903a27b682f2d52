//! Items as memcached's meta protocol sees them.
//!
//! [`ItemView`] is what a meta get reports, whichever store answered. [`Item`] and its
//! operations reproduce memcached's own rules (recache `R`, vivify-on-miss `N`, stale `X`,
//! win `W` / already-won `Z`, CAS, add) as pure functions of the current time, so that the
//! embedded store behaves exactly like memcached and the rules can be tested without a clock.
//!
//! Times are milliseconds on a monotonic clock chosen by the caller.

use bytes::Bytes;

use super::ttl::Expiry;

/// Who gets to refresh a stale or missing item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Win {
    /// This reader won the right to refresh (memcached's `W`).
    Won,
    /// Another reader already won it (memcached's `Z`).
    Lost,
}

/// A CAS value, and the store instance (memcached process) it belongs to: memcached counts
/// CAS values from 1 again when it restarts, so a value alone does not name an item for long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Cas {
    /// The store instance that handed the value out.
    pub instance: u64,
    /// The CAS value.
    pub value: u64,
}

/// What a meta get reports about an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemView {
    /// The stored bytes.
    pub(crate) value: Bytes,
    /// memcached's client flags.
    pub(crate) client_flags: u32,
    /// Whole seconds until the item expires; `None` if it never does.
    pub(crate) ttl_remaining: Option<u64>,
    /// The item's CAS value.
    pub cas: u64,
    /// The store instance that answered (see [`Cas`]).
    pub instance: u64,
    /// Whether the item was invalidated (`X`).
    pub(crate) stale: bool,
    /// The recache election, if this read took part in one.
    pub(crate) win: Option<Win>,
    /// memcached reports the item hot: read before, and last read less than a second ago
    /// (`h1 l0`, asked with [`GetOpts::hot`]; never for the embedded store).
    pub(crate) hot: bool,
}

/// Options of a meta get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GetOpts {
    /// `R<n>`: win the recache if fewer than `n` seconds remain.
    pub(crate) recache_below: Option<u64>,
    /// `N<n>`: on a miss, create an empty placeholder living `n` seconds and win it.
    pub vivify_for: Option<u64>,
    /// `T<n>`: give the item a new lifetime.
    pub touch: Option<Expiry>,
    /// Leave out the value (no `v` flag): a peek at flags, ttl and election state.
    pub(crate) no_value: bool,
    /// Ask whether the item is hot (`h`, `l`: read before, seconds since the last read).
    pub(crate) hot: bool,
}

/// How a write treats an existing item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// Store whatever is there (`ms … MS`).
    Set,
    /// Store only if nothing is there (`ms … ME`).
    Add,
}

/// A write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    /// The bytes to store.
    pub(crate) value: Bytes,
    /// memcached's client flags.
    pub client_flags: u32,
    /// How long the store keeps the item (the hard ttl).
    pub ttl: Expiry,
    /// Set or add.
    pub mode: WriteMode,
    /// `C<cas>`: store only if the item exists with this CAS value, in that store instance.
    pub cas: Option<Cas>,
}

/// The result of a write, as memcached reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteStatus {
    /// `HD`: stored.
    Stored,
    /// `NS`: not stored (add on an existing item).
    NotStored,
    /// `EX`: the CAS value did not match.
    Exists,
    /// `NF`: a CAS write on a missing item.
    NotFound,
}

/// An item in the embedded store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// The stored bytes.
    pub(crate) value: Bytes,
    /// memcached's client flags.
    pub(crate) client_flags: u32,
    /// When the item expires (milliseconds); `None` = never.
    pub(crate) expires_at: Option<u64>,
    /// The CAS value.
    pub(crate) cas: u64,
    /// Invalidated (`X`).
    pub(crate) stale: bool,
    /// A win token was handed out (`W` sent; later readers get `Z`).
    pub(crate) token_sent: bool,
}

/// What an operation does to the stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Leave it as it is.
    Keep,
    /// Replace it (or create it).
    Put(Item),
    /// Remove it.
    Remove,
}

const MS_PER_S: u64 = 1000;

impl Item {
    /// Whether the item is gone at `now`.
    pub(crate) fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Whole seconds left, rounded up (memcached's `t`).
    pub(crate) fn ttl_remaining(&self, now: u64) -> Option<u64> {
        self.expires_at
            .map(|at| at.saturating_sub(now).div_ceil(MS_PER_S))
    }

    fn view(&self, now: u64, win: Option<Win>) -> ItemView {
        ItemView {
            value: self.value.clone(),
            client_flags: self.client_flags,
            ttl_remaining: self.ttl_remaining(now),
            cas: self.cas,
            instance: 0,
            stale: self.stale,
            win,
            hot: false,
        }
    }
}

fn expiry(now: u64, ttl_seconds: u64) -> Option<u64> {
    Some(now.saturating_add(ttl_seconds.saturating_mul(MS_PER_S)))
}

fn lifetime(now: u64, ttl: Expiry) -> Option<u64> {
    match ttl {
        Expiry::Never => None,
        Expiry::After(seconds) => expiry(now, seconds.max(1)),
    }
}

fn live(item: Option<&Item>, now: u64) -> Option<&Item> {
    item.filter(|it| !it.expired(now))
}

/// `mg`: reads an item and runs the recache election. `new_cas` is used if a placeholder is
/// created.
pub(crate) fn get(
    item: Option<&Item>,
    opts: GetOpts,
    now: u64,
    new_cas: u64,
) -> (Option<ItemView>, Change) {
    let Some(it) = live(item, now) else {
        return match opts.vivify_for {
            Some(n) => {
                let placeholder = Item {
                    value: Bytes::new(),
                    client_flags: 0,
                    expires_at: expiry(now, n),
                    cas: new_cas,
                    stale: false,
                    token_sent: true,
                };
                (
                    Some(placeholder.view(now, Some(Win::Won))),
                    Change::Put(placeholder),
                )
            }
            None => (
                None,
                if item.is_some() {
                    Change::Remove
                } else {
                    Change::Keep
                },
            ),
        };
    };
    let below = opts
        .recache_below
        .is_some_and(|n| it.ttl_remaining(now).is_some_and(|t| t < n));
    let mut next = it.clone();
    if let Some(ttl) = opts.touch {
        next.expires_at = lifetime(now, ttl);
    }
    let win = if (below || it.stale) && !it.token_sent {
        next.token_sent = true;
        Some(Win::Won)
    } else if it.token_sent {
        Some(Win::Lost)
    } else {
        None
    };
    let mut view = next.view(now, win);
    if opts.no_value {
        view.value = Bytes::new();
    }
    let change = if next == *it {
        Change::Keep
    } else {
        Change::Put(next)
    };
    (Some(view), change)
}

/// `md … I T<n> [C<cas>]`: marks an item stale (the next reader wins the refresh), gives it
/// `stale_ttl` more seconds and a new CAS value; reports whether it did (an item was there, with
/// the CAS value `expect_cas` when one is given).
pub(crate) fn invalidate(
    item: Option<&Item>,
    stale_ttl: u64,
    expect_cas: Option<u64>,
    now: u64,
    new_cas: u64,
) -> (bool, Change) {
    match live(item, now) {
        Some(it) if expect_cas.is_some_and(|cas| cas != it.cas) => (false, Change::Keep),
        Some(it) => {
            let mut next = it.clone();
            next.stale = true;
            next.token_sent = false;
            next.cas = new_cas;
            next.expires_at = expiry(now, stale_ttl);
            (true, Change::Put(next))
        }
        None => (false, Change::Keep),
    }
}

/// The result of an arithmetic operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncrStatus {
    /// The counter's new value.
    Value(u64),
    /// No counter and no initial value (`NF`).
    NotFound,
    /// The item is not a decimal number (`CLIENT_ERROR … non-numeric value`).
    NotNumeric,
}

/// Creation parameters of an arithmetic operation on a missing counter (`N<ttl> J<initial>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Create {
    /// The value the counter starts with (the delta is not applied).
    pub initial: u64,
    /// How long the new counter lives.
    pub ttl: Expiry,
}

/// `ma`: adds `delta` to a decimal counter; increments wrap at 2^64, decrements stop at 0.
pub(crate) fn incr(
    item: Option<&Item>,
    delta: i64,
    create: Option<Create>,
    now: u64,
    new_cas: u64,
) -> (IncrStatus, Change) {
    let Some(it) = live(item, now) else {
        return match create {
            Some(c) => {
                let counter = Item {
                    value: Bytes::from(c.initial.to_string()),
                    client_flags: 0,
                    expires_at: lifetime(now, c.ttl),
                    cas: new_cas,
                    stale: false,
                    token_sent: false,
                };
                (IncrStatus::Value(c.initial), Change::Put(counter))
            }
            None => (IncrStatus::NotFound, Change::Keep),
        };
    };
    let current = std::str::from_utf8(&it.value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());
    let Some(current) = current else {
        return (IncrStatus::NotNumeric, Change::Keep);
    };
    let value = if delta >= 0 {
        current.wrapping_add(delta.unsigned_abs())
    } else {
        current.saturating_sub(delta.unsigned_abs())
    };
    let mut next = it.clone();
    next.value = Bytes::from(value.to_string());
    next.cas = new_cas;
    (IncrStatus::Value(value), Change::Put(next))
}

/// `ms`: stores an item. `new_cas` becomes the item's CAS value when it is stored.
pub(crate) fn set(
    item: Option<&Item>,
    write: &Write,
    now: u64,
    new_cas: u64,
) -> (WriteStatus, Change) {
    let current = live(item, now);
    let status = match (current, write.cas, write.mode) {
        (None, Some(_), _) => WriteStatus::NotFound,
        (Some(it), Some(cas), _) if it.cas != cas.value => WriteStatus::Exists,
        (Some(_), None, WriteMode::Add) => WriteStatus::NotStored,
        _ => WriteStatus::Stored,
    };
    if status != WriteStatus::Stored {
        return (status, Change::Keep);
    }
    let stored = Item {
        value: write.value.clone(),
        client_flags: write.client_flags,
        expires_at: lifetime(now, write.ttl),
        cas: new_cas,
        stale: false,
        token_sent: false,
    };
    (WriteStatus::Stored, Change::Put(stored))
}

/// `md … C<cas>`: removes the item only if it has this CAS value; reports whether it did.
pub(crate) fn delete_if(item: Option<&Item>, cas: u64, now: u64) -> (bool, Change) {
    match live(item, now) {
        Some(it) if it.cas == cas => (true, Change::Remove),
        _ => (false, Change::Keep),
    }
}

/// `md`: removes an item; reports whether one was there.
pub(crate) fn delete(item: Option<&Item>, now: u64) -> (bool, Change) {
    match (live(item, now), item) {
        (Some(_), _) => (true, Change::Remove),
        (None, Some(_)) => (false, Change::Remove),
        (None, None) => (false, Change::Keep),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000;

    fn apply(slot: &mut Option<Item>, change: Change) {
        match change {
            Change::Keep => {}
            Change::Put(it) => *slot = Some(it),
            Change::Remove => *slot = None,
        }
    }

    fn cas(value: u64) -> Cas {
        Cas { instance: 0, value }
    }

    fn write(value: &'static [u8], ttl: u64) -> Write {
        Write {
            value: Bytes::from_static(value),
            client_flags: 0,
            ttl: Expiry::After(ttl),
            mode: WriteMode::Set,
            cas: None,
        }
    }

    #[test]
    fn set_get_expire() {
        let mut slot = None;
        let (st, ch) = set(slot.as_ref(), &write(b"v", 60), T0, 1);
        assert_eq!(st, WriteStatus::Stored);
        apply(&mut slot, ch);
        let (view, _) = get(slot.as_ref(), GetOpts::default(), T0 + 500, 9);
        let view = view.expect("hit");
        assert_eq!(
            (view.value.as_ref(), view.ttl_remaining, view.cas, view.win),
            (&b"v"[..], Some(60), 1, None)
        );
        assert_eq!(
            get(slot.as_ref(), GetOpts::default(), T0 + 59_999, 9)
                .0
                .map(|v| v.ttl_remaining),
            Some(Some(1))
        );
        assert_eq!(
            get(slot.as_ref(), GetOpts::default(), T0 + 60_000, 9).0,
            None
        );
    }

    #[test]
    fn recache_elects_one_winner_until_the_next_set() {
        let mut slot = None;
        apply(&mut slot, set(None, &write(b"v", 20), T0, 1).1);
        let opts = GetOpts {
            recache_below: Some(30),
            ..GetOpts::default()
        };
        let (v, ch) = get(slot.as_ref(), opts, T0, 2);
        assert_eq!(v.map(|v| v.win), Some(Some(Win::Won)));
        apply(&mut slot, ch);
        for _ in 0..3 {
            let (v, ch) = get(slot.as_ref(), opts, T0, 2);
            assert_eq!(v.map(|v| v.win), Some(Some(Win::Lost)));
            assert_eq!(ch, Change::Keep);
            // A plain read also sees that the token was sent.
            assert_eq!(
                get(slot.as_ref(), GetOpts::default(), T0, 2)
                    .0
                    .map(|v| v.win),
                Some(Some(Win::Lost))
            );
        }
        let ch = set(slot.as_ref(), &write(b"w", 60), T0, 3).1;
        apply(&mut slot, ch);
        assert_eq!(get(slot.as_ref(), opts, T0, 4).0.map(|v| v.win), Some(None));
    }

    #[test]
    fn vivify_creates_a_won_placeholder_once() {
        let mut slot = None;
        let opts = GetOpts {
            vivify_for: Some(5),
            ..GetOpts::default()
        };
        let (v, ch) = get(slot.as_ref(), opts, T0, 7);
        let v = v.expect("placeholder");
        assert_eq!((v.value.len(), v.win, v.cas), (0, Some(Win::Won), 7));
        apply(&mut slot, ch);
        assert_eq!(
            get(slot.as_ref(), opts, T0 + 10, 8).0.map(|v| v.win),
            Some(Some(Win::Lost))
        );
        // Placeholder expires after its fill time; the next caller wins again.
        let (v, _) = get(slot.as_ref(), opts, T0 + 5_000, 9);
        assert_eq!(v.map(|v| (v.win, v.cas)), Some((Some(Win::Won), 9)));
    }

    #[test]
    fn cas_and_add() {
        let mut slot = None;
        let mut w = write(b"v", 60);
        w.cas = Some(cas(5));
        assert_eq!(set(slot.as_ref(), &w, T0, 1).0, WriteStatus::NotFound);
        let ch = set(slot.as_ref(), &write(b"v", 60), T0, 5).1;
        apply(&mut slot, ch);
        w.cas = Some(cas(4));
        assert_eq!(set(slot.as_ref(), &w, T0, 6).0, WriteStatus::Exists);
        w.cas = Some(cas(5));
        assert_eq!(set(slot.as_ref(), &w, T0, 6).0, WriteStatus::Stored);
        let mut add = write(b"a", 60);
        add.mode = WriteMode::Add;
        assert_eq!(set(slot.as_ref(), &add, T0, 7).0, WriteStatus::NotStored);
        assert_eq!(
            set(slot.as_ref(), &add, T0 + 60_000, 7).0,
            WriteStatus::Stored
        );
    }

    #[test]
    fn invalidate_reopens_the_election_and_bumps_cas() {
        let mut slot = None;
        apply(&mut slot, set(None, &write(b"v", 100), T0, 1).1);
        let (found, ch) = invalidate(slot.as_ref(), 30, None, T0, 2);
        assert!(found);
        apply(&mut slot, ch);
        // Any read (even a peek without the value) of an invalidated item takes part in the
        // election, as in memcached.
        let peek = GetOpts {
            no_value: true,
            ..GetOpts::default()
        };
        let (v, ch) = get(slot.as_ref(), peek, T0, 3);
        let v = v.expect("present");
        assert_eq!(
            (v.stale, v.win, v.cas, v.ttl_remaining, v.value.len()),
            (true, Some(Win::Won), 2, Some(30), 0)
        );
        apply(&mut slot, ch);
        assert_eq!(
            get(slot.as_ref(), GetOpts::default(), T0, 3)
                .0
                .map(|v| v.win),
            Some(Some(Win::Lost))
        );
        // A second invalidation opens a new election.
        let ch = invalidate(slot.as_ref(), 50, None, T0, 4).1;
        apply(&mut slot, ch);
        assert_eq!(
            get(slot.as_ref(), GetOpts::default(), T0, 5)
                .0
                .map(|v| (v.win, v.cas)),
            Some((Some(Win::Won), 4))
        );
        // A lease from before the invalidation no longer matches.
        let mut late = write(b"late", 100);
        late.cas = Some(cas(2));
        assert_eq!(set(slot.as_ref(), &late, T0, 6).0, WriteStatus::Exists);
        assert_eq!(invalidate(None, 30, None, T0, 7), (false, Change::Keep));
    }

    #[test]
    fn invalidate_with_a_cas_only_matches_that_item() {
        let mut slot = None;
        apply(&mut slot, set(None, &write(b"v", 100), T0, 1).1);
        assert_eq!(
            invalidate(slot.as_ref(), 30, Some(9), T0, 2),
            (false, Change::Keep)
        );
        let (done, ch) = invalidate(slot.as_ref(), 30, Some(1), T0, 2);
        assert!(done);
        apply(&mut slot, ch);
        // The CAS value moved on: the same expectation no longer matches.
        assert_eq!(
            invalidate(slot.as_ref(), 30, Some(1), T0, 3),
            (false, Change::Keep)
        );
    }

    #[test]
    fn never_expiring_items() {
        let mut slot = None;
        let mut w = write(b"v", 0);
        w.ttl = Expiry::Never;
        apply(&mut slot, set(None, &w, T0, 1).1);
        let far = T0 + 100 * 365 * 24 * 3_600_000;
        let (v, _) = get(slot.as_ref(), GetOpts::default(), far, 2);
        assert_eq!(v.map(|v| v.ttl_remaining), Some(None));
        // A touch can give it a lifetime again, and take it away.
        let touch = |ttl| GetOpts {
            touch: Some(ttl),
            ..GetOpts::default()
        };
        let (v, ch) = get(slot.as_ref(), touch(Expiry::After(5)), T0, 3);
        assert_eq!(v.map(|v| v.ttl_remaining), Some(Some(5)));
        apply(&mut slot, ch);
        let (_, ch) = get(slot.as_ref(), touch(Expiry::Never), T0 + 1_000, 4);
        apply(&mut slot, ch);
        assert_eq!(slot.as_ref().map(|it| it.expires_at), Some(None));
        let (st, ch) = incr(
            None,
            1,
            Some(Create {
                initial: 3,
                ttl: Expiry::Never,
            }),
            T0,
            5,
        );
        assert_eq!(st, IncrStatus::Value(3));
        let Change::Put(counter) = ch else {
            panic!("counter created")
        };
        assert_eq!(counter.expires_at, None);
    }

    #[test]
    fn touch_sets_a_new_ttl() {
        let mut slot = None;
        apply(&mut slot, set(None, &write(b"v", 10), T0, 1).1);
        let (v, ch) = get(
            slot.as_ref(),
            GetOpts {
                touch: Some(Expiry::After(80)),
                no_value: true,
                ..GetOpts::default()
            },
            T0 + 1_000,
            2,
        );
        assert_eq!(v.map(|v| v.ttl_remaining), Some(Some(80)));
        apply(&mut slot, ch);
        assert_eq!(
            slot.as_ref().map(|it| it.expires_at),
            Some(Some(T0 + 81_000))
        );
    }

    #[test]
    fn counters() {
        let mut slot = None;
        assert_eq!(
            incr(None, 1, None, T0, 1),
            (IncrStatus::NotFound, Change::Keep)
        );
        let (st, ch) = incr(
            None,
            3,
            Some(Create {
                initial: 5,
                ttl: Expiry::After(60),
            }),
            T0,
            1,
        );
        assert_eq!(st, IncrStatus::Value(5));
        apply(&mut slot, ch);
        let (st, ch) = incr(slot.as_ref(), 3, None, T0, 2);
        assert_eq!(st, IncrStatus::Value(8));
        apply(&mut slot, ch);
        let (st, ch) = incr(slot.as_ref(), -100, None, T0, 3);
        assert_eq!(st, IncrStatus::Value(0));
        apply(&mut slot, ch);
        let (st, ch) = incr(slot.as_ref(), i64::MIN, None, T0, 4);
        assert_eq!(st, IncrStatus::Value(0));
        apply(&mut slot, ch);
        let max = Item {
            value: Bytes::from(u64::MAX.to_string()),
            ..slot.clone().expect("counter")
        };
        assert_eq!(incr(Some(&max), 2, None, T0, 5).0, IncrStatus::Value(1));
        let text = Item {
            value: Bytes::from_static(b"\0\0\0\0abc"),
            ..max
        };
        assert_eq!(
            incr(Some(&text), 1, None, T0, 6),
            (IncrStatus::NotNumeric, Change::Keep)
        );
    }

    #[test]
    fn a_conditional_delete_removes_only_the_item_it_names() {
        let mut slot = None;
        apply(&mut slot, set(None, &write(b"v", 60), 0, 7).1);
        assert_eq!(delete_if(slot.as_ref(), 6, 1), (false, Change::Keep));
        let (deleted, change) = delete_if(slot.as_ref(), 7, 1);
        assert!(deleted);
        apply(&mut slot, change);
        assert!(slot.is_none());
        assert_eq!(delete_if(None, 7, 1), (false, Change::Keep));
    }

    #[test]
    fn delete_reports_presence() {
        let mut slot = None;
        assert_eq!(delete(slot.as_ref(), T0), (false, Change::Keep));
        apply(&mut slot, set(None, &write(b"v", 1), T0, 1).1);
        assert_eq!(delete(slot.as_ref(), T0), (true, Change::Remove));
        assert_eq!(delete(slot.as_ref(), T0 + 1_000), (false, Change::Remove));
    }
}
