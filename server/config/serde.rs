//! How values are written: listen addresses and memcached servers parsed from their text, and
//! the deserializers that take strings as strings whatever they look like (a version `007`) and
//! lists as a TOML list or one comma-separated string (environment variables).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A listen address as written: `host:port`, where the host is an IP address (`[::1]` for
/// IPv6) or a name resolved at startup. Port 0 asks the system for a free port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    host: String,
    port: u16,
}

impl ListenAddr {
    /// `host:port`.
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: host.to_owned(),
            port,
        }
    }

    /// Resolves the host: the address to bind, the first IPv4 address of a name if it has
    /// one (so that `localhost` means 127.0.0.1, as clients usually take it).
    pub(super) fn resolve(&self) -> Result<SocketAddr, String> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = (host, self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{}`: {e}", self.host))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| format!("`{}` resolves to no address", self.host))
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not host:port (e.g. 127.0.0.1:50051 or localhost:50051)");
        let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let bracketed = host.starts_with('[') && host.ends_with(']');
        // A colon outside brackets is an IPv6 address written without them: ambiguous.
        if host.is_empty() || (host.contains(':') && !bracketed) || host.contains(['/', ' ']) {
            return Err(bad());
        }
        Ok(Self::new(host, port))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// One memcached server: `host:port` with an optional `:weight` (default 1). The host is a
/// name, an IPv4 address, or an IPv6 address in brackets (`[::1]:11211`); an IPv6 address
/// without brackets (`::1:11211`) could be read several ways and is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerSpec {
    /// `host:port`, as a socket address is written (`[::1]:11211` for IPv6).
    pub addr: String,
    /// Relative share of keys.
    pub weight: u32,
}

impl FromStr for ServerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || {
            format!(
                "`{s}` is not host:port or host:port:weight (e.g. 10.0.0.1:11211, \
                 cache-0.memcached:11211:2; an IPv6 address goes in brackets: [::1]:11211)"
            )
        };
        // The host ends at its closing bracket (IPv6) or at the first colon.
        let (host, rest) = match s.strip_prefix('[') {
            Some(bracketed) => {
                let (ip, rest) = bracketed.split_once(']').ok_or_else(bad)?;
                if format!("[{ip}]:0")
                    .parse::<std::net::SocketAddrV6>()
                    .is_err()
                {
                    return Err(format!(
                        "`{s}`: `{ip}` is not an IPv6 address (write e.g. [::1]:11211)"
                    ));
                }
                (&s[..ip.len() + 2], rest.strip_prefix(':').ok_or_else(bad)?)
            }
            None => s.split_once(':').ok_or_else(bad)?,
        };
        let (port, weight) = match rest.split_once(':') {
            None => (rest, 1),
            Some((port, w)) => {
                let weight: u32 = w.parse().map_err(|_| bad())?;
                if weight == 0 {
                    return Err(format!("`{s}`: weight must be at least 1"));
                }
                (port, weight)
            }
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        let bracketed = host.starts_with('[');
        let stray = if bracketed {
            host.contains(['/', ' ', ','])
        } else {
            host.contains(['/', ' ', ',', '[', ']'])
        };
        if host.is_empty() || port == 0 || stray {
            return Err(bad());
        }
        Ok(Self {
            addr: format!("{host}:{port}"),
            weight,
        })
    }
}

impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.weight)
    }
}

impl Serialize for ServerSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServerSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A string, or a whole number taken as its decimal text (TOML `default_version = 42`). A
/// fractional number is refused: its spelling (`1.10`) is already lost.
struct StringLike;

impl Visitor<'_> for StringLike {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Err(E::custom(format!(
            "found the number {v}: write it as a string in quotes, as it should be spelled"
        )))
    }
}

pub(super) fn string_whatever_it_looks_like<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<String, D::Error> {
    d.deserialize_any(StringLike)
}

/// A list of strings: a TOML list, or one comma-separated string (environment; surrounding
/// `[` `]` and quotes around items are allowed). Items that look like numbers are strings.
struct StringList;

impl<'de> Visitor<'de> for StringList {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings, or one comma-separated string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
        let v = v.trim();
        let v = v
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(v);
        Ok(v.split(',')
            .map(|item| item.trim().trim_matches(['"', '\'']).trim())
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<String>, E> {
        StringLike.visit_f64(v).map(|s| vec![s])
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        struct Item;
        impl<'de> de::DeserializeSeed<'de> for Item {
            type Value = String;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
                d.deserialize_any(StringLike)
            }
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Item)? {
            items.push(item);
        }
        Ok(items)
    }
}

pub(super) fn strings_from_list_or_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    d.deserialize_any(StringList)
}

pub(super) fn servers_from_list_or_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<ServerSpec>, D::Error> {
    strings_from_list_or_string(d)?
        .iter()
        .map(|s| s.parse().map_err(de::Error::custom))
        .collect()
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{config_in_jail, load_in_jail};

    #[test]
    fn servers_from_a_comma_separated_env_var() {
        for written in [
            "10.0.0.1:11211,10.0.0.2:11211:2",
            " 10.0.0.1:11211 , 10.0.0.2:11211:2 ",
            "[\"10.0.0.1:11211\", \"10.0.0.2:11211:2\"]",
        ] {
            let c = config_in_jail("", &[("MINTCACHE_MEMCACHED__SERVERS", written)]);
            assert_eq!(c.memcached.servers.len(), 2, "{written}");
            assert_eq!(c.memcached.servers[1].weight, 2, "{written}");
        }
    }

    #[test]
    fn versions_and_namespaces_are_strings_whatever_they_look_like() {
        for (written, version) in [
            ("42", "42"),
            ("007", "007"),
            ("1.50", "1.50"),
            ("true", "true"),
        ] {
            let c = config_in_jail("", &[("MINTCACHE_CACHE__DEFAULT_VERSION", written)]);
            assert_eq!(c.cache.default_version, version);
        }
        let c = config_in_jail("", &[("MINTCACHE_CACHE__NAMESPACE", "2024")]);
        assert_eq!(c.cache.namespace, "2024");
        let c = config_in_jail("[cache]\ndefault_version = 42\n", &[]);
        assert_eq!(c.cache.default_version, "42");
        // A TOML float has already lost its spelling: refused, saying how to write it.
        let e = load_in_jail("[cache]\ndefault_version = 1.50\n", &[]).expect_err("a float");
        assert!(e.names("cache.default_version"), "{e}");
        assert!(e.to_string().contains("string in quotes"), "{e}");
    }

    #[test]
    fn server_specs() {
        let ok = |s: &str, addr: &str, w: u32| {
            assert_eq!(
                s.parse::<ServerSpec>(),
                Ok(ServerSpec {
                    addr: addr.into(),
                    weight: w
                }),
                "{s}"
            )
        };
        ok("127.0.0.1:11211", "127.0.0.1:11211", 1);
        ok(" cache-0.memcached:11211:4 ", "cache-0.memcached:11211", 4);
        ok("[::1]:11211", "[::1]:11211", 1);
        ok("[::1]:11211:2", "[::1]:11211", 2);
        ok("[2001:db8::7]:11212", "[2001:db8::7]:11212", 1);
        for bad in [
            "",
            "host",
            "host:",
            ":11211",
            "host:0",
            "host:99999",
            "host:1:x",
            "host:1:0",
            "host:1:2:3",
            "a b:1",
        ] {
            assert!(
                bad.parse::<ServerSpec>().is_err(),
                "{bad:?} should be refused"
            );
        }
        for bad in [
            // IPv6 without brackets: `::1:11211` would otherwise be host `:`, port 1,
            // weight 11211.
            "::1:11211",
            "::1",
            "fe80::1:11211:2",
            "[::1]",
            "[::1]11211",
            "[::1:11211",
            "::1]:11211",
            "[cache-0]:11211",
            "[::1]:0",
        ] {
            let e = bad.parse::<ServerSpec>().expect_err(bad);
            assert!(
                e.contains("[::1]:11211"),
                "{bad:?}: says how to write it: {e}"
            );
        }
        // Printed as written, and read back the same.
        for spec in ["[::1]:11211:3", "10.0.0.1:11211:1"] {
            let parsed: ServerSpec = spec.parse().expect("valid");
            assert_eq!(parsed.to_string(), spec);
        }
    }

    #[test]
    fn listen_addrs() {
        for good in [
            "127.0.0.1:0",
            "0.0.0.0:50051",
            "localhost:1",
            "[::1]:50051",
            "a.b-c:9",
        ] {
            assert_eq!(
                good.parse::<ListenAddr>().map(|a| a.to_string()),
                Ok(good.to_owned())
            );
        }
        for bad in [
            "",
            "host",
            ":1",
            "host:",
            "host:x",
            "host:70000",
            "::1:5",
            "a b:1",
        ] {
            assert!(
                bad.parse::<ListenAddr>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
