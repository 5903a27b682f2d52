//! Memory budgets of what the server reads back from its backend.
//!
//! - [`CallBudget`]: what one call can take of values (a `GetMany` answer must fit in one
//!   gRPC message): values beyond it are refused one by one (`RESOURCE_EXHAUSTED` for that key)
//!   and, on memcached, skipped as they arrive instead of being buffered.
//! - [`ReplyBudget`]: what every call together may hold of values read from memcached and not
//!   yet sent (`server.max_buffered_reply_bytes`). A share is held by the value's bytes
//!   themselves and given back when the last reference to them is dropped (after the answer is
//!   encoded).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What one call can still take of values, shared by the batches of the call.
#[derive(Debug)]
pub(crate) struct CallBudget {
    left: AtomicUsize,
}

impl CallBudget {
    /// A budget of `bytes`.
    pub(crate) fn new(bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            left: AtomicUsize::new(bytes),
        })
    }

    /// Takes `n` bytes if that many are left.
    pub(crate) fn take(&self, n: usize) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    /// Gives back `n` bytes taken and not used.
    pub(crate) fn give_back(&self, n: usize) {
        self.left.fetch_add(n, Ordering::AcqRel);
    }

    /// Bytes left.
    #[cfg(test)]
    pub(crate) fn left(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }
}

/// The server-wide budget of reply values held at once; cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct ReplyBudget {
    held: Arc<AtomicUsize>,
    limit: usize,
}

/// A share of a [`ReplyBudget`], given back on drop.
#[derive(Debug)]
pub(crate) struct ReplyShare {
    held: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for ReplyShare {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl ReplyBudget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            held: Arc::default(),
            limit,
        }
    }

    /// A share of `n` bytes, if the budget has room.
    pub(crate) fn take(&self, n: usize) -> Option<ReplyShare> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&total| total <= self.limit)
            })
            .ok()
            .map(|_| ReplyShare {
                held: self.held.clone(),
                bytes: n,
            })
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_budget_is_never_overdrawn() {
        let budget = CallBudget::new(10);
        assert!(budget.take(6));
        assert!(!budget.take(5));
        assert!(budget.take(4));
        assert_eq!(budget.left(), 0);
        budget.give_back(3);
        assert!(budget.take(3));
        assert!(!budget.take(1));
    }

    #[test]
    fn reply_shares_are_given_back_when_dropped() {
        let budget = ReplyBudget::new(100);
        let a = budget.take(60).expect("room");
        assert!(budget.take(41).is_none());
        let b = budget.take(40).expect("room");
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        drop(b);
        assert_eq!(budget.held(), 0);
    }
}
