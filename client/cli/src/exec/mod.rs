//! One function per command: from parsed arguments to a [`Report`] (or an error); the batch
//! commands are in `many`. The [`Session`] holds the client and what the shell may change
//! between commands.

mod many;

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use mintcache_client::{Backoff, Client, Error, LeaseToken, Lookup, Outcome, ServingStatus};
use serde_json::json;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use self::many::{delete_many, get_many, set_many};
use super::args::{Command, Connection, CounterArgs, OutputArgs, WriteArgs};
use super::batch;
use super::errors::{CACHE_SERVICE, CliError};
use super::exit::Exit;
use super::output::{
    DEGRADED_WARNING, Data, Report, Sink, duration_text, fail, key_text, lookup_feedback,
    lookup_json, readable,
};
use super::stats;
use super::terminal::Terminal;

/// The client and the settings commands run with.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) connection: Connection,
    pub(crate) terminal: Terminal,
}

/// What a command may read from stdin.
pub(crate) enum Input<'a> {
    /// The process's stdin (values, key lists, the flush confirmation).
    Stdin(&'a mut dyn BufRead),
    /// None: in the shell, values and keys are given on the command line.
    Shell,
}

impl Session {
    pub(crate) fn new(connection: &Connection, terminal: Terminal) -> Result<Self, CliError> {
        Ok(Self {
            client: client(connection)?,
            connection: connection.clone(),
            terminal,
        })
    }

    /// Runs one command, shows its report, and gives its exit status.
    pub(crate) async fn run_command(
        &mut self,
        command: &Command,
        output: OutputArgs,
        stdin: &mut dyn BufRead,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
        in_shell: bool,
    ) -> Exit {
        let input = if in_shell {
            Input::Shell
        } else {
            Input::Stdin(stdin)
        };
        let result = match self.execute(command, output, input, stderr).await {
            Err(e) if e.may_be_another_server() => Err(self.identify(e).await),
            result => result,
        };
        let mut sink = Sink {
            stdout,
            stderr,
            terminal: self.terminal,
            output,
            in_shell,
        };
        match result.and_then(|report| sink.show(&report).map(|()| report.exit)) {
            Ok(exit) => exit,
            Err(e) => fail(&e, &self.connection, output.json, sink.stdout, sink.stderr),
        }
    }

    /// An `UNIMPLEMENTED` answer comes from a mintcache server older than this CLI, or from
    /// a gRPC server that is not mintcache at all (another program on the port): its health
    /// service tells them apart, since a mintcache server answers for `mintcache.v1.Cache`.
    async fn identify(&self, e: CliError) -> CliError {
        let CliError::Client(Error::Status(status)) = e else {
            return e;
        };
        match self.client.health(CACHE_SERVICE).await {
            Err(Error::Status(answer)) if answer.code() == Code::NotFound => {
                CliError::NotMintcache {
                    status,
                    health: format!("its health service knows no {CACHE_SERVICE}"),
                }
            }
            Err(Error::Status(answer)) if answer.code() == Code::Unimplemented => {
                CliError::NotMintcache {
                    status,
                    health: "it has no gRPC health service".to_owned(),
                }
            }
            _ => CliError::Client(Error::Status(status)),
        }
    }

    /// Runs one command: each has its function below.
    async fn execute(
        &self,
        command: &Command,
        output: OutputArgs,
        input: Input<'_>,
        stderr: &mut dyn Write,
    ) -> Result<Report, CliError> {
        let client = &self.client;
        match command {
            Command::Get {
                key,
                elect,
                lease_on_miss,
            } => get(client, &bytes(key), *elect, *lease_on_miss).await,
            Command::Inspect { key } => inspect(client, &bytes(key)).await,
            Command::Set {
                key,
                value,
                write,
                lease,
            } => {
                let value = value_input(value.as_ref(), write, input, self.terminal)?;
                set(client, bytes(key), value, write, lease.as_ref()).await
            }
            Command::Add { key, value, write } => {
                let value = value_input(value.as_ref(), write, input, self.terminal)?;
                add(client, bytes(key), value, write).await
            }
            Command::Delete { key } => delete(client, bytes(key)).await,
            Command::Invalidate { key } => invalidate(client, bytes(key)).await,
            Command::Touch {
                key,
                ttl,
                no_expiry,
            } => touch(client, bytes(key), *ttl, *no_expiry).await,
            Command::Incr { key, delta, create } => {
                counter(client, &bytes(key), *delta, create).await
            }
            Command::Decr { key, delta, create } => {
                counter(client, &bytes(key), -i64::from(*delta), create).await
            }
            Command::GetMany { keys, input: opts } => {
                let keys = batch::keys(keys, opts.base64, input.stdin())?;
                get_many(client, keys, opts.base64).await
            }
            Command::SetMany {
                pairs,
                write,
                input: opts,
            } => {
                let items = batch::items(pairs, opts.base64, input.stdin())?;
                set_many(client, items, write).await
            }
            Command::DeleteMany { keys, input: opts } => {
                let keys = batch::keys(keys, opts.base64, input.stdin())?;
                delete_many(client, keys).await
            }
            Command::Flush { yes } => self.flush(*yes, input, stderr).await,
            Command::Stats { raw } => self.stats(*raw, output).await,
            Command::Health { service } => health(client, service.as_deref()).await,
            Command::Shell => Err(CliError::usage("already in the shell")),
        }
    }

