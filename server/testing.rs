//! Aids for the end-to-end tests (and tools) that need to know what the server decides
//! internally; not part of the server's API, which is [`crate::run`] and the configuration.

use crate::config::ServerSpec;
use crate::core::key::KeySpace;
use crate::store::memcached::KetamaRing;

/// Which of `servers` holds `key` of the key space (`namespace`, `version`), as the server
/// places keys: ketama over the servers' weights, ejections aside. `None` when there are no
/// servers or the namespace or version is not valid. Tests use it to pick keys that live on a
/// given memcached server (to stop that one, say).
pub fn memcached_server_for(
    servers: &[ServerSpec],
    namespace: &str,
    version: &str,
    key: &[u8],
) -> Option<usize> {
    let space = KeySpace::new(namespace, version).ok()?;
    let ring = KetamaRing::new(servers.iter().map(|s| (s.addr.as_str(), s.weight)));
    ring.server_for(space.store_key(key).stored())
}
