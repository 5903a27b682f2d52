//! Ketama consistent hashing exactly as twemproxy does it (`distribution: ketama`, `hash: md5`;
//! libmemcached's ketama names points the same way): each server gets points on a 32-bit ring in
//! proportion to its weight (160 per server on average, four per MD5 digest of
//! `"<name>-<n>"`), and a key belongs to the first point at or after the key's hash, wrapping
//! past the top. Adding or removing one of N servers moves about 1/N of the keys.
//!
//! Pinned to twemproxy's output: `ketama_reference.txt` holds where nutcracker put 1,000 keys
//! over many server sets (written by `scripts/ketama-reference.py` from real nutcracker and
//! memcached processes), and the tests below compare every row. The details that matter, from
//! twemproxy's `nc_conf.c` and `nc_ketama.c`:
//! - a server's point name is `host:port` as written, but only `host` when the port is 11211
//!   (libmemcached's default); an IPv6 host is named without its brackets;
//! - a server's points are `floorf(share * 160 / 4 * servers + 1e-10) * 4`, computed in
//!   single precision: with weights 1,6,6,6,6 that is 28 and 188 points, not 32 and 192;
//! - the ring holds only the live servers: twemproxy rebuilds it without the ejected ones, and
//!   their weights leave the total ([`KetamaRing::new_over`]);
//! - a key goes to the first point at or above its hash, and past the last point to the first.
//!
//! One case is left open: twemproxy sorts the points with `qsort`, which does not say where
//! equal points of two servers end up (glibc's merge sort keeps configuration order, as this
//! ring does). That takes a 32-bit collision between two servers' points.

use md5::{Digest, Md5};

/// Points per server at equal weights.
const POINTS_PER_SERVER: f32 = 160.0;
/// Points produced by one MD5 digest.
const POINTS_PER_HASH: u32 = 4;
/// The port twemproxy (after libmemcached) leaves out of point names.
const DEFAULT_PORT: &str = "11211";

/// The ring.
#[derive(Debug, Clone)]
pub(crate) struct KetamaRing {
    /// `(point, server index)`, sorted by point, then by index.
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

/// The name a server's points are derived from, as twemproxy forms it from a server written
/// `host:port`: the port is left out when it is 11211, and an IPv6 host loses its brackets
/// (twemproxy's configuration writes IPv6 addresses without them).
fn point_name(addr: &str) -> String {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return addr.to_owned();
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if port == DEFAULT_PORT {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    }
}

/// The number of points of a server of `weight` among `live` servers weighing `total`, with
/// twemproxy's arithmetic: single-precision floats, the epsilon added in double precision, and
/// a multiple of four.
fn points_for(weight: u32, total: u64, live: usize) -> u32 {
    let share = weight as f32 / total as f32;
    let hashes = (f64::from(share * POINTS_PER_SERVER / POINTS_PER_HASH as f32 * live as f32)
        + 0.000_000_000_1) as f32;
    // A float-to-int `as` saturates, and `hashes` is finite and non-negative here.
    hashes.floor() as u32 * POINTS_PER_HASH
}

impl KetamaRing {
    /// Builds the ring for `(name, weight)` servers. Names are `host:port`, as the
    /// configuration writes them.
    pub(crate) fn new<'a>(servers: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        Self::new_over(servers, |_| true)
    }

    /// Builds the ring over the servers that are `live`, as twemproxy rebuilds its ring when it
    /// ejects servers: only live servers have points, and their shares are of the live weight
    /// alone. Servers keep their indices in `servers`. With no live server the ring is empty.
    pub(crate) fn new_over<'a>(
        servers: impl IntoIterator<Item = (&'a str, u32)>,
        live: impl Fn(usize) -> bool,
    ) -> Self {
        let servers: Vec<(usize, &str, u32)> = servers
            .into_iter()
            .enumerate()
            .filter(|(index, _)| live(*index))
            .map(|(index, (name, weight))| (index, name, weight))
            .collect();
        let total: u64 = servers.iter().map(|(_, _, w)| u64::from(*w)).sum();
        let mut points = Vec::new();
        for (index, addr, weight) in &servers {
            let name = point_name(addr);
            for hash_no in 0..points_for(*weight, total, servers.len()) / POINTS_PER_HASH {
                let digest = Md5::digest(format!("{name}-{hash_no}").as_bytes());
                for n in 0..POINTS_PER_HASH as usize {
                    points.push((point(&digest, n), *index));
                }
            }
        }
        // Equal points of two servers in configuration order (see the module comment).
        points.sort_unstable();
        Self { points }
    }

