//! What went wrong, in words a user can act on, and the exit status it gives.
//!
//! A gRPC status alone often puzzles (`UNAVAILABLE: transport error`, `UNKNOWN: grpc-status
//! header missing`, `InvalidContentType`): the causes are walked and the likely reason and
//! what to check are said. In particular the CLI never blames the mintcache endpoint for a
//! memcached outage: the server answers `UNAVAILABLE: cache backend unavailable` for that.

use std::path::PathBuf;

use mintcache_client::Error;
use tonic::Code;

use super::args::Connection;
use super::exit::Exit;

/// The message of the refused `--version` forms.
pub(crate) const VERSION_FLAG_MISUSED: &str = "`--version` prints this tool's version and \
    takes nothing else; the cache version (x-cache-version) is `--cache-version VERSION` (or \
    MINTCACHECLI_CACHE_VERSION)";

/// The message of the server's answer when memcached fails a write (server/grpc/status.rs).
const BACKEND_UNAVAILABLE: &str = "cache backend unavailable";

/// The gRPC service of a mintcache server; its health service answers for this name too.
pub(crate) const CACHE_SERVICE: &str = "mintcache.v1.Cache";

/// The port a mintcache server listens on by default (`server.listen`).
const DEFAULT_PORT: u16 = 50051;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Client(#[from] Error),
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {what} {path:?}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read stdin: {0}")]
    Stdin(std::io::Error),
    #[error("cannot write the output: {0}")]
    Stdout(std::io::Error),
    /// The admin port could not be reached or did not answer with metrics.
    #[error("{0}")]
    Admin(String),
    /// A gRPC server answered, but not a mintcache server: it does not serve
    /// `mintcache.v1.Cache` (another program holds the port).
    #[error("not a mintcache server ({}; {health})", mintcache_client::Error::from(.status.clone()))]
    NotMintcache {
        /// Its answer to the call.
        status: tonic::Status,
        /// What its health service said about `mintcache.v1.Cache`, in words.
        health: String,
    },
}

impl CliError {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// The exit status this error gives.
    pub(crate) fn exit(&self) -> Exit {
        match self {
            Self::Usage(_) | Self::File { .. } | Self::Stdin(_) | Self::Stdout(_) => Exit::Usage,
            Self::Admin(_) | Self::NotMintcache { .. } => Exit::Unreachable,
            Self::Client(e) => client_exit(e),
        }
    }

