//! The mint protocol from an application's side, with the Rust client's `get_or_compute`:
//! the first call computes the value (a slow "database" load) and caches it, the next calls
//! are served from the cache; after an invalidation exactly one caller recomputes while the
//! others keep getting the stale value.
//!
//! ```sh
//! cargo run --release                       # a server on 127.0.0.1:50051, in another terminal
//! cargo run --example get_or_compute        # or: ... -- http://HOST:PORT
//! ```
// An example program reports on stdout; the workspace lint is for the service's code.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mintcache_client::Client;

/// Stands in for a slow data source: counts how often it is asked.
async fn load_profile(loads: &AtomicUsize, id: u64) -> Result<Vec<u8>, std::io::Error> {
    let n = loads.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(format!(r#"{{"id":{id},"name":"Ada","load":{n}}}"#).into_bytes())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_owned());
    // A key space of its own, so that the example starts cold on every run.
    let version = format!("example-{}", std::process::id());
    let cache = Client::builder()
        .endpoint(&endpoint)
        .version(&version)
        .connect()
        .await?;
    let loads = Arc::new(AtomicUsize::new(0));
    let ttl = Duration::from_secs(60);

    for round in 1..=3 {
        let profile = cache
            .get_or_compute("profile:42", ttl, || load_profile(&loads, 42))
            .await?;
        println!(
            "read {round}: {} (loads so far: {})",
            String::from_utf8_lossy(&profile),
            loads.load(Ordering::SeqCst)
        );
    }

    // Soft purge: ten concurrent readers, one recompute; the others get the stale value.
    cache.invalidate("profile:42").await?;
    let readers = (0..10).map(|_| {
        let (cache, loads) = (cache.clone(), loads.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute("profile:42", ttl, || load_profile(&loads, 42))
                .await
        })
    });
    for reader in readers {
        reader.await??;
    }
    println!(
        "after an invalidation and 10 concurrent readers: loads so far: {}",
        loads.load(Ordering::SeqCst)
    );
    Ok(())
}
