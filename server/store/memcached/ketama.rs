//! Ketama consistent hashing, as libmemcached and twemproxy do it: each server gets points on a
//! 32-bit ring in proportion to its weight (160 per server on average, four per MD5 digest of
//! `"<host:port>-<n>"`), and a key belongs to the first point at or after the hash of the key.
//! Adding or removing one of N servers moves about 1/N of the keys.

use md5::{Digest, Md5};

/// Points per server at equal weights.
const POINTS_PER_SERVER: usize = 160;
/// Points produced by one MD5 digest.
const POINTS_PER_HASH: usize = 4;

/// The ring.
#[derive(Debug, Clone)]
pub(crate) struct KetamaRing {
    /// `(point, server index)`, sorted by point.
    points: Vec<(u32, usize)>,
}

fn point(digest: &[u8], n: usize) -> u32 {
    u32::from_le_bytes([
        digest[n * 4],
        digest[n * 4 + 1],
        digest[n * 4 + 2],
        digest[n * 4 + 3],
    ])
}

/// The ketama hash of a key: the first four bytes of its MD5, little-endian.
pub(crate) fn ketama_hash(key: &[u8]) -> u32 {
    point(&Md5::digest(key), 0)
}

impl KetamaRing {
    /// Builds the ring for `(name, weight)` servers. Names are `host:port`.
    pub(crate) fn new<'a>(servers: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        let servers: Vec<(&str, u32)> = servers.into_iter().collect();
        let total_weight: f64 = servers.iter().map(|(_, w)| f64::from(*w)).sum();
        let count = servers.len() as f64;
        let mut points = Vec::with_capacity(servers.len() * POINTS_PER_SERVER);
        for (index, (name, weight)) in servers.iter().enumerate() {
            let share = f64::from(*weight) / total_weight;
            // The small epsilon matches libmemcached's rounding of exact shares.
            let server_points = (share * POINTS_PER_SERVER as f64 * count + 1e-10).floor() as usize;
            for hash_no in 0..server_points / POINTS_PER_HASH {
                let digest = Md5::digest(format!("{name}-{hash_no}").as_bytes());
                for n in 0..POINTS_PER_HASH {
                    points.push((point(&digest, n), index));
                }
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The index of the server owning `key`; `None` for an empty ring.
    pub(crate) fn server_for(&self, key: &[u8]) -> Option<usize> {
        self.server_for_where(key, |_| true)
    }

    /// The first server at or after `key`'s point that `accept`s; `None` if none does. With
    /// servers left out, their keys spread over the others as if they had been removed from
    /// the ring, and every other key stays where it is.
    pub(crate) fn server_for_where(
        &self,
        key: &[u8],
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let hash = ketama_hash(key);
        let at = self.points.partition_point(|(p, _)| *p < hash);
        let (after, before) = self.points.split_at(at);
        before
            .iter()
            .chain(after)
            .map(|(_, server)| *server)
            .find(|s| accept(*s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> impl Iterator<Item = Vec<u8>> {
        (0..20_000).map(|i| format!("ns:v1:user:{i}").into_bytes())
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:11211", i + 1)).collect()
    }

    #[test]
    fn empty_ring_has_no_owner() {
        assert_eq!(KetamaRing::new(std::iter::empty()).server_for(b"k"), None);
    }

    #[test]
    fn adding_a_fifth_node_moves_about_a_fifth_of_the_keys() {
        let four = names(4);
        let five = names(5);
        let before = KetamaRing::new(four.iter().map(|n| (n.as_str(), 1)));
        let after = KetamaRing::new(five.iter().map(|n| (n.as_str(), 1)));
        let mut moved = 0;
        let total = keys().count();
        for key in keys() {
            let (a, b) = (before.server_for(&key), after.server_for(&key));
            if a != b {
                moved += 1;
                // Keys only ever move to the new node.
                assert_eq!(b, Some(4));
            }
        }
        let share = moved as f64 / total as f64;
        assert!(
            (0.14..=0.26).contains(&share),
            "moved {share:.3} of keys, expected about 0.2"
        );
    }

    #[test]
    fn leaving_a_server_out_is_removing_it() {
        let n = names(4);
        let full = KetamaRing::new(n.iter().map(|n| (n.as_str(), 1)));
        let three = KetamaRing::new(n[..3].iter().map(|n| (n.as_str(), 1)));
        for key in keys() {
            let skipped = full.server_for_where(&key, |s| s != 3);
            assert_eq!(skipped, three.server_for(&key));
            if full.server_for(&key) != Some(3) {
                assert_eq!(skipped, full.server_for(&key), "other keys stay put");
            }
        }
        assert_eq!(full.server_for_where(b"k", |_| false), None);
    }

    #[test]
    fn weights_shift_load() {
        let n = names(3);
        let ring = KetamaRing::new([(n[0].as_str(), 1), (n[1].as_str(), 1), (n[2].as_str(), 2)]);
        let mut counts = [0usize; 3];
        for key in keys() {
            counts[ring.server_for(&key).expect("non-empty")] += 1;
        }
        let total = keys().count() as f64;
        let heavy = counts[2] as f64 / total;
        assert!(
            (0.40..=0.60).contains(&heavy),
            "weight-2 node got {heavy:.3}, counts {counts:?}"
        );
        for c in &counts[..2] {
            let share = *c as f64 / total;
            assert!(
                (0.17..=0.33).contains(&share),
                "weight-1 node got {share:.3}, counts {counts:?}"
            );
        }
    }

    #[test]
    fn spread_is_roughly_even() {
        let n = names(3);
        let ring = KetamaRing::new(n.iter().map(|n| (n.as_str(), 1)));
        let mut counts = [0usize; 3];
        for key in keys() {
            counts[ring.server_for(&key).expect("non-empty")] += 1;
        }
        for c in counts {
            let share = c as f64 / keys().count() as f64;
            assert!((0.23..=0.43).contains(&share), "counts {counts:?}");
        }
    }
}
