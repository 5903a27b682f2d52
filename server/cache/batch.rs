//! Batched calls (`GetMany`, `SetMany`, `DeleteMany`): one answer per item, in order, and a
//! bad item fails only itself.

use super::CacheError;

/// A batched call split in two: the items that passed validation (with their positions), and
/// one answer slot per item, already holding the error of each item that did not. One bad item
/// fails only itself.
pub(super) struct Batch<P, T> {
    slots: Vec<Option<Result<T, CacheError>>>,
    valid: Vec<(usize, P)>,
}

impl<P, T> Batch<P, T> {
    pub(super) fn new<I>(
        items: impl IntoIterator<Item = I>,
        mut prepare: impl FnMut(I) -> Result<P, CacheError>,
    ) -> Self {
        let mut batch = Self {
            slots: Vec::new(),
            valid: Vec::new(),
        };
        for item in items {
            match prepare(item) {
                Ok(prepared) => {
                    batch.valid.push((batch.slots.len(), prepared));
                    batch.slots.push(None);
                }
                Err(e) => batch.slots.push(Some(Err(e))),
            }
        }
        batch
    }

    /// The prepared items, in order.
    pub(super) fn prepared(&self) -> impl Iterator<Item = &P> {
        self.valid.iter().map(|(_, p)| p)
    }

    /// Answers the valid items, in order.
    pub(super) fn answer(
        mut self,
        answers: impl IntoIterator<Item = Result<T, CacheError>>,
    ) -> Vec<Result<T, CacheError>> {
        for ((pos, _), answer) in self.valid.iter().zip(answers) {
            self.slots[*pos] = Some(answer);
        }
        self.slots
            .into_iter()
            .map(|slot| slot.unwrap_or_else(|| unreachable!("every valid item gets an answer")))
            .collect()
    }

    /// Answers every valid item the same way (debug modes).
    pub(super) fn answer_all(
        self,
        answer: impl Fn() -> Result<T, CacheError>,
    ) -> Vec<Result<T, CacheError>> {
        let answers: Vec<_> = self.valid.iter().map(|_| answer()).collect();
        self.answer(answers)
    }
}