    /// `stats`: the server's counters from its admin port.
    async fn stats(&self, raw: bool, output: OutputArgs) -> Result<Report, CliError> {
        if raw && output.json {
            return Err(CliError::usage(
                "stats --raw prints the Prometheus text: it cannot be JSON (drop --json)",
            ));
        }
        stats::report(&self.connection, raw).await
    }

    async fn flush(
        &self,
        yes: bool,
        input: Input<'_>,
        stderr: &mut dyn Write,
    ) -> Result<Report, CliError> {
        let space = self.key_space();
        if !yes {
            let Input::Stdin(stdin) = input else {
                return Err(CliError::usage(format!(
                    "flush drops every key of {space}: confirm with `flush --yes`"
                )));
            };
            if !self.terminal.stdin {
                return Err(CliError::usage(format!(
                    "flush drops every key of {space}: pass --yes (stdin is not a terminal to \
                     ask on)"
                )));
            }
            let _ = write!(
                stderr,
                "Drop every key of {space} on {}? [y/N] ",
                self.connection.endpoints.join(", ")
            );
            let _ = stderr.flush();
            let mut answer = String::new();
            stdin.read_line(&mut answer).map_err(CliError::Stdin)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
                return Ok(Report::new(Exit::Miss, json!({ "flushed": false }))
                    .feedback("not flushed: not confirmed"));
            }
        }
        let flushed = self.client.flush().await?;
        Ok(
            Report::new(Exit::from_bool(flushed), json!({ "flushed": flushed })).feedback(
                if flushed {
                    format!("flushed: every key of {space} is gone")
                } else {
                    "not flushed (debug mode off)".to_owned()
                },
            ),
        )
    }

    /// The key space the session's calls use, in words.
    pub(crate) fn key_space(&self) -> String {
        let version = match &self.connection.cache_version {
            Some(v) => format!("version {v}"),
            None => "the server's default version".to_owned(),
        };
        match &self.connection.namespace {
            Some(ns) if ns.is_empty() => format!("{version} (no namespace)"),
            Some(ns) => format!("{version}, namespace {ns}"),
            None => version,
        }
    }
}

impl<'a> Input<'a> {
    fn stdin(self) -> Option<&'a mut dyn BufRead> {
        match self {
            Self::Stdin(stdin) => Some(stdin),
            Self::Shell => None,
        }
    }
}

fn bytes(s: &OsString) -> Vec<u8> {
    s.clone().into_encoded_bytes()
}

/// The value of `set`/`add`: the argument, or stdin (`-`, or nothing when stdin is not a
/// terminal). An empty value needs `--allow-empty`.
fn value_input(
    value: Option<&OsString>,
    write: &WriteArgs,
    input: Input<'_>,
    terminal: Terminal,
) -> Result<Vec<u8>, CliError> {
    let (value, source) = match (value, input) {
        (Some(v), _) if v != "-" => (bytes(v), "the value"),
        (_, Input::Shell) => {
            return Err(CliError::usage(
                "no value: in the shell, give it as an argument (set KEY VALUE)",
            ));
        }
        (None, Input::Stdin(_)) if terminal.stdin => {
            return Err(CliError::usage(
                "no value: give it as an argument (mintcache set KEY VALUE), pipe it on stdin \
                 (... | mintcache set KEY), or pass `-` to type it (end with Ctrl-D)",
            ));
        }
        (_, Input::Stdin(stdin)) => {
            let mut buf = Vec::new();
            stdin.read_to_end(&mut buf).map_err(CliError::Stdin)?;
            (buf, "stdin")
        }
    };
    if value.is_empty() && !write.allow_empty {
        return Err(CliError::usage(format!(
            "{source} is empty: pass --allow-empty to store an empty value"
        )));
    }
    Ok(value)
}

