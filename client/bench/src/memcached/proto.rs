//! The memcached requests of `--memcached` mode and the parsing of their replies, as pure
//! functions over byte buffers.
//!
//! Meta protocol (what mintcache itself sends): a read is `mg <key> v f t` (value, client flags
//! and remaining TTL, what a mint reader needs), a write `ms <key> <len> T<ttl>`; batches send
//! every command with the quiet flag `q` and close with `mn`, so that memcached answers only
//! hits (and failures) and then `MN`. Text protocol (what twemproxy speaks): `get <key>`,
//! `set <key> 0 <ttl> <len>`, a batched read is one multi-key `get`, a batched write is one
//! `set` per key. Keys are printable ASCII without spaces (checked when the command line is
//! validated), so no key byte can be read by memcached as syntax.

use std::io::Write as _;

use super::super::args::Protocol;
use super::super::keys::KeySpace;
use super::super::record::{Op, Outcome, Tally};

/// What one reply came to.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The call succeeded; its keys by outcome (and per-key errors inside a batch).
    Done(Tally),
    /// The call failed with this memcached error (`ERROR`, `CLIENT_ERROR`, `SERVER_ERROR`).
    Failed(&'static str),
}

/// A reply that does not follow the protocol: the connection cannot be trusted any more.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unexpected reply from memcached: {0}")]
pub(crate) struct ProtocolError(String);

impl ProtocolError {
    /// Bytes that came after the reply to the last request.
    pub(crate) fn trailing(bytes: &[u8]) -> Self {
        Self(format!(
            "{} bytes after the last reply: {}",
            bytes.len(),
            unexpected(bytes).0
        ))
    }
}

fn unexpected(line: &[u8]) -> ProtocolError {
    const SHOWN: usize = 80;
    let shown = &line[..line.len().min(SHOWN)];
    ProtocolError(format!(
        "`{}`",
        String::from_utf8_lossy(shown).escape_debug()
    ))
}

/// Appends the request of `op` on the keys `indices` (one key unless `op` is batched).
pub(crate) fn encode(
    protocol: Protocol,
    op: Op,
    keys: &KeySpace,
    indices: &[u64],
    value: &[u8],
    ttl: u32,
    buf: &mut Vec<u8>,
) {
    match (protocol, op) {
        (Protocol::Meta, Op::Get | Op::GetMany) => {
            let quiet = op == Op::GetMany;
            for &index in indices {
                buf.extend_from_slice(b"mg ");
                keys.write_key(index, buf);
                buf.extend_from_slice(if quiet {
                    b" v f t q\r\n"
                } else {
                    b" v f t\r\n"
                });
            }
            if quiet {
                buf.extend_from_slice(b"mn\r\n");
            }
        }
        (Protocol::Meta, Op::Set | Op::SetMany) => {
            let quiet = op == Op::SetMany;
            for &index in indices {
                buf.extend_from_slice(b"ms ");
                keys.write_key(index, buf);
                // Writing into a Vec cannot fail.
                let _ = write!(buf, " {} T{ttl}", value.len());
                buf.extend_from_slice(if quiet { b" q\r\n" } else { b"\r\n" });
                buf.extend_from_slice(value);
                buf.extend_from_slice(b"\r\n");
            }
            if quiet {
                buf.extend_from_slice(b"mn\r\n");
            }
        }
        (Protocol::Text, Op::Get | Op::GetMany) => {
            buf.extend_from_slice(b"get");
            for &index in indices {
                buf.push(b' ');
                keys.write_key(index, buf);
            }
            buf.extend_from_slice(b"\r\n");
        }
        (Protocol::Text, Op::Set | Op::SetMany) => {
            for &index in indices {
                buf.extend_from_slice(b"set ");
                keys.write_key(index, buf);
                let _ = write!(buf, " 0 {ttl} {}\r\n", value.len());
                buf.extend_from_slice(value);
                buf.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// Parses the reply to a request of `op` on `n` keys at the start of `buf`: `Ok(None)` when
/// more bytes are needed, else the reply and how many bytes it took.
pub(crate) fn parse(
    protocol: Protocol,
    op: Op,
    n: u64,
    buf: &[u8],
) -> Result<Option<(Reply, usize)>, ProtocolError> {
    match (protocol, op) {
        (Protocol::Meta, Op::Get) => meta_get(buf),
        (Protocol::Meta, Op::Set) => single(buf, |line| match line {
            b"HD" => Some(Outcome::Stored),
            b"NS" | b"EX" | b"NF" => Some(Outcome::NotStored),
            _ => None,
        }),
        (Protocol::Meta, Op::GetMany) => meta_get_many(n, buf),
        (Protocol::Meta, Op::SetMany) => meta_set_many(n, buf),
        (Protocol::Text, Op::Get | Op::GetMany) => text_get(n, buf),
        (Protocol::Text, Op::Set) => single(buf, text_store),
        (Protocol::Text, Op::SetMany) => text_set_many(n, buf),
    }
}

/// The line starting at `from` (without its CRLF) and where the next one starts.
fn line(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(from..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], from + end + 2))
}

/// memcached's error replies, by their first word.
fn error_code(line: &[u8]) -> Option<&'static str> {
    if line == b"ERROR" || line.starts_with(b"ERROR ") {
        Some("ERROR")
    } else if line.starts_with(b"CLIENT_ERROR") {
        Some("CLIENT_ERROR")
    } else if line.starts_with(b"SERVER_ERROR") {
        Some("SERVER_ERROR")
    } else {
        None
    }
}

/// The `n`-th space-separated word of a line, as a number.
fn number(line: &[u8], word: usize) -> Result<usize, ProtocolError> {
    line.split(|b| *b == b' ')
        .filter(|w| !w.is_empty())
        .nth(word)
        .and_then(|w| std::str::from_utf8(w).ok())
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| unexpected(line))
}

