//! How a command's result is shown: the data on stdout (a raw value, lines, a number), a
//! one-line report of what happened on stderr when it is a terminal (in the shell on a
//! terminal: on stdout, after the data), warnings and per-key errors on stderr, or one JSON
//! object with `--json` (errors too).

use std::io::Write;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mintcache_client::{Lookup, Outcome};
use serde_json::{Value, json};

use super::args::{Connection, OutputArgs};
use super::errors::{CliError, explain};
use super::exit::Exit;
use super::terminal::Terminal;

/// What a command produced.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) exit: Exit,
    /// The `--json` object.
    pub(crate) json: Value,
    /// What goes on stdout without `--json`.
    pub(crate) data: Data,
    /// One line saying what happened, for people.
    pub(crate) feedback: Option<String>,
    /// Shown on stderr whatever the mode (e.g. a read answered degraded).
    pub(crate) warnings: Vec<String>,
    /// Per-key errors of a batch, shown on stderr whatever the mode.
    pub(crate) errors: Vec<String>,
}

impl Report {
    pub(crate) fn new(exit: Exit, json: Value) -> Self {
        Self {
            exit,
            json,
            data: Data::None,
            feedback: None,
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn data(mut self, data: Data) -> Self {
        self.data = data;
        self
    }

    pub(crate) fn feedback(mut self, line: impl Into<String>) -> Self {
        self.feedback = Some(line.into());
        self
    }
}

/// The stdout part of a report.
#[derive(Debug)]
pub(crate) enum Data {
    None,
    /// A stored value: byte for byte into a pipe; readable (escaped if binary, with a final
    /// newline) on a terminal.
    Value(Vec<u8>),
    /// Text, printed as is.
    Text(String),
    /// Bytes, printed as is (lines made of stored keys and values).
    Raw(Vec<u8>),
}

/// Where a report goes.
pub(crate) struct Sink<'a> {
    pub(crate) stdout: &'a mut dyn Write,
    pub(crate) stderr: &'a mut dyn Write,
    pub(crate) terminal: Terminal,
    pub(crate) output: OutputArgs,
    /// In the shell, each value ends with a newline (one per line), and on a terminal the
    /// report line follows the data on stdout.
    pub(crate) in_shell: bool,
}

impl Sink<'_> {
    pub(crate) fn show(&mut self, report: &Report) -> Result<(), CliError> {
        for warning in &report.warnings {
            self.err_line(&format!("mintcache: warning: {warning}"));
        }
        if self.output.json {
            // Per-key errors are in the object's results.
            return self.out(format!("{}\n", report.json).as_bytes());
        }
        for error in &report.errors {
            self.err_line(&format!("mintcache: error: {error}"));
        }
        match &report.data {
            Data::None => {}
            Data::Value(bytes) if self.terminal.stdout => {
                let shown = readable(bytes);
                self.out(shown.as_bytes())?;
                if !shown.ends_with('\n') {
                    self.out(b"\n")?;
                }
            }
            // The shell's values into a pipe: as stored, one per line.
            Data::Value(bytes) if self.in_shell => {
                self.out(bytes)?;
                if !bytes.ends_with(b"\n") {
                    self.out(b"\n")?;
                }
            }
            Data::Value(bytes) => self.out(bytes)?,
            Data::Text(text) => self.out(text.as_bytes())?,
            Data::Raw(bytes) => self.out(bytes)?,
        }
        // Reports are for people: only on a terminal. Into a pipe, stdout carries the data
        // alone, even in the shell.
        if let Some(line) = &report.feedback
            && !self.output.quiet
        {
            if self.in_shell && self.terminal.stdout {
                self.out(format!("{line}\n").as_bytes())?;
            } else if self.terminal.stderr {
                self.err_line(line);
            }
        }
        Ok(())
    }

    fn out(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        self.stdout
            .write_all(bytes)
            .and_then(|()| self.stdout.flush())
            .map_err(CliError::Stdout)
    }

    fn err_line(&mut self, line: &str) {
        // Nothing sensible remains to be done when stderr itself is gone.
        let _ = writeln!(self.stderr, "{line}");
    }
}

