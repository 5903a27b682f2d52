//! The gRPC port's connections, as they reach the HTTP/2 server: accepted with Nagle's
//! algorithm off, through TLS when configured, and read through a [`HeaderGuard`].
//!
//! TLS is done here rather than by tonic (`ServerTlsConfig`), because the guard must see what
//! the client sends after decryption, and tonic offers no place between its TLS and its HTTP/2
//! server. The settings are tonic's: rustls with ring, ALPN `h2`, client certificates verified
//! against `tls.client_ca` (optional when `tls.client_cert_optional`); handshakes run
//! concurrently, each within [`HANDSHAKE_TIMEOUT`]. The verified client certificates reach the
//! request path as [`PeerCertificates`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpIncoming};

use super::guard::HeaderGuard;
use crate::config::TlsSettings;
use crate::layers::auth::PeerCertificates;

/// How long a client has to complete its TLS handshake: a connection that never does holds a
/// socket and a task until then.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS setting that rustls refuses.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsSetupError {
    #[error("tls.cert: no certificate in the PEM file ({0})")]
    Certificate(String),
    #[error("tls.key: no private key in the PEM file ({0})")]
    Key(String),
    #[error("tls.client_ca: {0}")]
    ClientCa(String),
    #[error("tls: {0}")]
    Config(#[from] rustls::Error),
}

/// The TLS side of the gRPC port, from the PEM files read at startup.
pub(super) fn tls_acceptor(tls: &TlsSettings) -> Result<TlsAcceptor, TlsSetupError> {
    let certs = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsSetupError::Certificate("empty".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem)
        .map_err(|e| TlsSetupError::Key(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some((ca, optional)) => {
            let ca = CertificateDer::pem_slice_iter(ca)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsSetupError::ClientCa(e.to_string()))?;
            let mut roots = RootCertStore::empty();
            // As tonic does: certificates rustls cannot use are left out.
            roots.add_parsable_certificates(ca);
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if *optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsSetupError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A connection of the gRPC port, before the guard.
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection as the HTTP/2 server reads it.
pub(crate) type Connection = HeaderGuard<Transport>;

impl Connected for Connection {
    type ConnectInfo = PeerCertificates;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self.get_ref() {
            Transport::Plain(_) => PeerCertificates(None),
            Transport::Tls(tls) => {
                PeerCertificates(tls.get_ref().1.peer_certificates().map(|certs| {
                    certs
                        .iter()
                        .map(|c| c.clone().into_owned())
                        .collect::<Vec<_>>()
                        .into()
                }))
            }
        }
    }
}

/// The connections of the gRPC port.
pub(super) struct Incoming {
    tcp: TcpIncoming,
    tls: Option<TlsAcceptor>,
    handshakes: JoinSet<io::Result<TlsStream<TcpStream>>>,
}

impl Incoming {
    /// Connections accepted on `listener` with Nagle's algorithm off (answers are small and
    /// latency-bound: with Nagle on, an answer written while an earlier one is unacknowledged
    /// waits for the client's delayed ACK, about 40 ms), through `tls` when given.
    pub(super) fn new(listener: TcpListener, tls: Option<TlsAcceptor>) -> Self {
        Self {
            tcp: TcpIncoming::from(listener).with_nodelay(Some(true)),
            tls,
            handshakes: JoinSet::new(),
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Connection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            while let Poll::Ready(Some(done)) = this.handshakes.poll_join_next(cx) {
                match done {
                    Ok(Ok(tls)) => {
                        return Poll::Ready(Some(Ok(HeaderGuard::new(Transport::Tls(Box::new(
                            tls,
                        ))))));
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(e) => tracing::debug!(error = %e, "TLS handshake task"),
                }
            }
            let tcp = match Pin::new(&mut this.tcp).poll_next(cx) {
                Poll::Ready(Some(Ok(tcp))) => tcp,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) if this.handshakes.is_empty() => return Poll::Ready(None),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            };
            match &this.tls {
                None => return Poll::Ready(Some(Ok(HeaderGuard::new(Transport::Plain(tcp))))),
                Some(acceptor) => {
                    let accept = acceptor.accept(tcp);
                    this.handshakes.spawn(async move {
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, accept)
                            .await
                            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake"))?
                    });
                }
            }
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Self::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Self::Tls(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(io) => io.is_write_vectored(),
            Self::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            Self::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Self::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt as _;

    #[tokio::test]
    async fn accepted_connections_do_not_wait_for_acks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut incoming = Incoming::new(listener, None);
        let _client = TcpStream::connect(addr).await.expect("connect");
        let accepted = incoming
            .next()
            .await
            .expect("a connection")
            .expect("accepted");
        let Transport::Plain(tcp) = accepted.get_ref() else {
            panic!("plain TCP");
        };
        assert!(tcp.nodelay().expect("socket option"), "TCP_NODELAY is off");
    }
}