/// Skips a data block of `len` bytes and its CRLF starting at `from`: where the block ends,
/// or `None` when it is not all in `buf` yet.
fn data_block(
    buf: &[u8],
    from: usize,
    len: usize,
    header: &[u8],
) -> Result<Option<usize>, ProtocolError> {
    let end = from + len + 2;
    if buf.len() < end {
        return Ok(None);
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Err(unexpected(header));
    }
    Ok(Some(end))
}

/// A one-line reply mapped by `outcome`, or an error line.
fn single(
    buf: &[u8],
    outcome: impl Fn(&[u8]) -> Option<Outcome>,
) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let Some((line, next)) = line(buf, 0) else {
        return Ok(None);
    };
    if let Some(outcome) = outcome(line) {
        return Ok(Some((Reply::Done(Tally::one(outcome)), next)));
    }
    match error_code(line) {
        Some(code) => Ok(Some((Reply::Failed(code), next))),
        None => Err(unexpected(line)),
    }
}

fn text_store(line: &[u8]) -> Option<Outcome> {
    match line {
        b"STORED" => Some(Outcome::Stored),
        b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND" => Some(Outcome::NotStored),
        _ => None,
    }
}

fn meta_get(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let Some((line, next)) = line(buf, 0) else {
        return Ok(None);
    };
    if line.starts_with(b"VA ") {
        let len = number(line, 1)?;
        return Ok(data_block(buf, next, len, line)?
            .map(|end| (Reply::Done(Tally::one(Outcome::Hit)), end)));
    }
    if line == b"EN" {
        return Ok(Some((Reply::Done(Tally::one(Outcome::Miss)), next)));
    }
    match error_code(line) {
        Some(code) => Ok(Some((Reply::Failed(code), next))),
        None => Err(unexpected(line)),
    }
}

/// Quiet `mg`s then `mn`: hits come back as `VA` blocks, misses are silent, `MN` closes.
fn meta_get_many(n: u64, buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut tally = Tally::default();
    let (mut hits, mut answered) = (0u64, 0u64);
    let mut pos = 0;
    loop {
        let Some((line, next)) = line(buf, pos) else {
            return Ok(None);
        };
        if line == b"MN" {
            pos = next;
            break;
        }
        answered += 1;
        if answered > n {
            return Err(ProtocolError(format!(
                "more than {n} answers to a batch of {n} reads"
            )));
        }
        if line.starts_with(b"VA ") {
            let len = number(line, 1)?;
            let Some(end) = data_block(buf, next, len, line)? else {
                return Ok(None);
            };
            hits += 1;
            pos = end;
        } else if line == b"EN" {
            // A miss that was not silenced; counted with the silent ones below.
            pos = next;
        } else if let Some(code) = error_code(line) {
            tally.key_error(code, 1);
            pos = next;
        } else {
            return Err(unexpected(line));
        }
    }
    tally.add(Outcome::Hit, hits);
    tally.add(Outcome::Miss, n - hits - tally.key_errors_total());
    Ok(Some((Reply::Done(tally), pos)))
}