fn read_report(key: &[u8], lookup: &Lookup) -> Report {
    let mut report = Report::new(
        Exit::from_bool(lookup.outcome.is_usable()),
        lookup_json(key, lookup),
    )
    .feedback(lookup_feedback(lookup));
    if let Some(value) = lookup.usable_value() {
        report.data = Data::Value(value.to_vec());
    }
    if lookup.degraded {
        report.warnings.push(DEGRADED_WARNING.to_owned());
    }
    report
}

/// `inspect`: everything about a key, one `name  value` line each.
fn inspect_text(key: &[u8], l: &Lookup) -> String {
    let state = match l.outcome {
        Outcome::Hit => "HIT (fresh)",
        Outcome::Stale => "STALE (past its soft expiry, still servable)",
        Outcome::Miss if l.degraded => "MISS (the cache backend is unavailable)",
        Outcome::Miss => "MISS (no value)",
        Outcome::Pending => "PENDING (a caller is filling it)",
        Outcome::Refresh => "REFRESH",
    };
    let mut lines = vec![("key", key_text(key)), ("state", state.to_owned())];
    if l.outcome.has_value() {
        let expiry = if l.no_expiry {
            "never".to_owned()
        } else if l.counter {
            format!("in {}", duration_text(l.ttl))
        } else if l.outcome == Outcome::Hit {
            format!(
                "stale in {}, gone in {}",
                duration_text(l.ttl),
                duration_text(l.ttl + l.grace)
            )
        } else {
            format!("gone in {}", duration_text(l.grace))
        };
        lines.extend([
            ("ttl", format!("{}s", l.ttl.as_secs())),
            ("grace", format!("{}s", l.grace.as_secs())),
            ("expires", expiry),
            ("flags", l.flags.to_string()),
            ("counter", if l.counter { "yes" } else { "no" }.to_owned()),
            ("size", format!("{} bytes", l.value.len())),
            ("value", readable(&l.value)),
        ]);
    }
    lines
        .into_iter()
        .map(|(name, value)| format!("{name:<8}{value}\n"))
        .collect()
}

/// `get`: a peek, or with `--elect` a read that takes part in the refresh election.
async fn get(
    client: &Client,
    key: &[u8],
    elect: bool,
    lease_on_miss: bool,
) -> Result<Report, CliError> {
    let lookup = if elect {
        let client = if lease_on_miss {
            client.with_lease_on_miss(true)
        } else {
            client.clone()
        };
        client.get(key.to_vec()).await?
    } else {
        client.peek(key.to_vec()).await?
    };
    Ok(read_report(key, &lookup))
}

/// `inspect`: a peek, shown as everything about the key.
async fn inspect(client: &Client, key: &[u8]) -> Result<Report, CliError> {
    let lookup = client.peek(key.to_vec()).await?;
    let mut report = read_report(key, &lookup);
    report.data = Data::Text(inspect_text(key, &lookup));
    report.feedback = None;
    Ok(report)
}

async fn set(
    client: &Client,
    key: Vec<u8>,
    value: Vec<u8>,
    write: &WriteArgs,
    lease: Option<&LeaseToken>,
) -> Result<Report, CliError> {
    let stored = client
        .set_with(key, value, &write.options(lease.cloned()))
        .await?;
    let not_stored = if lease.is_some() {
        "not stored: lease outdated (the key was set, deleted or invalidated since the read \
         that gave this lease)"
    } else {
        "not stored"
    };
    Ok(
        Report::new(Exit::from_bool(stored), json!({ "stored": stored })).feedback(if stored {
            "stored"
        } else {
            not_stored
        }),
    )
}

async fn add(
    client: &Client,
    key: Vec<u8>,
    value: Vec<u8>,
    write: &WriteArgs,
) -> Result<Report, CliError> {
    let stored = client.add(key, value, &write.options(None)).await?;
    Ok(
        Report::new(Exit::from_bool(stored), json!({ "stored": stored })).feedback(if stored {
            "stored"
        } else {
            "not stored: the key already holds a value"
        }),
    )
}

async fn delete(client: &Client, key: Vec<u8>) -> Result<Report, CliError> {
    let deleted = client.delete(key).await?;
    Ok(
        Report::new(Exit::from_bool(deleted), json!({ "deleted": deleted })).feedback(if deleted {
            "deleted"
        } else {
            "not found"
        }),
    )
}