    /// The gRPC status code behind the error, when there is one.
    pub(crate) fn code(&self) -> Option<Code> {
        match self {
            Self::Client(e) => e.code(),
            Self::NotMintcache { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// Whether the answer may come from a gRPC server that is not a mintcache server: any
    /// server answers `UNIMPLEMENTED` for a service it does not have. (A mintcache server
    /// answers it too, when it is older than this CLI.)
    pub(crate) fn may_be_another_server(&self) -> bool {
        // Not what an HTTP server that is not gRPC at all answers (e.g. the admin port's
        // 404, which tonic maps to UNIMPLEMENTED): that one is explained as such.
        matches!(self, Self::Client(Error::Status(status))
            if status.code() == Code::Unimplemented
                && !from_transport(status)
                && !not_grpc(&chain_text(status)))
    }
}

fn client_exit(e: &Error) -> Exit {
    match e {
        Error::Status(status) => status_exit(status),
        Error::Connect { .. } => Exit::Unreachable,
        Error::NoEndpoint
        | Error::TooManyEndpoints { .. }
        | Error::InvalidEndpoint { .. }
        | Error::InvalidMetadata { .. } => Exit::Usage,
        _ => Exit::Failed,
    }
}

/// The exit status of an error status (also used for the per-key errors of batches).
pub(crate) fn code_exit(code: Code, message: &str) -> Exit {
    match code {
        Code::Unavailable if message == BACKEND_UNAVAILABLE => Exit::BackendUnavailable,
        Code::Unavailable => Exit::Unreachable,
        _ => Exit::Failed,
    }
}

fn status_exit(status: &tonic::Status) -> Exit {
    let chain = chain_text(status);
    // Not a gRPC server at all (an HTTP port, memcached, ...): nothing mintcache answered.
    if not_grpc(&chain) || (status.code() == Code::Unknown && from_transport(status)) {
        return Exit::Unreachable;
    }
    code_exit(status.code(), status.message())
}

/// Whether the status was made by the client's transport rather than sent by a server.
fn from_transport(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// The status's message and every cause's, joined (tonic nests the real reason, e.g.
/// `Connection refused`, several sources deep).
fn chain_text(status: &tonic::Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn not_grpc(chain: &str) -> bool {
    chain.contains("grpc-status header missing")
        || chain.contains("invalid content-type")
        || chain.contains("frame with invalid size")
        || chain.contains("invalid HTTP version")
        || chain.contains("HTTP/1")
}

/// The full message for stderr: what failed, the likely reason and what to check.
pub(crate) fn explain(e: &CliError, connection: &Connection) -> String {
    let endpoints = endpoints_text(connection);
    match e {
        CliError::Client(Error::Status(status)) => {
            explain_status(status, &endpoints, &missing_port_hint(connection))
        }
        CliError::Client(error @ Error::Connect { .. }) => {
            format!("cannot reach {endpoints}: {}", with_causes(error))
        }
        CliError::NotMintcache { .. } => format!(
            "cannot reach a mintcache server at {endpoints}: a gRPC server answers there, but \
             it is {e}. Another program holds this port: give the mintcache server's gRPC \
             address (its server.listen) with -e HOST:PORT or MINTCACHECLI_ENDPOINT"
        ),
        other => with_causes(other),
    }
}

/// The endpoints as given, each without a port followed by the port it stands for.
fn endpoints_text(connection: &Connection) -> String {
    connection
        .endpoints
        .iter()
        .map(|e| match implied_port(e.trim(), tls_on(connection)) {
            Some(port) => format!("{} (port {port}: no port given)", e.trim()),
            None => e.trim().to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// For endpoints given without a port: which port was tried, and the usual one.
fn missing_port_hint(connection: &Connection) -> String {
    let tls = tls_on(connection);
    let missing: Vec<&str> = connection
        .endpoints
        .iter()
        .map(|e| e.trim())
        .filter(|e| implied_port(e, tls).is_some())
        .collect();
    match missing.first() {
        None => String::new(),
        Some(first) => {
            let (scheme, rest) = match first.split_once("://") {
                Some((scheme, rest)) => (format!("{scheme}://"), rest),
                None => (String::new(), *first),
            };
            let host = rest.split('/').next().unwrap_or(rest);
            format!(
                ". A mintcache server listens on port {DEFAULT_PORT} unless configured \
                 otherwise: -e {scheme}{host}:{DEFAULT_PORT}"
            )
        }
    }
}

fn tls_on(c: &Connection) -> bool {
    c.tls || c.tls_ca.is_some() || c.tls_cert.is_some() || c.tls_domain.is_some()
}

/// The port an endpoint given without one stands for (80 for `http://` and plain addresses,
/// 443 for `https://` or with TLS); `None` when it names its port.
pub(crate) fn implied_port(endpoint: &str, tls: bool) -> Option<u16> {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, endpoint),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let has_port = match authority.rsplit_once(':') {
        // `[::1]` has no port, `[::1]:50051` has one.
        Some((host, port)) => {
            (!host.starts_with('[') || host.ends_with(']'))
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    };
    if has_port || authority.is_empty() {
        return None;
    }
    let https = match scheme {
        Some(scheme) => scheme.eq_ignore_ascii_case("https"),
        None => tls,
    };
    Some(if https { 443 } else { 80 })
}

/// An error's text with its causes, without repeating what the text already says.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

fn explain_status(status: &tonic::Status, endpoints: &str, port_hint: &str) -> String {
    let code = mintcache_client::code_name(status.code());
    let chain = chain_text(status);
    let said = if chain.is_empty() {
        code.to_owned()
    } else {
        format!("{code}: {chain}")
    };
    if status.code() == Code::Unavailable && status.message() == BACKEND_UNAVAILABLE {
        return format!(
            "the cache backend behind the server is unavailable: the mintcache server at \
             {endpoints} answered, but its memcached servers did not (check the server's log \
             and its memcached servers)"
        );
    }
    if not_grpc(&chain) {
        return format!(
            "cannot reach a mintcache server at {endpoints}: something answered, but not \
             gRPC ({said}). Is it the admin HTTP port, or another service? The gRPC port is \
             the server's server.listen (127.0.0.1:50051 by default){port_hint}"
        );
    }
    if let Some(hint) = tls_hint(&chain) {
        return format!("cannot reach a mintcache server at {endpoints}: {hint} ({said})");
    }
    match status.code() {
        Code::Unavailable | Code::Unknown
            if status.code() == Code::Unavailable || from_transport(status) =>
        {
            let hint = if chain.contains("Connection refused") {
                "nothing listens there: is the server running, and is this its server.listen \
                 address?"
            } else if chain.contains("dns error") || chain.contains("failed to lookup") {
                "the host name does not resolve"
            } else if chain.contains("connection lost") || chain.contains("connection closed") {
                "the connection was closed during the call: is this a mintcache gRPC port (not \
                 memcached, not the admin port)? If the server uses TLS, connect with --tls \
                 (and --tls-ca) or an https:// endpoint"
            } else if chain.contains("timed out") || chain.contains("deadline") {
                "no answer in time: a firewall, or the wrong address?"
            } else {
                "the connection failed"
            };
            format!("cannot reach a mintcache server at {endpoints}: {hint} ({said}){port_hint}")
        }
        Code::DeadlineExceeded => format!(
            "{said} (the server at {endpoints} did not answer in time; --timeout sets how long \
             to wait)"
        ),
        Code::Unauthenticated => format!(
            "{said} (pass a token with MINTCACHECLI_TOKEN or --token, or the client \
             certificate the server expects with --tls-cert/--tls-key)"
        ),
        Code::PermissionDenied => format!("{said} (--debug needs an admin token)"),
        // memcached refused the item (too large for its -I, or no memory): the message says
        // so, and retrying later would not help.
        Code::ResourceExhausted if status.message().contains("memcached") => said,
        Code::ResourceExhausted => format!(
            "{said} (the server is at its concurrency limit or its request memory budget: \
             retry later; or the message is over its server.max_message_bytes)"
        ),
        // Servers before the request budget answered an oversize message this way.
        Code::OutOfRange if chain.contains("too large") => {
            format!("{said} (the message is over the server's server.max_message_bytes)")
        }
        Code::Unimplemented if status.message().contains("`peek`") => format!(
            "{said} (the server is older than this CLI: `get --elect` works with it, but \
             takes part in the refresh election)"
        ),
        Code::Unimplemented if status.message().is_empty() => format!(
            "{said} (the server at {endpoints} does not know this call: is it a mintcache \
             server, and as recent as this CLI?)"
        ),
        _ => said,
    }
}

/// What a TLS failure most likely means, in words.
fn tls_hint(chain: &str) -> Option<&'static str> {
    let hints: [(&str, &str); 9] = [
        (
            "InvalidContentType",
            "TLS was used, but the server answered in plaintext: drop --tls (and https://) \
             for a server without TLS, or check that the server's tls.cert is set",
        ),
        (
            "UnsupportedCertVersion",
            "the server's certificate (or one of its CAs) is an X.509 v1 certificate, which \
             TLS here does not accept: issue a v3 certificate (with subjectAltName), or check \
             that --tls-ca is the right file",
        ),
        (
            "UnknownIssuer",
            "the server's certificate is not signed by a CA this CLI trusts: pass the CA \
             that signed it with --tls-ca",
        ),
        (
            "BadSignature",
            "the server's certificate is not signed by the CA given with --tls-ca: pass the CA \
             that signed it",
        ),
        (
            "not valid for name",
            "the server's certificate is not valid for this host name: connect by a name it \
             was issued for, or pass that name with --tls-domain",
        ),
        (
            "NotValidForName",
            "the server's certificate is not valid for this host name: pass the name it was \
             issued for with --tls-domain",
        ),
        (
            "Expired",
            "the server's certificate has expired (or the clocks disagree)",
        ),
        (
            "CertificateRequired",
            "the server requires a client certificate: pass --tls-cert and --tls-key",
        ),
        (
            "no private key",
            "the --tls-key file holds no usable private key",
        ),
    ];
    if let Some((_, hint)) = hints.iter().find(|(needle, _)| chain.contains(needle)) {
        return Some(hint);
    }
    if chain.contains("invalid peer certificate") || chain.contains("received fatal alert") {
        return Some(
            "the TLS handshake failed: check --tls-ca, --tls-cert, --tls-key and --tls-domain",
        );
    }
    None
}

/// clap's error as one message: its first paragraph, without the `error: ` prefix and the
/// usage lines meant for a terminal.
pub(crate) fn usage_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or_default().trim();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn connection() -> Connection {
        super::super::args::Cli::try_parse_from(["mintcache", "-e", "127.0.0.1:50051", "health"])
            .expect("valid")
            .connection
    }

    fn explained(status: tonic::Status) -> (String, Exit) {
        let e = CliError::Client(status.into());
        (explain(&e, &connection()), e.exit())
    }

    #[test]
    fn a_memcached_outage_is_not_blamed_on_the_endpoint() {
        let (text, exit) = explained(tonic::Status::unavailable(BACKEND_UNAVAILABLE));
        assert_eq!(exit, Exit::BackendUnavailable);
        assert!(
            text.starts_with("the cache backend behind the server is unavailable"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:50051 answered"), "{text}");
    }

    #[test]
    fn statuses_get_hints_and_exit_4() {
        for (status, hint) in [
            (
                tonic::Status::unauthenticated("missing token"),
                "MINTCACHECLI_TOKEN",
            ),
            (tonic::Status::permission_denied("debug"), "admin token"),
            (
                tonic::Status::resource_exhausted("shed"),
                "concurrency limit",
            ),
            (tonic::Status::unimplemented(""), "as recent as this CLI"),
            (
                tonic::Status::resource_exhausted(
                    "value too large for memcached's item size limit (memcached -I)",
                ),
                "memcached -I)",
            ),
            (
                tonic::Status::deadline_exceeded("no answer within 5s"),
                "--timeout",
            ),
        ] {
            let (text, exit) = explained(status);
            assert_eq!(exit, Exit::Failed, "{text}");
            assert!(text.contains(hint), "{hint} in {text}");
        }
        let (text, exit) = explained(tonic::Status::invalid_argument("empty key"));
        assert_eq!(
            (text.as_str(), exit),
            ("INVALID_ARGUMENT: empty key", Exit::Failed)
        );
    }

    #[test]
    fn tls_failures_are_explained() {
        for (needle, hint) in [
            (
                "received corrupt message of type InvalidContentType",
                "drop --tls",
            ),
            (
                "invalid peer certificate: UnsupportedCertVersion",
                "X.509 v1",
            ),
            ("invalid peer certificate: UnknownIssuer", "--tls-ca"),
            ("invalid peer certificate: NotValidForName", "--tls-domain"),
        ] {
            let hint_found = tls_hint(&format!("transport error: {needle}")).expect(needle);
            assert!(hint_found.contains(hint), "{needle}: {hint_found}");
        }
        assert_eq!(tls_hint("Connection refused"), None);
    }

    #[test]
    fn an_endpoint_without_a_port_names_the_port_it_stands_for() {
        for (endpoint, tls, port) in [
            ("127.0.0.1", false, Some(80)),
            ("127.0.0.1", true, Some(443)),
            ("http://cache.internal", true, Some(80)),
            ("https://cache.internal/", false, Some(443)),
            ("[::1]", false, Some(80)),
            ("127.0.0.1:50051", false, None),
            ("http://[::1]:50051", false, None),
            ("https://cache.internal:7000/x", false, None),
        ] {
            assert_eq!(implied_port(endpoint, tls), port, "{endpoint}");
        }
        let connection =
            super::super::args::Cli::try_parse_from(["mintcache", "-e", "127.0.0.1", "get", "k"])
                .expect("valid")
                .connection;
        let refused = tonic::Status::unavailable("tcp connect error: Connection refused");
        let text = explain(&CliError::Client(refused.into()), &connection);
        assert!(
            text.starts_with(
                "cannot reach a mintcache server at 127.0.0.1 (port 80: no port given): nothing \
                 listens there"
            ) && text.ends_with("-e 127.0.0.1:50051"),
            "{text}"
        );
        // With a port, nothing more is said.
        let (text, _) = explained(tonic::Status::unavailable("Connection refused"));
        assert!(
            !text.contains("no port given") && !text.contains("-e "),
            "{text}"
        );
    }

    #[test]
    fn another_grpc_server_is_named_as_such() {
        let e = CliError::NotMintcache {
            status: tonic::Status::unimplemented(""),
            health: format!("its health service knows no {CACHE_SERVICE}"),
        };
        assert_eq!(e.exit(), Exit::Unreachable);
        assert_eq!(e.code(), Some(Code::Unimplemented));
        let text = explain(&e, &connection());
        assert_eq!(
            text,
            "cannot reach a mintcache server at 127.0.0.1:50051: a gRPC server answers there, \
             but it is not a mintcache server (UNIMPLEMENTED; its health service knows no \
             mintcache.v1.Cache). Another program holds this port: give the mintcache server's \
             gRPC address (its server.listen) with -e HOST:PORT or MINTCACHECLI_ENDPOINT"
        );
        assert!(CliError::Client(tonic::Status::unimplemented("").into()).may_be_another_server());
        assert!(!CliError::Client(tonic::Status::not_found("").into()).may_be_another_server());
        let http_404 = tonic::Status::unimplemented(
            "grpc-status header missing, mapped from HTTP status code 404",
        );
        assert!(!CliError::Client(http_404.into()).may_be_another_server());
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(CliError::usage("bad").exit(), Exit::Usage);
        assert_eq!(CliError::Client(Error::NoEndpoint).exit(), Exit::Usage);
    }
}