/// Quiet `ms`s then `mn`: stored keys are silent, failures answer, `MN` closes.
fn meta_set_many(n: u64, buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut tally = Tally::default();
    let (mut not_stored, mut answered) = (0u64, 0u64);
    let mut pos = 0;
    loop {
        let Some((line, next)) = line(buf, pos) else {
            return Ok(None);
        };
        pos = next;
        if line == b"MN" {
            break;
        }
        answered += 1;
        match line {
            b"HD" => {}
            b"NS" | b"EX" | b"NF" => not_stored += 1,
            _ => match error_code(line) {
                Some(code) => tally.key_error(code, 1),
                None => return Err(unexpected(line)),
            },
        }
        if answered > n {
            return Err(ProtocolError(format!(
                "more than {n} answers to a batch of {n} writes"
            )));
        }
    }
    tally.add(Outcome::NotStored, not_stored);
    tally.add(Outcome::Stored, n - not_stored - tally.key_errors_total());
    Ok(Some((Reply::Done(tally), pos)))
}

/// `VALUE <key> <flags> <len>` blocks, then `END`. An error line is the whole reply (twemproxy
/// answers a multi-key read it cannot serve with one `SERVER_ERROR`).
fn text_get(n: u64, buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut hits = 0u64;
    let mut pos = 0;
    loop {
        let Some((line, next)) = line(buf, pos) else {
            return Ok(None);
        };
        if line == b"END" {
            pos = next;
            break;
        }
        if line.starts_with(b"VALUE ") {
            let len = number(line, 3)?;
            let Some(end) = data_block(buf, next, len, line)? else {
                return Ok(None);
            };
            hits += 1;
            pos = end;
            if hits > n {
                return Err(ProtocolError(format!(
                    "more than {n} values for a read of {n} keys"
                )));
            }
        } else if let Some(code) = error_code(line) {
            return Ok(Some((Reply::Failed(code), next)));
        } else {
            return Err(unexpected(line));
        }
    }
    let mut tally = Tally::default();
    tally.add(Outcome::Hit, hits);
    tally.add(Outcome::Miss, n - hits);
    Ok(Some((Reply::Done(tally), pos)))
}