async fn invalidate(client: &Client, key: Vec<u8>) -> Result<Report, CliError> {
    let invalidated = client.invalidate(key).await?;
    Ok(Report::new(
        Exit::from_bool(invalidated),
        json!({ "invalidated": invalidated }),
    )
    .feedback(if invalidated {
        "invalidated: the next reader refreshes it, the others get the stale value meanwhile"
    } else {
        "not found"
    }))
}

/// `touch`: a new fresh ttl (`0`: the server's default), or never to expire.
async fn touch(
    client: &Client,
    key: Vec<u8>,
    ttl: u64,
    no_expiry: bool,
) -> Result<Report, CliError> {
    let touched = if no_expiry {
        client.persist(key).await?
    } else {
        client.touch(key, Duration::from_secs(ttl)).await?
    };
    let feedback = match (touched, no_expiry, ttl) {
        (false, _, _) => "not found".to_owned(),
        (true, true, _) => "touched: never expires".to_owned(),
        (true, false, 0) => "touched: fresh for the server's default ttl".to_owned(),
        (true, false, ttl) => format!(
            "touched: fresh for {}",
            duration_text(Duration::from_secs(ttl))
        ),
    };
    Ok(Report::new(Exit::from_bool(touched), json!({ "touched": touched })).feedback(feedback))
}

async fn counter(
    client: &Client,
    key: &[u8],
    delta: i64,
    create: &CounterArgs,
) -> Result<Report, CliError> {
    let value = match create.initial {
        Some(initial) if create.no_expiry => Some(
            client
                .increment_or_create_no_expiry(key.to_vec(), delta, initial)
                .await?,
        ),
        Some(initial) => Some(
            client
                .increment_or_create(
                    key.to_vec(),
                    delta,
                    initial,
                    Duration::from_secs(create.ttl),
                )
                .await?,
        ),
        None => client.increment(key.to_vec(), delta).await?,
    };
    let report = Report::new(Exit::from_bool(value.is_some()), json!({ "value": value }));
    Ok(match value {
        Some(value) => report.data(Data::Text(format!("{value}\n"))),
        None => report.feedback(format!(
            "not found: no counter {} (create it with --initial N)",
            key_text(key)
        )),
    })
}

/// `health [SERVICE]`. Without SERVICE it asks about `mintcache.v1.Cache`, which a mintcache
/// server answers for as for the whole server: so a gRPC server of another kind on the port
/// is found out rather than reported `SERVING`. A SERVICE the server does not know is
/// `SERVICE_UNKNOWN` (exit 1), as the health protocol's `Watch` says it.
async fn health(client: &Client, service: Option<&str>) -> Result<Report, CliError> {
    let asked = service.unwrap_or(CACHE_SERVICE);
    let (status, unknown) = match client.health(asked).await {
        Ok(status) => (status, false),
        Err(Error::Status(answer)) if answer.code() == Code::NotFound => {
            if service.is_none() {
                return Err(CliError::NotMintcache {
                    status: answer,
                    health: format!("its health service knows no {CACHE_SERVICE}"),
                });
            }
            (ServingStatus::ServiceUnknown, true)
        }
        Err(e) => return Err(e.into()),
    };
    let name = status.as_str_name();
    let mut report = Report::new(
        Exit::from_bool(status == ServingStatus::Serving),
        json!({ "status": name }),
    )
    .data(Data::Text(format!("{name}\n")));
    if unknown {
        report = report.feedback(format!(
            "the server's health service knows no service {asked:?} (a mintcache server \
             answers for \"\" and {CACHE_SERVICE})"
        ));
    }
    Ok(report)
}

/// The client a session calls with.
pub(crate) fn client(c: &Connection) -> Result<Client, CliError> {
    let mut builder = Client::builder()
        .endpoints(c.endpoints.iter().map(|e| e.trim().to_owned()))
        .timeout(c.timeout)
        .retry(Backoff {
            max_attempts: c.retries.saturating_add(1),
            ..Backoff::UNAVAILABLE_DEFAULT
        });
    if let Some(v) = &c.cache_version {
        builder = builder.version(v);
    }
    if let Some(ns) = &c.namespace {
        builder = builder.namespace(ns);
    }
    if let Some(token) = &c.token {
        builder = builder.token(token);
    }
    if let Some(tls) = tls_config(c)? {
        builder = builder.tls(tls);
    }
    let client = builder.build()?;
    Ok(match c.debug {
        Some(mode) => client.with_debug(mode.into()),
        None => client,
    })
}

