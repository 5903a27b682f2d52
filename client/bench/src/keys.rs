//! Key names and their distribution. Keys are `<prefix><index>` with a zero-padded index, the
//! same bytes for mintcache and for memcached direct, so both see the same key lengths. The
//! first `filled` indices are stored before the run: reads draw uniformly from every index (so
//! the expected share of hits is `filled / len`), writes only from the filled ones, so writing
//! during the run does not raise the hit ratio.

use fastrand::Rng;

/// Digits of the zero-padded index; larger indices simply use more digits.
const INDEX_WIDTH: usize = 8;

/// The keys of a run.
#[derive(Clone, Debug)]
pub(crate) struct KeySpace {
    prefix: String,
    len: u64,
    filled: u64,
}

impl KeySpace {
    /// `len` keys, of which the first `round(len * hit_ratio)` are stored before the run.
    pub(crate) fn new(prefix: &str, len: u64, hit_ratio: f64) -> Self {
        let len = len.max(1);
        // The product is at most `len` (hit_ratio <= 1), so the cast back cannot overflow.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let filled = ((len as f64) * hit_ratio.clamp(0.0, 1.0)).round() as u64;
        Self {
            prefix: prefix.to_owned(),
            len,
            filled: filled.min(len),
        }
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Number of keys stored before the run (indices `0..filled`).
    pub(crate) fn filled(&self) -> u64 {
        self.filled
    }

    /// The index of a key to read: any key.
    pub(crate) fn read_index(&self, rng: &mut Rng) -> u64 {
        rng.u64(0..self.len)
    }

    /// The index of a key to write: a stored one (any key when none is stored, so that a run
    /// that starts cold warms up like a real cache).
    pub(crate) fn write_index(&self, rng: &mut Rng) -> u64 {
        if self.filled == 0 {
            rng.u64(0..self.len)
        } else {
            rng.u64(0..self.filled)
        }
    }

    /// Draws the indices of one call of `k` keys into `out`: read indices for a read, write
    /// indices for a write. The keys of a batch are distinct when the range holds at least
    /// twice as many keys (so every target sees the same number of distinct keys per batch);
    /// in a smaller range they are drawn with repetition.
    pub(crate) fn draw(&self, read: bool, k: usize, rng: &mut Rng, out: &mut Vec<u64>) {
        out.clear();
        if k == 1 {
            out.push(if read {
                self.read_index(rng)
            } else {
                self.write_index(rng)
            });
            return;
        }
        let range = if read || self.filled == 0 {
            self.len
        } else {
            self.filled
        };
        let distinct = range / 2 >= k as u64;
        loop {
            while out.len() < k {
                out.push(rng.u64(0..range));
            }
            if !distinct {
                return;
            }
            out.sort_unstable();
            out.dedup();
            if out.len() == k {
                return;
            }
        }
    }

    /// Appends the key of `index` to `buf`.
    pub(crate) fn write_key(&self, index: u64, buf: &mut Vec<u8>) {
        use std::io::Write as _;
        buf.extend_from_slice(self.prefix.as_bytes());
        // Writing into a Vec cannot fail.
        let _ = write!(buf, "{index:0INDEX_WIDTH$}");
    }

    /// The key of `index`.
    pub(crate) fn key(&self, index: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + INDEX_WIDTH);
        self.write_key(index, &mut key);
        key
    }
}

/// The value written by the benchmark: `size` printable bytes (the content does not matter to
/// the cache; printable bytes keep protocol traces readable).
pub(crate) fn value(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_zero_padded_indices() {
        let keys = KeySpace::new("bench:", 10, 1.0);
        assert_eq!(keys.key(7), b"bench:00000007");
        assert_eq!(keys.key(123_456_789), b"bench:123456789");
        let mut buf = b"x ".to_vec();
        keys.write_key(42, &mut buf);
        assert_eq!(buf, b"x bench:00000042");
    }

    #[test]
    fn filled_share_is_rounded_and_bounded() {
        assert_eq!(KeySpace::new("k", 10_000, 1.0).filled(), 10_000);
        assert_eq!(KeySpace::new("k", 10_000, 0.0).filled(), 0);
        assert_eq!(KeySpace::new("k", 10, 0.25).filled(), 3);
        assert_eq!(KeySpace::new("k", 3, 0.5).filled(), 2);
        assert_eq!(KeySpace::new("k", 5, 7.0).filled(), 5);
        assert_eq!(KeySpace::new("k", 0, 1.0).len(), 1);
    }

    #[test]
    fn writes_stay_in_the_filled_keys_and_reads_cover_all() {
        let keys = KeySpace::new("k", 100, 0.3);
        let mut rng = Rng::with_seed(7);
        let mut seen = [false; 100];
        for _ in 0..20_000 {
            let w = keys.write_index(&mut rng);
            assert!(w < 30, "write index {w} outside the filled keys");
            let r = keys.read_index(&mut rng);
            assert!(r < 100);
            seen[usize::try_from(r).expect("small")] = true;
        }
        assert!(seen.iter().all(|s| *s), "every key is read at some point");
    }

    #[test]
    fn cold_key_spaces_write_anywhere() {
        let keys = KeySpace::new("k", 50, 0.0);
        let mut rng = Rng::with_seed(3);
        let max = (0..5_000).map(|_| keys.write_index(&mut rng)).max();
        assert!(max.is_some_and(|m| (30..50).contains(&m)), "{max:?}");
    }

    #[test]
    fn read_hit_share_follows_the_hit_ratio() {
        for ratio in [0.1, 0.5, 0.9] {
            let keys = KeySpace::new("k", 10_000, ratio);
            let mut rng = Rng::with_seed(11);
            let draws = 100_000;
            let hits = (0..draws)
                .filter(|_| keys.read_index(&mut rng) < keys.filled())
                .count();
            let share = hits as f64 / f64::from(draws);
            assert!(
                (share - ratio).abs() < 0.01,
                "hit ratio {ratio}: {share} of reads on stored keys"
            );
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let keys = KeySpace::new("k", 1_000_000, 1.0);
        let draw = |seed| {
            let mut rng = Rng::with_seed(seed);
            (0..100)
                .map(|_| keys.read_index(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn batches_are_distinct_keys_in_range() {
        let keys = KeySpace::new("k", 1_000, 0.5);
        let mut rng = Rng::with_seed(9);
        let mut out = Vec::new();
        for read in [true, false] {
            for _ in 0..200 {
                keys.draw(read, 100, &mut rng, &mut out);
                assert_eq!(out.len(), 100);
                let mut unique = out.clone();
                unique.sort_unstable();
                unique.dedup();
                assert_eq!(unique.len(), 100, "distinct keys in a batch");
                let bound = if read { 1_000 } else { 500 };
                assert!(out.iter().all(|i| *i < bound), "read {read}: {out:?}");
            }
        }
        keys.draw(false, 1, &mut rng, &mut out);
        assert!(out.len() == 1 && out[0] < 500);
    }

    #[test]
    fn small_key_spaces_repeat_keys_in_a_batch() {
        let keys = KeySpace::new("k", 10, 1.0);
        let mut rng = Rng::with_seed(1);
        let mut out = Vec::new();
        keys.draw(true, 100, &mut rng, &mut out);
        assert_eq!(out.len(), 100);
        assert!(out.iter().all(|i| *i < 10));
    }

    #[test]
    fn values_have_the_requested_size() {
        assert!(value(0).is_empty());
        let v = value(64);
        assert_eq!(v.len(), 64);
        assert!(v.iter().all(u8::is_ascii_lowercase));
    }
}
