//! Table tests that report every failing case by name: one failure does not hide the rest.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;

/// The outcome of the cases run so far.
#[derive(Default)]
pub struct Cases {
    run: usize,
    failures: Vec<String>,
}

impl Cases {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one case; a panic in it is recorded under `name`, and the next case runs.
    pub async fn run(&mut self, name: &str, case: impl Future<Output = ()>) {
        self.run += 1;
        if let Err(panic) = AssertUnwindSafe(case).catch_unwind().await {
            self.failures.push(format!("{name}: {}", message(&*panic)));
        }
    }

    /// Records one checked case: `Err` is its failure.
    pub fn check(&mut self, name: &str, result: Result<(), String>) {
        self.run += 1;
        if let Err(why) = result {
            self.failures.push(format!("{name}: {why}"));
        }
    }

    /// Fails, naming every failed case, if any did.
    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed:\n{}",
            self.failures.len(),
            self.run,
            self.failures.join("\n")
        );
    }
}

fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned())
}