fn tls_config(c: &Connection) -> Result<Option<ClientTlsConfig>, CliError> {
    let read = |what, path: &PathBuf| {
        std::fs::read(path).map_err(|source| CliError::File {
            what,
            path: path.clone(),
            source,
        })
    };
    if !(c.tls || c.tls_ca.is_some() || c.tls_cert.is_some() || c.tls_domain.is_some()) {
        return Ok(None);
    }
    let mut config = ClientTlsConfig::new();
    config = match &c.tls_ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?)),
        None => config.with_enabled_roots(),
    };
    if let (Some(cert), Some(key)) = (&c.tls_cert, &c.tls_key) {
        config = config.identity(Identity::from_pem(
            read("certificate", cert)?,
            read("private key", key)?,
        ));
    }
    if let Some(domain) = &c.tls_domain {
        config = config.domain_name(domain);
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_args(allow_empty: bool) -> WriteArgs {
        WriteArgs {
            ttl: 0,
            grace: 0,
            flags: 0,
            no_expiry: false,
            no_grace: false,
            counter: false,
            allow_empty,
        }
    }

    #[test]
    fn values_come_from_the_argument_or_stdin_byte_for_byte() {
        let mut stdin: &[u8] = b"line\n\0\xff";
        assert_eq!(
            value_input(
                None,
                &write_args(false),
                Input::Stdin(&mut stdin),
                Terminal::NONE
            )
            .expect("read"),
            b"line\n\0\xff"
        );
        let mut stdin: &[u8] = b"from stdin";
        let dash = OsString::from("-");
        assert_eq!(
            value_input(
                Some(&dash),
                &write_args(false),
                Input::Stdin(&mut stdin),
                Terminal::ALL
            )
            .expect("read"),
            b"from stdin"
        );
        let arg = OsString::from("arg");
        assert_eq!(
            value_input(Some(&arg), &write_args(false), Input::Shell, Terminal::ALL).expect("read"),
            b"arg"
        );
    }

    #[test]
    fn a_missing_or_empty_value_is_refused_clearly() {
        // A terminal on stdin and no value: refused, not a silent wait for Ctrl-D.
        let mut stdin: &[u8] = b"";
        let e = value_input(
            None,
            &write_args(false),
            Input::Stdin(&mut stdin),
            Terminal::ALL,
        )
        .expect_err("no value");
        assert!(e.to_string().contains("give it as an argument"), "{e}");
        assert_eq!(e.exit(), Exit::Usage);
        // An empty stdin (`</dev/null`): refused unless --allow-empty.
        let mut stdin: &[u8] = b"";
        let e = value_input(
            None,
            &write_args(false),
            Input::Stdin(&mut stdin),
            Terminal::NONE,
        )
        .expect_err("empty");
        assert!(e.to_string().contains("--allow-empty"), "{e}");
        let mut stdin: &[u8] = b"";
        assert_eq!(
            value_input(
                None,
                &write_args(true),
                Input::Stdin(&mut stdin),
                Terminal::NONE
            )
            .expect("allowed"),
            b""
        );
        let empty = OsString::new();
        assert!(
            value_input(
                Some(&empty),
                &write_args(false),
                Input::Shell,
                Terminal::ALL
            )
            .is_err()
        );
        assert!(value_input(None, &write_args(false), Input::Shell, Terminal::ALL).is_err());
    }

    #[test]
    fn inspect_shows_every_detail() {
        let l = Lookup {
            outcome: Outcome::Hit,
            value: b"Ada".to_vec(),
            flags: 3,
            ttl: Duration::from_secs(60),
            grace: Duration::from_secs(30),
            no_expiry: false,
            counter: false,
            lease: None,
            degraded: false,
        };
        let text = inspect_text(b"user:42", &l);
        for line in [
            "key     user:42\n",
            "state   HIT (fresh)\n",
            "ttl     60s\n",
            "grace   30s\n",
            "expires stale in 1m, gone in 1m30s\n",
            "flags   3\n",
            "counter no\n",
            "size    3 bytes\n",
            "value   Ada\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        let miss = Lookup {
            outcome: Outcome::Miss,
            value: Vec::new(),
            ..l
        };
        assert_eq!(
            inspect_text(b"k", &miss),
            "key     k\nstate   MISS (no value)\n"
        );
    }
}