    /// The index of the server owning `key`; `None` for an empty ring.
    pub(crate) fn server_for(&self, key: &[u8]) -> Option<usize> {
        self.server_for_where(key, |_| true)
    }

    /// The first server at or after `key`'s point that `accept`s; `None` if none does. Every
    /// key of an accepted owner stays where it is, and the keys of servers left out go to the
    /// next accepted point. That equals a ring rebuilt without those servers only at equal
    /// weights (and not always then, as shares are rounded); [`KetamaRing::new_over`] is the
    /// rebuilt ring, as twemproxy ejects.
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

    /// One server set of the reference table and where twemproxy put each key.
    struct Case {
        name: String,
        /// `(host:port, weight)` in configuration order.
        servers: Vec<(String, u32)>,
        /// `(key, index of the server holding it)`.
        owners: Vec<(String, usize)>,
    }

    /// The table written by `scripts/ketama-reference.py` from real nutcracker and memcached
    /// processes.
    fn reference() -> Vec<Case> {
        let text = include_str!("ketama_reference.txt");
        let mut cases = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut fields = line.split(' ');
            let first = fields.next().expect("a field");
            if first == "case" {
                let name = fields.next().expect("a case name").to_owned();
                let servers = fields
                    .map(|s| {
                        let (addr, weight) = s.rsplit_once(':').expect("host:port:weight");
                        (addr.to_owned(), weight.parse().expect("a weight"))
                    })
                    .collect();
                cases.push(Case {
                    name,
                    servers,
                    owners: Vec::new(),
                });
            } else {
                let owners: Vec<usize> = fields.map(|f| f.parse().expect("an index")).collect();
                assert_eq!(owners.len(), cases.len(), "one owner per case: {line}");
                for (case, owner) in cases.iter_mut().zip(owners) {
                    case.owners.push((first.to_owned(), owner));
                }
            }
        }
        cases
    }

    fn case<'c>(cases: &'c [Case], name: &str) -> &'c Case {
        cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name} in the reference table"))
    }

    /// Keys of `case` the ring places elsewhere than twemproxy, with their places.
    fn disagreements(
        case: &Case,
        ring: &KetamaRing,
        index: impl Fn(usize) -> usize,
    ) -> Vec<String> {
        case.owners
            .iter()
            .filter_map(|(key, owner)| {
                let ours = ring.server_for(key.as_bytes());
                (ours != Some(index(*owner)))
                    .then(|| format!("{key}: twemproxy {}, ring {ours:?}", index(*owner)))
            })
            .collect()
    }

    #[test]
    fn the_reference_table_covers_what_it_must() {
        let cases = reference();
        assert_eq!(cases.len(), 18);
        for case in &cases {
            assert_eq!(case.owners.len(), 1000, "{}", case.name);
            // Every server of a set holds some keys, so every index is checked.
            for i in 0..case.servers.len() {
                assert!(
                    case.owners.iter().any(|(_, o)| *o == i),
                    "{}: server {i} holds nothing",
                    case.name
                );
            }
        }
        let all: Vec<&(String, u32)> = cases.iter().flat_map(|c| &c.servers).collect();
        assert!(all.iter().any(|(a, _)| a.ends_with(":11211")));
        assert!(all.iter().any(|(a, _)| !a.ends_with(":11211")));
        assert!(all.iter().any(|(a, _)| a.starts_with("localhost:")));
        assert!(all.iter().any(|(a, _)| a.starts_with('[')));
        assert!(all.iter().any(|(_, w)| *w > 1));
    }

    #[test]
    fn matches_twemproxy_on_every_reference_key() {
        let mut report = Vec::new();
        let mut wrong = 0;
        for case in reference() {
            let ring = KetamaRing::new(case.servers.iter().map(|(a, w)| (a.as_str(), *w)));
            let off = disagreements(&case, &ring, |i| i);
            report.push(format!(
                "{}: {}/{} agree",
                case.name,
                case.owners.len() - off.len(),
                case.owners.len()
            ));
            if let Some(first) = off.first() {
                report.push(format!("  e.g. {first}"));
            }
            wrong += off.len();
        }
        assert_eq!(wrong, 0, "\n{}", report.join("\n"));
    }

    /// Builds the ring of `full` over the servers that are also in `remaining`, and checks it
    /// places every key where twemproxy did with `remaining` alone.
    fn check_rebuilt(cases: &[Case], full: &str, remaining: &str) -> usize {
        let (full, remaining) = (case(cases, full), case(cases, remaining));
        let ring = KetamaRing::new_over(full.servers.iter().map(|(a, w)| (a.as_str(), *w)), |i| {
            remaining.servers.contains(&full.servers[i])
        });
        let original = |j: usize| {
            full.servers
                .iter()
                .position(|s| *s == remaining.servers[j])
                .expect("a remaining server is one of the full set")
        };
        let off = disagreements(remaining, &ring, original);
        assert!(
            off.is_empty(),
            "{} over {}: {} keys placed elsewhere, e.g. {}",
            full.name,
            remaining.name,
            off.len(),
            off[0]
        );
        remaining.owners.len()
    }

    #[test]
    fn new_over_is_twemproxys_ring_of_the_live_servers() {
        let cases = reference();
        let pairs = [
            ("port11211-1-6-6-6-6", "port11211-1-6-6-6-6-without-1"),
            ("ports-1-6-6-6-6", "ports-1-6-6-6-6-without-0"),
            ("ports-1-2-3", "ports-1-2-3-without-1"),
            ("ten-servers-1-to-10", "ten-servers-1-to-10-without-3-7-9"),
            ("twenty-six-equal", "twenty-five-equal"),
        ];
        let checked: usize = pairs
            .iter()
            .map(|(full, remaining)| check_rebuilt(&cases, full, remaining))
            .sum();
        assert_eq!(checked, pairs.len() * 1000);
    }

    #[test]
    fn skipping_servers_is_not_rebuilding_without_them() {
        // Why `new_over` exists: at unequal weights (and at equal weights whenever rounding
        // changes the points per server, 25 servers against 26) the live servers' shares
        // change when others leave, which skipping cannot express.
        let cases = reference();
        for (full, remaining, gone) in [
            ("port11211-1-6-6-6-6", "port11211-1-6-6-6-6-without-1", 1),
            ("twenty-six-equal", "twenty-five-equal", 25),
        ] {
            let (full, remaining) = (case(&cases, full), case(&cases, remaining));
            let ring = KetamaRing::new(full.servers.iter().map(|(a, w)| (a.as_str(), *w)));
            let original = |j: usize| if j < gone { j } else { j + 1 };
            let moved = remaining
                .owners
                .iter()
                .filter(|(k, o)| {
                    ring.server_for_where(k.as_bytes(), |s| s != gone) != Some(original(*o))
                })
                .count();
            assert!(
                moved > 0,
                "{}: skipping placed every key as twemproxy",
                full.name
            );
        }
    }

    #[test]
    fn new_over_no_live_server_is_empty() {
        let ring =
            KetamaRing::new_over([("127.0.0.1:11211", 1), ("127.0.0.2:11211", 1)], |_| false);
        assert_eq!(ring.server_for(b"k"), None);
        let one =
            KetamaRing::new_over([("127.0.0.1:11211", 1), ("127.0.0.2:11211", 5)], |i| i == 1);
        assert!(keys().all(|k| one.server_for(&k) == Some(1)));
    }

    #[test]
    fn point_names_are_twemproxys() {
        assert_eq!(point_name("10.0.0.1:11211"), "10.0.0.1");
        assert_eq!(point_name("10.0.0.1:11212"), "10.0.0.1:11212");
        assert_eq!(point_name("cache-0.memcached:11211"), "cache-0.memcached");
        assert_eq!(point_name("localhost:21211"), "localhost:21211");
        assert_eq!(point_name("[::1]:11211"), "::1");
        assert_eq!(point_name("[fe80::1]:21211"), "fe80::1:21211");
    }

    #[test]
    fn points_per_server_are_computed_in_single_precision() {
        // Exact arithmetic would give 32 and 192, and 160 at any number of equal servers.
        assert_eq!(points_for(1, 25, 5), 28);
        assert_eq!(points_for(6, 25, 5), 188);
        assert_eq!(points_for(1, 25, 25), 156);
        assert_eq!(points_for(1, 26, 26), 160);
        assert_eq!(points_for(1, 6, 3), 80);
        assert_eq!(points_for(3, 6, 3), 240);
    }

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
