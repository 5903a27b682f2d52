//! [`ClientBuilder`]: endpoints (balanced), TLS, call defaults, timeouts, retry schedules.

use std::time::Duration;

#[cfg(feature = "tls")]
use tonic::transport::ClientTlsConfig;
use tonic::transport::{Channel, Endpoint};

use crate::backoff::Backoff;
use crate::client::{CallDefaults, Client};
use crate::coalesce::CoalescingConnector;
use crate::error::Error;

/// Most endpoints one client balances over (tonic's balancer takes them through a bounded
/// queue of this size).
const MAX_ENDPOINTS: usize = 1024;

/// Configures and builds a [`Client`]. Start with [`Client::builder`].
///
/// ```
/// use std::time::Duration;
/// use mintcache_client::{Backoff, Client};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), mintcache_client::Error> {
/// let client = Client::builder()
///     .endpoint("http://127.0.0.1:50051")
///     .endpoint("127.0.0.1:50052") // scheme-less: http://, or https:// with TLS
///     .version("r42")
///     .namespace("shop")
///     .timeout(Duration::from_secs(2))
///     .retry(Backoff { max_attempts: 3, ..Backoff::UNAVAILABLE_DEFAULT })
///     .build()?; // lazy: connects on the first call
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    #[cfg(feature = "tls")]
    tls: Option<ClientTlsConfig>,
    defaults: CallDefaults,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    retry: Backoff,
    pending: Backoff,
    fill_wait: Duration,
}

/// How long `get_or_compute` waits for another caller's fill by default.
const FILL_WAIT_DEFAULT: Duration = Duration::from_secs(10);

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            #[cfg(feature = "tls")]
            tls: None,
            defaults: CallDefaults::default(),
            timeout: Some(Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(2),
            retry: Backoff::UNAVAILABLE_DEFAULT,
            pending: Backoff::PENDING_DEFAULT,
            fill_wait: FILL_WAIT_DEFAULT,
        }
    }
}

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }
}