/// One reply line per `set`.
fn text_set_many(n: u64, buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut tally = Tally::default();
    let mut pos = 0;
    for _ in 0..n {
        let Some((line, next)) = line(buf, pos) else {
            return Ok(None);
        };
        pos = next;
        match text_store(line) {
            Some(outcome) => tally.add(outcome, 1),
            None => match error_code(line) {
                Some(code) => tally.key_error(code, 1),
                None => return Err(unexpected(line)),
            },
        }
    }
    Ok(Some((Reply::Done(tally), pos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> KeySpace {
        KeySpace::new("k:", 100, 1.0)
    }

    fn encoded(protocol: Protocol, op: Op, indices: &[u64]) -> String {
        let mut buf = Vec::new();
        encode(protocol, op, &keys(), indices, b"abc", 60, &mut buf);
        String::from_utf8(buf).expect("ascii")
    }

    #[test]
    fn requests_are_encoded_per_protocol() {
        use Protocol::{Meta, Text};
        let table: [(Protocol, Op, &[u64], &str); 8] = [
            (Meta, Op::Get, &[1], "mg k:00000001 v f t\r\n"),
            (Meta, Op::Set, &[1], "ms k:00000001 3 T60\r\nabc\r\n"),
            (
                Meta,
                Op::GetMany,
                &[1, 2],
                "mg k:00000001 v f t q\r\nmg k:00000002 v f t q\r\nmn\r\n",
            ),
            (
                Meta,
                Op::SetMany,
                &[1, 2],
                "ms k:00000001 3 T60 q\r\nabc\r\nms k:00000002 3 T60 q\r\nabc\r\nmn\r\n",
            ),
            (Text, Op::Get, &[1], "get k:00000001\r\n"),
            (Text, Op::Set, &[1], "set k:00000001 0 60 3\r\nabc\r\n"),
            (Text, Op::GetMany, &[1, 2], "get k:00000001 k:00000002\r\n"),
            (
                Text,
                Op::SetMany,
                &[1, 2],
                "set k:00000001 0 60 3\r\nabc\r\nset k:00000002 0 60 3\r\nabc\r\n",
            ),
        ];
        for (protocol, op, indices, expected) in table {
            assert_eq!(
                encoded(protocol, op, indices),
                expected,
                "{protocol:?} {op:?}"
            );
        }
    }

    /// (outcome counts, key errors) of a complete reply, and the bytes it took.
    fn done(protocol: Protocol, op: Op, n: u64, reply: &[u8]) -> (Vec<(Outcome, u64)>, u64, usize) {
        match parse(protocol, op, n, reply) {
            Ok(Some((Reply::Done(tally), used))) => (
                Outcome::ALL
                    .into_iter()
                    .map(|o| (o, tally.count(o)))
                    .filter(|(_, c)| *c > 0)
                    .collect(),
                tally.key_errors_total(),
                used,
            ),
            other => panic!("{protocol:?} {op:?} {reply:?}: {other:?}"),
        }
    }

    #[test]
    fn single_replies_table() {
        use Outcome::*;
        use Protocol::{Meta, Text};
        let table: [(Protocol, Op, &[u8], Outcome); 8] = [
            (Meta, Op::Get, b"VA 3 f0 t59\r\nabc\r\n", Hit),
            (Meta, Op::Get, b"EN\r\n", Miss),
            (Meta, Op::Set, b"HD\r\n", Stored),
            (Meta, Op::Set, b"NS\r\n", NotStored),
            (
                Text,
                Op::Get,
                b"VALUE k:00000001 0 3\r\nabc\r\nEND\r\n",
                Hit,
            ),
            (Text, Op::Get, b"END\r\n", Miss),
            (Text, Op::Set, b"STORED\r\n", Stored),
            (Text, Op::Set, b"NOT_STORED\r\n", NotStored),
        ];
        for (protocol, op, reply, outcome) in table {
            let (outcomes, errors, used) = done(protocol, op, 1, reply);
            assert_eq!(outcomes, [(outcome, 1)], "{reply:?}");
            assert_eq!((errors, used), (0, reply.len()), "{reply:?}");
        }
    }

    #[test]
    fn values_may_contain_crlf_and_look_like_replies() {
        let reply = b"VA 9 f0 t5\r\nEN\r\nEND\r\n\r\nEN\r\n";
        let (outcomes, _, used) = done(Protocol::Meta, Op::Get, 1, reply);
        assert_eq!(outcomes, [(Outcome::Hit, 1)]);
        assert_eq!(&reply[used..], b"EN\r\n", "the next reply is left in place");
    }

    #[test]
    fn partial_replies_need_more_bytes() {
        let cases: [(Protocol, Op, u64, &[u8]); 7] = [
            (Protocol::Meta, Op::Get, 1, b""),
            (Protocol::Meta, Op::Get, 1, b"VA 3 f0"),
            (Protocol::Meta, Op::Get, 1, b"VA 3 f0 t1\r\nab"),
            (Protocol::Meta, Op::GetMany, 2, b"VA 1 f0 t1\r\na\r\n"),
            (Protocol::Text, Op::GetMany, 2, b"VALUE k 0 1\r\na\r\n"),
            (Protocol::Text, Op::SetMany, 2, b"STORED\r\n"),
            (Protocol::Meta, Op::SetMany, 2, b"NS\r\nM"),
        ];
        for (protocol, op, n, partial) in cases {
            assert!(
                matches!(parse(protocol, op, n, partial), Ok(None)),
                "{protocol:?} {op:?} {partial:?}"
            );
        }
    }

    #[test]
    fn quiet_meta_batches_count_the_silent_keys() {
        use Outcome::*;
        let reply = b"VA 1 f0 t1\r\na\r\nVA 1 f0 t1\r\nb\r\nMN\r\n";
        let (outcomes, errors, used) = done(Protocol::Meta, Op::GetMany, 5, reply);
        assert_eq!(outcomes, [(Hit, 2), (Miss, 3)]);
        assert_eq!((errors, used), (0, reply.len()));

        let (outcomes, errors, _) = done(Protocol::Meta, Op::GetMany, 3, b"MN\r\n");
        assert_eq!((outcomes, errors), (vec![(Miss, 3)], 0));

        let reply = b"VA 1 f0 t1\r\na\r\nSERVER_ERROR out of memory\r\nEN\r\nMN\r\n";
        let (outcomes, errors, _) = done(Protocol::Meta, Op::GetMany, 4, reply);
        assert_eq!(outcomes, [(Hit, 1), (Miss, 2)]);
        assert_eq!(errors, 1);

        let (outcomes, errors, _) = done(Protocol::Meta, Op::SetMany, 4, b"NS\r\nMN\r\n");
        assert_eq!(outcomes, [(Stored, 3), (NotStored, 1)]);
        assert_eq!(errors, 0);
        let (outcomes, errors, _) = done(
            Protocol::Meta,
            Op::SetMany,
            3,
            b"CLIENT_ERROR bad\r\nMN\r\n",
        );
        assert_eq!((outcomes, errors), (vec![(Stored, 2)], 1));
    }

    #[test]
    fn text_batches() {
        use Outcome::*;
        let reply = b"VALUE k:1 0 2\r\nab\r\nVALUE k:3 0 2\r\ncd\r\nEND\r\n";
        let (outcomes, _, used) = done(Protocol::Text, Op::GetMany, 3, reply);
        assert_eq!(outcomes, [(Hit, 2), (Miss, 1)]);
        assert_eq!(used, reply.len());
        let reply = b"STORED\r\nNOT_STORED\r\nSERVER_ERROR busy\r\n";
        let (outcomes, errors, _) = done(Protocol::Text, Op::SetMany, 3, reply);
        assert_eq!((outcomes, errors), (vec![(Stored, 1), (NotStored, 1)], 1));
    }

    #[test]
    fn error_lines_fail_single_calls() {
        let cases: [(Protocol, Op, &[u8], &str); 5] = [
            (
                Protocol::Meta,
                Op::Get,
                b"SERVER_ERROR busy\r\n",
                "SERVER_ERROR",
            ),
            (
                Protocol::Meta,
                Op::Set,
                b"CLIENT_ERROR bad data chunk\r\n",
                "CLIENT_ERROR",
            ),
            (Protocol::Text, Op::Get, b"ERROR\r\n", "ERROR"),
            (
                Protocol::Text,
                Op::GetMany,
                b"SERVER_ERROR Connection refused\r\n",
                "SERVER_ERROR",
            ),
            (
                Protocol::Text,
                Op::Set,
                b"SERVER_ERROR object too large\r\n",
                "SERVER_ERROR",
            ),
        ];
        for (protocol, op, reply, code) in cases {
            match parse(protocol, op, 1, reply) {
                Ok(Some((Reply::Failed(c), used))) => {
                    assert_eq!((c, used), (code, reply.len()), "{reply:?}");
                }
                other => panic!("{reply:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let cases: [(Protocol, Op, u64, &[u8]); 6] = [
            (Protocol::Meta, Op::Get, 1, b"HELLO\r\n"),
            (Protocol::Meta, Op::Get, 1, b"VA x\r\n"),
            (Protocol::Meta, Op::Get, 1, b"VA 1 f0\r\nabc\r\n"),
            (
                Protocol::Text,
                Op::Get,
                1,
                b"VALUE k 0 1\r\na\r\nVALUE k 0 1\r\nb\r\nEND\r\n",
            ),
            (Protocol::Meta, Op::GetMany, 1, b"EN\r\nEN\r\nMN\r\n"),
            (Protocol::Text, Op::Set, 1, b"HD\r\n"),
        ];
        for (protocol, op, n, reply) in cases {
            assert!(
                parse(protocol, op, n, reply).is_err(),
                "{protocol:?} {op:?} {reply:?}"
            );
        }
    }
}