/// Shows an error and gives its exit status: on stderr, or with `--json` as a JSON object on
/// stdout (see [`error_json`]).
pub(crate) fn fail(
    e: &CliError,
    connection: &Connection,
    json: bool,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Exit {
    let exit = e.exit();
    let message = explain(e, connection);
    let code = e.code().map(mintcache_client::code_name);
    show_error(exit, code, &message, json, stdout, stderr);
    exit
}

/// Shows an error message: `mintcache: error: MESSAGE` on stderr, or `--json`'s object on
/// stdout.
pub(crate) fn show_error(
    exit: Exit,
    code: Option<&str>,
    message: &str,
    json: bool,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) {
    // Nothing sensible remains to be done when the stream itself is gone.
    if json {
        let _ = writeln!(stdout, "{}", error_json(exit, code, message));
        let _ = stdout.flush();
    } else {
        let _ = writeln!(stderr, "mintcache: error: {message}");
    }
}

/// An error under `--json`: `{"error": {"exit": 3, "kind": "unreachable", "code":
/// "UNAVAILABLE", "message": "..."}}`. `kind` names the exit status (`usage`, `unreachable`,
/// `failed`, `backend_unavailable`); `code` is the gRPC status code, or null when the error
/// is not one (bad arguments, an unreadable file, the admin port).
pub(crate) fn error_json(exit: Exit, code: Option<&str>, message: &str) -> Value {
    let kind = match exit {
        Exit::Success => "success",
        Exit::Miss => "miss",
        Exit::Usage => "usage",
        Exit::Unreachable => "unreachable",
        Exit::Failed => "failed",
        Exit::BackendUnavailable => "backend_unavailable",
    };
    json!({
        "error": {
            "exit": exit.code(),
            "kind": kind,
            "code": code,
            "message": message,
        }
    })
}

/// A value as a person can read it: UTF-8 text as is, other bytes (and control characters
/// other than newline and tab) escaped, in double quotes, as redis-cli does.
pub(crate) fn readable(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t') =>
        {
            text.to_owned()
        }
        _ => format!("\"{}\"", bytes.escape_ascii()),
    }
}

/// A key as shown in reports: readable, quoted when it needs escapes.
pub(crate) fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if !text.chars().any(|c| c.is_control() || c == ' ') => text.to_owned(),
        _ => format!("\"{}\"", key.escape_ascii()),
    }
}

/// `90s`, `2m30s`, `3h`, `2d4h`: short, exact to the second.
pub(crate) fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    let parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")];
    let text: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() { "0s".into() } else { text }
}

/// The JSON fields of a read answer.
pub(crate) fn lookup_json(key: &[u8], l: &Lookup) -> Value {
    json!({
        "key": std::str::from_utf8(key).ok(),
        "outcome": l.outcome.as_str(),
        "value": std::str::from_utf8(&l.value).ok(),
        "value_base64": BASE64.encode(&l.value),
        "flags": l.flags,
        "ttl_seconds": l.ttl.as_secs(),
        "grace_seconds": l.grace.as_secs(),
        "no_expiry": l.no_expiry,
        "counter": l.counter,
        "lease_token": l.lease.as_ref().map(ToString::to_string),
        "degraded": l.degraded,
    })
}