impl ClientBuilder {
    /// Adds a server address: `http://host:port`, `https://host:port`, or `host:port`
    /// (`http://`, or `https://` when TLS is configured). Several endpoints are load balanced
    /// (power of two choices over ready connections), e.g. one per service replica.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.push(endpoint.into());
        self
    }

    /// Adds several endpoints (see [`endpoint`](Self::endpoint)).
    pub fn endpoints<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints.extend(endpoints.into_iter().map(Into::into));
        self
    }

    /// Uses TLS (rustls) with this configuration: CA certificate, client identity for mTLS,
    /// server name. Scheme-less endpoints become `https://`. `https://` endpoints without this
    /// setting use the system's root certificates.
    ///
    /// ```
    /// use mintcache_client::Client;
    /// use tonic::transport::{Certificate, ClientTlsConfig};
    ///
    /// # fn demo(ca_pem: Vec<u8>) {
    /// let builder = Client::builder()
    ///     .endpoint("cache.internal:50051")
    ///     .tls(ClientTlsConfig::new()
    ///         .ca_certificate(Certificate::from_pem(ca_pem))
    ///         .domain_name("cache.internal"));
    /// # drop(builder);
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: ClientTlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// The application version for every call (`x-cache-version`); default: the server's.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.defaults.version = Some(version.into());
        self
    }

    /// The namespace for every call (`x-cache-namespace`); default: the server's.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.defaults.namespace = Some(namespace.into());
        self
    }

    /// A bearer token sent with every call (`authorization: Bearer <token>`), e.g. an admin
    /// token for debug modes. It is marked sensitive and never shown by `Debug`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.defaults.token = Some(token.into());
        self
    }

    /// Cold-miss protection for every read (`GetRequest.lease_on_miss`); default: the server's.
    pub fn lease_on_miss(mut self, on: bool) -> Self {
        self.defaults.lease_on_miss = Some(on);
        self
    }

    /// The deadline of each call, retries included; sent to the server as `grpc-timeout`.
    /// Default: 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Calls wait for an answer as long as it takes (no deadline).
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// How long establishing a connection may take. Default: 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retries of calls that fail with `UNAVAILABLE`. `Increment`, `Add` and writes with a
    /// lease token, whose repeat would change the answer, are retried only when the request
    /// cannot have reached the server (the connection could not be set up). Default:
    /// [`Backoff::UNAVAILABLE_DEFAULT`]; [`Backoff::NONE`] disables them.
    pub fn retry(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// How [`get_or_compute`](Client::get_or_compute) polls a server that answers `PENDING`
    /// at once (one that does not hold waiting reads) before computing the value itself.
    /// Default: [`Backoff::PENDING_DEFAULT`].
    pub fn pending(mut self, pending: Backoff) -> Self {
        self.pending = pending;
        self
    }

    /// How long [`get_or_compute`](Client::get_or_compute) waits in the server for another
    /// caller's fill (`PENDING`) before computing the value itself; each waiting read is also
    /// bounded by the call timeout. Default: 10 s.
    pub fn fill_wait(mut self, wait: Duration) -> Self {
        self.fill_wait = wait;
        self
    }

    /// Builds the client without connecting: connections open on the first call (and reopen
    /// after failures). Must be called within a Tokio runtime.
    pub fn build(self) -> Result<Client, Error> {
        self.check_metadata()?;
        let endpoints = self.tonic_endpoints()?;
        let channel = match endpoints.as_slice() {
            [single] => lazy(single),
            _ => Channel::balance_list(endpoints.into_iter()),
        };
        Ok(self.client(channel))
    }

    /// Builds the client and checks that a server answers: with one endpoint, connects to
    /// it; with several, succeeds once any of them accepts a connection (the balancer then
    /// connects to all of them on its own).
    pub async fn connect(self) -> Result<Client, Error> {
        self.check_metadata()?;
        let endpoints = self.tonic_endpoints()?;
        if let [single] = endpoints.as_slice() {
            let channel = connect(single).await.map_err(|source| Error::Connect {
                endpoint: single.uri().to_string(),
                source,
            })?;
            return Ok(self.client(channel));
        }
        let mut last_error = None;
        for endpoint in &endpoints {
            match endpoint.connect().await {
                Ok(_) => {
                    last_error = None;
                    break;
                }
                Err(source) => {
                    last_error = Some(Error::Connect {
                        endpoint: endpoint.uri().to_string(),
                        source,
                    });
                }
            }
        }
        match last_error {
            Some(e) => Err(e),
            None => Ok(self.client(Channel::balance_list(endpoints.into_iter()))),
        }
    }

    fn client(self, channel: Channel) -> Client {
        Client::new(
            channel,
            self.defaults,
            self.timeout,
            self.retry,
            self.pending,
            self.fill_wait,
        )
    }

    /// Fails early (rather than on every call) when a default cannot be sent as a header.
    fn check_metadata(&self) -> Result<(), Error> {
        self.defaults.headers().map(drop)
    }

    fn tonic_endpoints(&self) -> Result<Vec<Endpoint>, Error> {
        if self.endpoints.is_empty() {
            return Err(Error::NoEndpoint);
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(Error::TooManyEndpoints {
                given: self.endpoints.len(),
                max: MAX_ENDPOINTS,
            });
        }
        self.endpoints
            .iter()
            .map(|e| self.tonic_endpoint(e))
            .collect()
    }

    fn tonic_endpoint(&self, given: &str) -> Result<Endpoint, Error> {
        let invalid = |source| Error::InvalidEndpoint {
            endpoint: given.to_owned(),
            source,
        };
        let uri = if given.contains("://") {
            given.to_owned()
        } else if self.tls_enabled() {
            format!("https://{given}")
        } else {
            format!("http://{given}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(invalid)?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        self.with_tls(endpoint).map_err(invalid)
    }

    #[cfg(feature = "tls")]
    fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    #[cfg(not(feature = "tls"))]
    fn tls_enabled(&self) -> bool {
        false
    }

    #[cfg(feature = "tls")]
    fn with_tls(&self, endpoint: Endpoint) -> Result<Endpoint, tonic::transport::Error> {
        match (&self.tls, endpoint.uri().scheme_str()) {
            (Some(tls), _) => endpoint.tls_config(tls.clone()),
            (None, Some("https")) => {
                endpoint.tls_config(ClientTlsConfig::new().with_enabled_roots())
            }
            (None, _) => Ok(endpoint),
        }
    }

    #[cfg(not(feature = "tls"))]
    fn with_tls(&self, endpoint: Endpoint) -> Result<Endpoint, tonic::transport::Error> {
        Ok(endpoint)
    }
}

/// Whether `endpoint` is reached over TCP (`http`, `https`), where its connections send each
/// call's frames in one write ([`crate::coalesce`]); tonic's own connector takes the rest.
fn over_tcp(endpoint: &Endpoint) -> bool {
    matches!(endpoint.uri().scheme_str(), Some("http" | "https"))
}

/// A channel to one endpoint that connects on its first call.
fn lazy(endpoint: &Endpoint) -> Channel {
    if over_tcp(endpoint) {
        endpoint.connect_with_connector_lazy(CoalescingConnector::new())
    } else {
        endpoint.connect_lazy()
    }
}

/// A channel to one endpoint, connected.
async fn connect(endpoint: &Endpoint) -> Result<Channel, tonic::transport::Error> {
    if over_tcp(endpoint) {
        endpoint
            .connect_with_connector(CoalescingConnector::new())
            .await
    } else {
        endpoint.connect().await
    }
}
