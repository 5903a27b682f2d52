//! How memcached server names become addresses: the system's resolver by default, asked again
//! at every connection (so a name that moves to another address — a rescheduled memcached pod
//! behind a headless Service — is followed as soon as the old connections fail), or a table
//! that tests steer to move a name from one loopback address to another.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// Names and the addresses they resolve to.
type Table = HashMap<String, Vec<SocketAddr>>;

/// Resolves `host:port` names; cloning shares it.
#[derive(Clone, Default)]
pub struct Resolver {
    table: Option<Arc<Mutex<Table>>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.table.is_some() {
            "Resolver(table)"
        } else {
            "Resolver(system)"
        })
    }
}

type Lookup = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

impl Resolver {
    /// The system's resolver (`getaddrinfo`).
    pub fn system() -> Self {
        Self::default()
    }

    /// A resolver that answers names from a table set with [`Resolver::point`], and asks the
    /// system for names the table does not hold.
    pub fn table() -> Self {
        Self {
            table: Some(Arc::default()),
        }
    }

    /// Makes `name` (`host:port`, as written in `memcached.servers`) resolve to `addrs` from
    /// now on. No effect on a system resolver.
    pub fn point(&self, name: &str, addrs: &[SocketAddr]) {
        if let Some(table) = &self.table {
            table
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(name.to_owned(), addrs.to_vec());
        }
    }

    /// The addresses of `name` now.
    pub(crate) fn resolve(&self, name: &str) -> Lookup {
        if let Some(table) = &self.table {
            let known = table
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(name)
                .cloned();
            if let Some(addrs) = known {
                return Box::pin(async move { Ok(addrs) });
            }
        }
        let name = name.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host(name).await?.collect()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_table_moves_a_name_and_asks_the_system_for_the_rest() {
        let resolver = Resolver::table();
        let a: SocketAddr = "127.0.0.2:11211".parse().expect("addr");
        let b: SocketAddr = "127.0.0.3:11211".parse().expect("addr");
        resolver.point("cache-0:11211", &[a]);
        assert_eq!(resolver.resolve("cache-0:11211").await.expect("ok"), [a]);
        resolver.point("cache-0:11211", &[b]);
        assert_eq!(resolver.resolve("cache-0:11211").await.expect("ok"), [b]);
        let local = resolver.resolve("127.0.0.1:5").await.expect("ok");
        assert_eq!(local, ["127.0.0.1:5".parse::<SocketAddr>().expect("addr")]);
    }
}