/// The one-line report of a read: outcome, then what it means.
pub(crate) fn lookup_feedback(l: &Lookup) -> String {
    let mut details = Vec::new();
    match l.outcome {
        Outcome::Hit if l.counter => details.push("counter".to_owned()),
        Outcome::Hit if l.no_expiry => details.push("never expires".to_owned()),
        Outcome::Hit if l.grace.is_zero() => {
            details.push(format!("fresh for {}, no grace", duration_text(l.ttl)));
        }
        Outcome::Hit => details.push(format!(
            "fresh for {}, then stale for {}",
            duration_text(l.ttl),
            duration_text(l.grace)
        )),
        Outcome::Stale => details.push(format!(
            "past its soft expiry; servable for {} more while a reader refreshes it",
            duration_text(l.grace)
        )),
        Outcome::Refresh => details.push(match &l.lease {
            Some(lease) => format!(
                "stale, and this caller won the refresh: compute the value and store it with \
                 --lease {lease}"
            ),
            None => "stale, and this caller won the refresh".to_owned(),
        }),
        Outcome::Miss if l.degraded => {
            details.push("the read failed open: the cache backend is unavailable".to_owned());
        }
        Outcome::Miss => {
            if let Some(lease) = &l.lease {
                details.push(format!(
                    "lease {lease}: store the value with --lease {lease}"
                ));
            }
        }
        Outcome::Pending => {
            details.push("another caller is filling this key; retry shortly".to_owned());
        }
    }
    if l.flags != 0 {
        details.push(format!("flags {}", l.flags));
    }
    if !l.value.is_empty() && std::str::from_utf8(&l.value).is_err() {
        details.push(format!("{} bytes of binary, shown escaped", l.value.len()));
    }
    if details.is_empty() {
        l.outcome.as_str().to_owned()
    } else {
        format!("{} ({})", l.outcome, details.join("; "))
    }
}

/// The warning of a read the server answered degraded.
pub(crate) const DEGRADED_WARNING: &str = "the cache backend behind the server (memcached) is \
    unavailable: the server answered this read as a miss (x-cache-degraded: 1)";

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(outcome: Outcome) -> Lookup {
        Lookup {
            outcome,
            value: b"v".to_vec(),
            flags: 0,
            ttl: Duration::from_secs(58),
            grace: Duration::from_secs(30),
            no_expiry: false,
            counter: false,
            lease: None,
            degraded: false,
        }
    }

    #[test]
    fn durations_are_short_and_exact() {
        assert_eq!(duration_text(Duration::ZERO), "0s");
        assert_eq!(duration_text(Duration::from_secs(90)), "1m30s");
        assert_eq!(duration_text(Duration::from_secs(3600)), "1h");
        assert_eq!(duration_text(Duration::from_secs(2 * 86400 + 5)), "2d5s");
    }

    #[test]
    fn values_are_readable_on_a_terminal() {
        assert_eq!(readable(b"line 1\nline 2\n"), "line 1\nline 2\n");
        assert_eq!(readable("é\tok".as_bytes()), "é\tok");
        assert_eq!(readable(b"\x00\xff\r"), "\"\\x00\\xff\\r\"");
        assert_eq!(key_text(b"user:42"), "user:42");
        assert_eq!(key_text(b"a b"), "\"a b\"");
    }

    #[test]
    fn every_outcome_has_a_one_line_report() {
        assert_eq!(
            lookup_feedback(&lookup(Outcome::Hit)),
            "HIT (fresh for 58s, then stale for 30s)"
        );
        let stale = Lookup {
            grace: Duration::from_secs(12),
            ttl: Duration::ZERO,
            ..lookup(Outcome::Stale)
        };
        assert!(
            lookup_feedback(&stale).starts_with("STALE (past its soft expiry; servable for 12s")
        );
        let refresh = Lookup {
            lease: Some(mintcache_client::LeaseToken::from(vec![1, 3])),
            ..lookup(Outcome::Refresh)
        };
        assert!(lookup_feedback(&refresh).contains("--lease 0103"));
        let miss = Lookup {
            lease: Some(mintcache_client::LeaseToken::from(vec![2])),
            value: Vec::new(),
            ..lookup(Outcome::Miss)
        };
        assert_eq!(
            lookup_feedback(&miss),
            "MISS (lease 02: store the value with --lease 02)"
        );
        let plain_miss = Lookup {
            value: Vec::new(),
            ..lookup(Outcome::Miss)
        };
        assert_eq!(lookup_feedback(&plain_miss), "MISS");
        assert!(lookup_feedback(&lookup(Outcome::Pending)).starts_with("PENDING (another"));
        let forever = Lookup {
            no_expiry: true,
            flags: 9,
            ..lookup(Outcome::Hit)
        };
        assert_eq!(lookup_feedback(&forever), "HIT (never expires; flags 9)");
        let degraded = Lookup {
            degraded: true,
            value: Vec::new(),
            ..lookup(Outcome::Miss)
        };
        assert!(lookup_feedback(&degraded).contains("cache backend is unavailable"));
    }
}
