//! The mint protocol from the caller's side: [`Client::get_or_compute`].

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::Client;
use crate::error::{BoxError, Error};
use crate::types::{LeaseToken, Outcome, SetOptions};

impl Client {
    /// Returns the cached value of `key`, computing and caching it when the server says so:
    ///
    /// - `HIT`, `STALE` → the cached (possibly stale) value; `compute` is not called;
    /// - `REFRESH` (this caller won the refresh of a stale value) and `MISS` → calls `compute`,
    ///   stores the result for `ttl` with the answer's lease token, returns it;
    /// - `PENDING` (another caller is filling a missing key) → waits for the fill in the server
    ///   ([`get_waiting`](Self::get_waiting)): the value as soon as it is stored, or `MISS`
    ///   with a lease when the filler gave up and this caller was elected to fill instead; if
    ///   the key is still pending after [`ClientBuilder::fill_wait`](crate::ClientBuilder::fill_wait),
    ///   computes and stores the value itself;
    /// - when `compute` fails after a `MISS` with a lease, the fill is given up at once (its
    ///   placeholder deleted with the lease), so that one waiting reader fills instead; a
    ///   failed computation is never stored.
    ///
    /// So however many callers (and service replicas) ask for an expiring key at once,
    /// `compute` runs once per stale period and everyone else keeps getting the stale value.
    ///
    /// The cache is best-effort on the way back: when storing fails, or the lease is outdated
    /// (the key was invalidated or set meanwhile), the computed value is still returned (a
    /// failure is logged with `tracing`). Reads that the server answered degraded (its backend
    /// is down) are not written back. Errors: [`Error::Compute`] when `compute` fails, the
    /// read's error when the service cannot be reached.
    ///
    /// ```no_run
    /// # // no_run: needs a mintcache server on 127.0.0.1:50051 (tests/client_mint.rs runs this
    /// # // loop against two real servers).
    /// use std::time::Duration;
    /// use mintcache_client::Client;
    ///
    /// # async fn load_profile_from_db(id: u64) -> Result<Vec<u8>, std::io::Error> { Ok(vec![]) }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), mintcache_client::Error> {
    /// let cache = Client::builder().endpoint("http://127.0.0.1:50051").build()?;
    /// let profile = cache
    ///     .get_or_compute("profile:42", Duration::from_secs(300), || async {
    ///         load_profile_from_db(42).await
    ///     })
    ///     .await?;
    /// # drop(profile);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: impl Into<Vec<u8>>,
        ttl: Duration,
        compute: F,
    ) -> Result<Vec<u8>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
        E: Into<BoxError>,
    {
        self.get_or_compute_with(key, SetOptions::ttl(ttl), compute)
            .await
    }

    /// [`get_or_compute`](Self::get_or_compute) with explicit grace and flags for the stored
    /// value (`options.lease` is ignored: the read's lease token is used; `options.recompute`
    /// too: the time `compute` took is sent).
    pub async fn get_or_compute_with<F, Fut, E>(
        &self,
        key: impl Into<Vec<u8>>,
        options: SetOptions,
        compute: F,
    ) -> Result<Vec<u8>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
        E: Into<BoxError>,
    {
        let key = key.into();
        let (lease, write_back, fill) = match self.read_until_compute(&key).await? {
            Read::Cached(value) => return Ok(value),
            Read::Compute {
                lease,
                write_back,
                fill,
            } => (lease, write_back, fill),
        };
        let started = Instant::now();
        let value = match compute().await {
            Ok(value) => value,
            Err(e) => {
                // A cold fill this caller won is given up at once, so that one of the readers
                // waiting for it fills instead; a failed fill is never stored.
                if fill
                    && let Some(lease) = &lease
                    && let Err(error) = self.delete_leased(key, lease).await
                {
                    tracing::warn!(%error, "mintcache: giving a failed fill up failed");
                }
                return Err(Error::Compute(e.into()));
            }
        };
        if write_back {
            let options = SetOptions {
                lease,
                recompute: Some(started.elapsed()),
                ..options
            };
            if let Err(error) = self.set_with(key, value.clone(), &options).await {
                tracing::warn!(%error, "mintcache: storing a computed value failed");
            }
        }
        Ok(value)
    }

    /// Reads until the answer is a value or a reason to compute one. While another caller
    /// fills the key (`PENDING`), the server holds the read until the fill lands
    /// ([`get_waiting`](Self::get_waiting)), for up to the client's fill wait; a server that
    /// answers `PENDING` at once (it does not wait) is read again after the `pending`
    /// backoff.
    async fn read_until_compute(&self, key: &[u8]) -> Result<Read, Error> {
        let reads = self.pending.attempts();
        let until = Instant::now() + self.fill_wait;
        let mut read = 1;
        let mut lookup = self.get(key).await?;
        loop {
            match lookup.outcome {
                Outcome::Hit | Outcome::Stale => return Ok(Read::Cached(lookup.value)),
                Outcome::Refresh | Outcome::Miss => {
                    return Ok(Read::Compute {
                        fill: lookup.outcome == Outcome::Miss,
                        lease: lookup.lease,
                        write_back: !lookup.degraded,
                    });
                }
                Outcome::Pending => {}
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || read >= reads.max(2) && left < MIN_WAIT {
                // Waited long enough for the other filler: compute, and store without a lease
                // (the filler's lease is not ours).
                return Ok(Read::Compute {
                    fill: false,
                    lease: None,
                    write_back: true,
                });
            }
            let asked = Instant::now();
            lookup = self.get_waiting(key, left).await?;
            if lookup.outcome == Outcome::Pending && asked.elapsed() < left.min(MIN_WAIT) / 2 {
                // Answered at once: a server that does not wait. Poll it gently.
                tokio::time::sleep(self.pending.delay(read)).await;
                if read >= reads {
                    return Ok(Read::Compute {
                        fill: false,
                        lease: None,
                        write_back: true,
                    });
                }
            }
            read += 1;
        }
    }
}

/// A wait too short to be worth another waiting read.
const MIN_WAIT: Duration = Duration::from_millis(20);

/// What the reads of `get_or_compute` decided.
enum Read {
    /// A usable cached value: return it.
    Cached(Vec<u8>),
    /// Compute the value; store it (with this lease) unless the read was degraded. `fill`: the
    /// lease is a cold fill's, to give up if the computation fails.
    Compute {
        lease: Option<LeaseToken>,
        write_back: bool,
        fill: bool,
    },
}
