//! memcached's meta protocol on the wire: commands written into buffers, replies parsed out of
//! a read buffer. Pure code, no I/O.
//!
//! Every command carries an opaque (`O<n>`) that memcached echoes in its reply, so that a
//! connection can prove each reply belongs to the command it is matched with (replies come back
//! in command order; see [`super::conn`]). Keys are written as one safe token
//! ([`StoreKey::wire_token`]): printable ASCII without spaces, or base64 with the `b` flag.
//!
//! Replies: `VA <size> <flags>*` + data, `HD`, `EN`, `NF`, `NS`, `EX`, `MN` (each with flags),
//! `VERSION …`, `CLIENT_ERROR …`, `SERVER_ERROR …`, `ERROR`. Anything else means the peer is not
//! a memcached speaking the meta protocol (or the stream is out of step), and the connection is
//! dropped.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};

use crate::core::item::{Create, GetOpts, Write, WriteMode};
use crate::core::key::{StoreKey, WireForm};
use crate::core::ttl::memcached_exptime;

/// The longest reply line accepted (a meta reply line is a few dozen bytes).
const MAX_LINE: usize = 8 * 1024;
/// The largest value accepted in a reply (memcached's item size limit is at most 1 GiB).
const MAX_VALUE: usize = 1024 * 1024 * 1024;

/// The meta flags a reply carries back (only those mintcache asks for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    /// `f`: client flags.
    pub(crate) client_flags: Option<u32>,
    /// `t`: seconds left; `-1` for an item that never expires.
    pub(crate) ttl: Option<i64>,
    /// `c`: CAS value.
    pub(crate) cas: Option<u64>,
    /// `O`: the opaque of the command.
    pub(crate) opaque: Option<u32>,
    /// `W`: this read won the recache election.
    pub(crate) won: bool,
    /// `Z`: another read already won it.
    pub(crate) lost: bool,
    /// `X`: the item is stale (invalidated).
    pub(crate) stale: bool,
    /// `h`: the item was read before this read.
    pub(crate) hit_before: Option<bool>,
    /// `l`: seconds since the item was last read.
    pub(crate) last_access: Option<u64>,
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `VA`: a value.
    Value(Meta, Bytes),
    /// `VA` whose data was skipped, not kept (over a limit, or nobody waits for it): its size.
    Skipped(Meta, usize),
    /// `HD`: done.
    Done(Meta),
    /// `EN`: a get found nothing.
    Miss(Meta),
    /// `NF`: not found.
    NotFound(Meta),
    /// `NS`: not stored.
    NotStored(Meta),
    /// `EX`: the CAS value did not match.
    Exists(Meta),
    /// `MN`: no-op.
    NoOp(Meta),
    /// `VERSION <version>`.
    Version(String),
    /// `CLIENT_ERROR <message>`: memcached refused the command as malformed.
    ClientError(String),
    /// `SERVER_ERROR <message>`: memcached could not do it (object too large, out of memory).
    ServerError(String),
    /// `ERROR`: an unknown command.
    Error,
}

impl Reply {
    /// The opaque echoed by a meta reply (`None` for errors and `VERSION`).
    pub(crate) fn opaque(&self) -> Option<u32> {
        match self {
            Self::Value(m, _)
            | Self::Skipped(m, _)
            | Self::Done(m)
            | Self::Miss(m)
            | Self::NotFound(m)
            | Self::NotStored(m)
            | Self::Exists(m)
            | Self::NoOp(m) => m.opaque,
            Self::Version(_) | Self::ClientError(_) | Self::ServerError(_) | Self::Error => None,
        }
    }
}

/// The stream does not hold memcached meta replies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// A line that is not a meta reply.
    #[error("not a memcached meta-protocol reply: {0:?}")]
    Unexpected(String),
    /// A line longer than any reply.
    #[error("reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// A `VA` whose data does not end with `\r\n`.
    #[error("value not terminated by CRLF")]
    BadValue,
}

fn printable(line: &[u8]) -> String {
    line.iter()
        .take(60)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect()
}

/// An unsigned decimal number (no sign, no spaces), or `None`.
fn unsigned(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// A decimal number that may be negative (memcached's `t-1`).
fn signed(digits: &[u8]) -> Option<i64> {
    match digits.split_first() {
        Some((b'-', rest)) => i64::try_from(unsigned(rest)?).ok().map(|n| -n),
        _ => i64::try_from(unsigned(digits)?).ok(),
    }
}

fn narrow(n: Option<u64>) -> Result<u32, ()> {
    n.and_then(|n| u32::try_from(n).ok()).ok_or(())
}

fn parse_meta(tokens: &[u8]) -> Result<Meta, ()> {
    let mut meta = Meta::default();
    for token in tokens.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
        let (flag, rest) = (token[0], &token[1..]);
        match flag {
            b'f' => meta.client_flags = Some(narrow(unsigned(rest))?),
            b't' => meta.ttl = Some(signed(rest).ok_or(())?),
            b'c' => meta.cas = Some(unsigned(rest).ok_or(())?),
            b'O' => meta.opaque = Some(narrow(unsigned(rest))?),
            b'W' => meta.won = true,
            b'Z' => meta.lost = true,
            b'X' => meta.stale = true,
            b'h' => meta.hit_before = Some(rest == b"1"),
            b'l' => meta.last_access = Some(unsigned(rest).ok_or(())?),
            // Flags mintcache does not ask for (k, b, s, …) are ignored.
            _ => {}
        }
    }
    Ok(meta)
}

/// The head of a reply: a whole reply, or the line of a `VA` whose data follows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Head {
    /// A reply without data.
    Whole(Reply),
    /// `VA <size> <flags>`: `size` bytes of data and a CRLF follow.
    Value(Meta, usize),
}

/// Parses one reply line from the front of `buf`, removing it. `Ok(None)`: more bytes are
/// needed.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, ParseError> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > MAX_LINE {
            Err(ParseError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    if nl > MAX_LINE {
        return Err(ParseError::LineTooLong);
    }
    if nl == 0 || buf[nl - 1] != b'\r' {
        return Err(ParseError::Unexpected(printable(&buf[..nl])));
    }
    let line = &buf[..nl - 1];
    let (head, rest) = match memchr::memchr(b' ', line) {
        Some(sp) => (&line[..sp], &line[sp + 1..]),
        None => (line, &b""[..]),
    };
    let bad = || ParseError::Unexpected(printable(line));
    let text = |rest: &[u8]| String::from_utf8_lossy(rest).into_owned();
    let meta = |rest: &[u8]| parse_meta(rest).map_err(|()| bad());
    let head = match head {
        b"VA" => {
            let (size, flags) = match memchr::memchr(b' ', rest) {
                Some(sp) => (&rest[..sp], &rest[sp + 1..]),
                None => (rest, &b""[..]),
            };
            let size = unsigned(size)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n <= MAX_VALUE)
                .ok_or_else(bad)?;
            Head::Value(meta(flags)?, size)
        }
        b"HD" => Head::Whole(Reply::Done(meta(rest)?)),
        b"EN" => Head::Whole(Reply::Miss(meta(rest)?)),
        b"NF" => Head::Whole(Reply::NotFound(meta(rest)?)),
        b"NS" => Head::Whole(Reply::NotStored(meta(rest)?)),
        b"EX" => Head::Whole(Reply::Exists(meta(rest)?)),
        b"MN" => Head::Whole(Reply::NoOp(meta(rest)?)),
        b"VERSION" => Head::Whole(Reply::Version(text(rest))),
        b"CLIENT_ERROR" => Head::Whole(Reply::ClientError(text(rest))),
        b"SERVER_ERROR" => Head::Whole(Reply::ServerError(text(rest))),
        b"ERROR" => Head::Whole(Reply::Error),
        _ => return Err(bad()),
    };
    let _ = buf.split_to(nl + 1);
    Ok(Some(head))
}

/// Whether the data of a value is kept, and how (see [`ReplyReader::next`]).
pub(crate) enum Admit {
    /// Keep it; the guard (a share of a memory budget) lives as long as the value's bytes.
    Keep(Option<BudgetGuard>),
    /// Skip it as it arrives, without buffering it: the reply becomes [`Reply::Skipped`].
    Skip,
}

/// What a kept value holds of a memory budget, given back when the last reference to the
/// value's bytes is dropped.
pub(crate) type BudgetGuard = Box<dyn Send + 'static>;

/// A value's bytes, and the budget share that pays for them.
struct Owned {
    data: Vec<u8>,
    _guard: BudgetGuard,
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// The data of a `VA` reply being read.
struct ValueInProgress {
    meta: Meta,
    size: usize,
    /// The data read so far when kept; `None` when skipped.
    data: Option<Vec<u8>>,
    guard: Option<BudgetGuard>,
    /// Bytes of data and CRLF not read yet.
    left: usize,
    /// The last two bytes seen (the CRLF after the data).
    tail: [u8; 2],
}

/// Reads meta-protocol replies out of a byte stream, within bounds: reply lines up to
/// [`MAX_LINE`] bytes are buffered; the data of a value is either kept in a buffer of its own,
/// exactly its size (so that a value held by a slow caller never pins a shared read buffer),
/// or skipped as it arrives (a value over the limits, or one nobody waits for any more), so
/// that what the reader holds is bounded whatever the peer sends.
pub(crate) struct ReplyReader {
    /// Bytes read and not parsed yet (at most [`READ_CHUNK`] + [`MAX_LINE`]).
    buf: BytesMut,
    value: Option<ValueInProgress>,
}

/// Bytes read from the socket at a time.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

impl Default for ReplyReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplyReader {
    pub(crate) fn new() -> Self {
        Self {
            buf: BytesMut::with_capacity(READ_CHUNK),
            value: None,
        }
    }

    /// The buffer the next read from the socket goes into, with room for at most
    /// [`READ_CHUNK`] bytes beyond what it holds.
    pub(crate) fn read_buf(&mut self) -> ReadTarget<'_> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let room = READ_CHUNK.min(self.buf.capacity() - self.buf.len());
        ReadTarget {
            buf: &mut self.buf,
            room,
        }
    }

    /// Bytes buffered (for tests of the bound).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
            + self
                .value
                .as_ref()
                .and_then(|v| v.data.as_ref())
                .map_or(0, Vec::len)
    }

    /// Returns a buffer that grew past its usual size (after a burst of replies) to it.
    pub(crate) fn shrink_if_idle(&mut self) {
        if self.buf.is_empty() && self.value.is_none() && self.buf.capacity() > 2 * READ_CHUNK {
            self.buf = BytesMut::with_capacity(READ_CHUNK);
        }
    }

    /// The next whole reply, if the bytes read so far hold one. `admit` decides, from a value's
    /// reply line and size, whether its data is kept or skipped.
    pub(crate) fn next(
        &mut self,
        admit: &mut dyn FnMut(&Meta, usize) -> Admit,
    ) -> Result<Option<Reply>, ParseError> {
        loop {
            if let Some(value) = &mut self.value {
                let take = value.left.min(self.buf.len());
                let chunk = self.buf.split_to(take);
                let data_left = value.left.saturating_sub(2);
                let data_part = take.min(data_left);
                if let Some(data) = &mut value.data {
                    data.extend_from_slice(&chunk[..data_part]);
                }
                for &b in &chunk[data_part..] {
                    value.tail = [value.tail[1], b];
                }
                value.left -= take;
                if value.left > 0 {
                    return Ok(None);
                }
                let Some(done) = self.value.take() else {
                    return Ok(None);
                };
                if done.tail != *b"\r\n" {
                    return Err(ParseError::BadValue);
                }
                return Ok(Some(match done.data {
                    Some(data) => {
                        let bytes = match done.guard {
                            Some(guard) => Bytes::from_owner(Owned {
                                data,
                                _guard: guard,
                            }),
                            None => Bytes::from(data),
                        };
                        Reply::Value(done.meta, bytes)
                    }
                    None => Reply::Skipped(done.meta, done.size),
                }));
            }
            match parse_head(&mut self.buf)? {
                None => return Ok(None),
                Some(Head::Whole(reply)) => return Ok(Some(reply)),
                Some(Head::Value(meta, size)) => {
                    let (data, guard) = match admit(&meta, size) {
                        Admit::Keep(guard) => (Some(Vec::with_capacity(size)), guard),
                        Admit::Skip => (None, None),
                    };
                    self.value = Some(ValueInProgress {
                        meta,
                        size,
                        data,
                        guard,
                        left: size + 2,
                        tail: [0, 0],
                    });
                }
            }
        }
    }
}

/// Where a read from the socket goes: a buffer and how many bytes it may take.
pub(crate) struct ReadTarget<'a> {
    pub(crate) buf: &'a mut BytesMut,
    pub(crate) room: usize,
}

/// Writes the key token, and whether it needs the `b` flag.
fn put_key(buf: &mut BytesMut, key: &StoreKey) -> bool {
    match key.wire_form() {
        WireForm::Text => {
            buf.put_slice(key.stored());
            false
        }
        WireForm::Base64 => {
            let start = buf.len();
            let len = base64::encoded_len(key.stored().len(), true).unwrap_or(0);
            buf.resize(start + len, 0);
            let written = STANDARD
                .encode_slice(key.stored(), &mut buf[start..])
                .unwrap_or(0);
            buf.truncate(start + written);
            true
        }
    }
}

fn put_u64(buf: &mut BytesMut, n: u64) {
    let mut digits = itoa::Buffer::new();
    buf.put_slice(digits.format(n).as_bytes());
}

fn put_flag(buf: &mut BytesMut, flag: u8, n: u64) {
    buf.put_u8(b' ');
    buf.put_u8(flag);
    put_u64(buf, n);
}

fn put_end(buf: &mut BytesMut, b64: bool, opaque: u32) {
    if b64 {
        buf.put_slice(b" b");
    }
    put_flag(buf, b'O', u64::from(opaque));
    buf.put_slice(b"\r\n");
}

/// `mg <key> f t c [v] [h l] [R<n>] [N<exp>] [T<exp>] [b] O<opaque>`
pub(crate) fn get(buf: &mut BytesMut, key: &StoreKey, opts: GetOpts, now: u64, opaque: u32) {
    buf.put_slice(b"mg ");
    let b64 = put_key(buf, key);
    buf.put_slice(b" f t c");
    if !opts.no_value {
        buf.put_slice(b" v");
    }
    if opts.hot {
        buf.put_slice(b" h l");
    }
    if let Some(n) = opts.recache_below {
        put_flag(buf, b'R', n);
    }
    if let Some(n) = opts.vivify_for {
        put_flag(buf, b'N', memcached_exptime(n, now));
    }
    if let Some(ttl) = opts.touch {
        put_flag(buf, b'T', ttl.memcached(now));
    }
    put_end(buf, b64, opaque);
}

/// `ms <key> <len> T<exp> F<flags> [ME] [C<cas>] [c] [b] O<opaque>` + data. The data is
/// returned separately, so that a large value is not copied. With `return_cas`, the reply
/// carries the CAS value the item got.
pub(crate) fn set(
    buf: &mut BytesMut,
    key: &StoreKey,
    write: &Write,
    cas: Option<u64>,
    return_cas: bool,
    now: u64,
    opaque: u32,
) {
    buf.put_slice(b"ms ");
    let b64 = put_key(buf, key);
    buf.put_u8(b' ');
    put_u64(buf, write.value.len() as u64);
    put_flag(buf, b'T', write.ttl.memcached(now));
    put_flag(buf, b'F', u64::from(write.client_flags));
    if return_cas {
        buf.put_slice(b" c");
    }
    if write.mode == WriteMode::Add {
        buf.put_slice(b" ME");
    }
    if let Some(cas) = cas {
        put_flag(buf, b'C', cas);
    }
    put_end(buf, b64, opaque);
}

/// `md <key> [b] O<opaque>`
pub(crate) fn delete(buf: &mut BytesMut, key: &StoreKey, opaque: u32) {
    buf.put_slice(b"md ");
    let b64 = put_key(buf, key);
    put_end(buf, b64, opaque);
}

/// `md <key> C<cas> [b] O<opaque>`: removes the item only if it still has this CAS value.
pub(crate) fn delete_if(buf: &mut BytesMut, key: &StoreKey, cas: u64, opaque: u32) {
    buf.put_slice(b"md ");
    let b64 = put_key(buf, key);
    put_flag(buf, b'C', cas);
    put_end(buf, b64, opaque);
}

/// `md <key> I T<exp> [C<cas>] [b] O<opaque>`
pub(crate) fn invalidate(
    buf: &mut BytesMut,
    key: &StoreKey,
    stale_ttl: u64,
    cas: Option<u64>,
    now: u64,
    opaque: u32,
) {
    buf.put_slice(b"md ");
    let b64 = put_key(buf, key);
    buf.put_slice(b" I");
    put_flag(buf, b'T', memcached_exptime(stale_ttl.max(1), now));
    if let Some(cas) = cas {
        put_flag(buf, b'C', cas);
    }
    put_end(buf, b64, opaque);
}

/// `ma <key> [N<exp> J<initial>] D<delta> M(I|D) v [b] O<opaque>`
pub(crate) fn incr(
    buf: &mut BytesMut,
    key: &StoreKey,
    delta: i64,
    create: Option<Create>,
    now: u64,
    opaque: u32,
) {
    buf.put_slice(b"ma ");
    let b64 = put_key(buf, key);
    if let Some(c) = create {
        put_flag(buf, b'N', c.ttl.memcached(now));
        put_flag(buf, b'J', c.initial);
    }
    put_flag(buf, b'D', delta.unsigned_abs());
    buf.put_slice(if delta >= 0 { b" MI v" } else { b" MD v" });
    put_end(buf, b64, opaque);
}

/// The instance marker of a server, read or created in one atomic command:
/// `ma <key> N0 J<fresh> D0 v O<opaque>` (a counter that never expires; created with `fresh` if
/// missing, else left as it is — an increment by 0 — and answered either way).
pub(crate) fn instance_marker(buf: &mut BytesMut, key: &[u8], fresh: u64, opaque: u32) {
    buf.put_slice(b"ma ");
    buf.put_slice(key);
    buf.put_slice(b" N0");
    put_flag(buf, b'J', fresh);
    buf.put_slice(b" D0 v");
    put_end(buf, false, opaque);
}

/// `version`
pub(crate) fn version(buf: &mut BytesMut) {
    buf.put_slice(b"version\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::key::KeySpace;
    use crate::core::ttl::Expiry;
    use proptest::prelude::*;

    /// Feeds `input` to a reader in one go; every reply, keeping every value.
    fn parse_all(input: &[u8]) -> Result<Vec<Reply>, ParseError> {
        let mut reader = ReplyReader::new();
        feed(&mut reader, input);
        let mut out = Vec::new();
        while let Some(reply) = reader.next(&mut |_, _| Admit::Keep(None))? {
            out.push(reply);
        }
        assert_eq!(reader.buffered(), 0, "left over");
        Ok(out)
    }

    /// Appends bytes as reads from the socket would, within the room the reader gives.
    fn feed(reader: &mut ReplyReader, mut input: &[u8]) -> usize {
        let mut fed = 0;
        while !input.is_empty() {
            let target = reader.read_buf();
            let n = target.room.min(input.len());
            target.buf.extend_from_slice(&input[..n]);
            input = &input[n..];
            fed += n;
            if !input.is_empty() {
                // The connection parses before it reads again.
                return fed;
            }
        }
        fed
    }

    #[test]
    fn replies_seen_from_memcached() {
        // Replies recorded from memcached 1.6.18.
        let replies = parse_all(
            b"VA 0 c1 t30 O1 kfoo W\r\n\r\nVA 2 c3 t30 O7 X W\r\nhi\r\nVA 2 c3 t30 O8 Z X\r\nhi\r\n\
              HD c2 O3\r\nEX O5\r\nEN O9\r\nNF\r\nNS O11\r\nMN\r\nVA 1 c4 t-1 O10\r\n5\r\n\
              VERSION 1.6.18\r\nSERVER_ERROR object too large for cache\r\n\
              CLIENT_ERROR bad command line format\r\nERROR\r\n",
        )
        .expect("parses");
        let meta = |f: fn(&mut Meta)| {
            let mut m = Meta::default();
            f(&mut m);
            m
        };
        assert_eq!(
            replies,
            vec![
                Reply::Value(
                    meta(|m| {
                        m.cas = Some(1);
                        m.ttl = Some(30);
                        m.opaque = Some(1);
                        m.won = true;
                    }),
                    Bytes::new()
                ),
                Reply::Value(
                    meta(|m| {
                        m.cas = Some(3);
                        m.ttl = Some(30);
                        m.opaque = Some(7);
                        m.stale = true;
                        m.won = true;
                    }),
                    Bytes::from_static(b"hi")
                ),
                Reply::Value(
                    meta(|m| {
                        m.cas = Some(3);
                        m.ttl = Some(30);
                        m.opaque = Some(8);
                        m.stale = true;
                        m.lost = true;
                    }),
                    Bytes::from_static(b"hi")
                ),
                Reply::Done(meta(|m| {
                    m.cas = Some(2);
                    m.opaque = Some(3);
                })),
                Reply::Exists(meta(|m| m.opaque = Some(5))),
                Reply::Miss(meta(|m| m.opaque = Some(9))),
                Reply::NotFound(Meta::default()),
                Reply::NotStored(meta(|m| m.opaque = Some(11))),
                Reply::NoOp(Meta::default()),
                Reply::Value(
                    meta(|m| {
                        m.cas = Some(4);
                        m.ttl = Some(-1);
                        m.opaque = Some(10);
                    }),
                    Bytes::from_static(b"5")
                ),
                Reply::Version("1.6.18".into()),
                Reply::ServerError("object too large for cache".into()),
                Reply::ClientError("bad command line format".into()),
                Reply::Error,
            ]
        );
    }

    #[test]
    fn partial_input_waits_for_more() {
        let full = b"VA 3 f7 O2\r\nabc\r\n";
        for cut in 0..full.len() {
            let mut reader = ReplyReader::new();
            feed(&mut reader, &full[..cut]);
            let keep = &mut |_: &Meta, _| Admit::Keep(None);
            assert_eq!(reader.next(keep), Ok(None), "cut at {cut}");
            feed(&mut reader, &full[cut..]);
            let reply = reader.next(keep).expect("valid").expect("whole");
            assert!(
                matches!(&reply, Reply::Value(m, d) if m.opaque == Some(2) && &d[..] == b"abc"),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn skipped_values_are_never_buffered() {
        let mut reader = ReplyReader::new();
        let mut skip = |_: &Meta, _| Admit::Skip;
        feed(&mut reader, b"VA 200000 O5\r\n");
        assert_eq!(reader.next(&mut skip), Ok(None));
        let chunk = vec![b'x'; READ_CHUNK];
        let mut left = 200_000usize;
        while left > 0 {
            let n = left.min(chunk.len());
            let fed = feed(&mut reader, &chunk[..n]);
            left -= fed;
            assert_eq!(reader.next(&mut skip), Ok(None));
            assert!(reader.buffered() == 0, "{} bytes held", reader.buffered());
        }
        feed(&mut reader, b"\r\nHD O6\r\n");
        let meta = Meta {
            opaque: Some(5),
            ..Meta::default()
        };
        assert_eq!(
            reader.next(&mut skip),
            Ok(Some(Reply::Skipped(meta, 200_000)))
        );
        assert!(matches!(reader.next(&mut skip), Ok(Some(Reply::Done(m))) if m.opaque == Some(6)));
    }

    #[test]
    fn a_kept_value_does_not_pin_the_read_buffer() {
        let mut reader = ReplyReader::new();
        feed(&mut reader, b"VA 2 O1\r\nhi\r\n");
        let reply = reader
            .next(&mut |_, _| Admit::Keep(None))
            .expect("valid")
            .expect("whole");
        let Reply::Value(_, value) = reply else {
            panic!("not a value: {reply:?}");
        };
        // The value owns its bytes: the reader's buffer is free to be reused whole.
        assert!(reader.buf.try_reclaim(READ_CHUNK), "the buffer is shared");
        assert_eq!(&value[..], b"hi");
    }

    #[test]
    fn a_budget_guard_lives_as_long_as_the_value() {
        let held = std::sync::Arc::new(());
        let mut reader = ReplyReader::new();
        feed(&mut reader, b"VA 2 O1\r\nhi\r\n");
        let guard = held.clone();
        let reply = reader
            .next(&mut |_, _| Admit::Keep(Some(Box::new(guard.clone()))))
            .expect("valid")
            .expect("whole");
        drop(guard);
        assert_eq!(std::sync::Arc::strong_count(&held), 2);
        let copy = match &reply {
            Reply::Value(_, v) => v.clone(),
            other => panic!("{other:?}"),
        };
        drop(reply);
        assert_eq!(std::sync::Arc::strong_count(&held), 2, "a clone keeps it");
        drop(copy);
        assert_eq!(std::sync::Arc::strong_count(&held), 1);
    }

    #[test]
    fn other_protocols_are_refused() {
        for input in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"+OK\r\n",
            b"-ERR unknown command\r\n",
            b"VA x\r\n",
            b"VA 3 O1\r\nabcde\r\n",
            b"HD c12x\r\n",
            b"no carriage return\n",
        ] {
            assert!(
                parse_all(input).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let mut reader = ReplyReader::new();
        feed(&mut reader, &[b'x'; MAX_LINE + 1]);
        assert_eq!(
            reader.next(&mut |_, _| Admit::Keep(None)),
            Err(ParseError::LineTooLong)
        );
    }

    #[test]
    fn commands_as_memcached_reads_them() {
        let space = KeySpace::new("ns", "v1").expect("valid");
        let text = space.store_key(b"user:42");
        let spaced = space.store_key(b"a b\r\n");
        let mut buf = BytesMut::new();
        get(
            &mut buf,
            &text,
            GetOpts {
                recache_below: Some(31),
                vivify_for: Some(5),
                touch: Some(Expiry::Never),
                no_value: false,
                hot: false,
            },
            1_800_000_000,
            7,
        );
        assert_eq!(&buf[..], b"mg ns:v1:user:42 f t c v R31 N5 T0 O7\r\n");
        buf.clear();
        get(&mut buf, &spaced, GetOpts::default(), 0, 8);
        assert_eq!(&buf[..], b"mg bnM6djE6YSBiDQo= f t c v b O8\r\n");
        buf.clear();
        let write = Write {
            value: Bytes::from_static(b"abc"),
            client_flags: 0x6d00_001e,
            ttl: Expiry::After(60),
            mode: WriteMode::Add,
            cas: None,
        };
        set(&mut buf, &text, &write, Some(99), false, 0, 9);
        assert_eq!(
            &buf[..],
            b"ms ns:v1:user:42 3 T60 F1828716574 ME C99 O9\r\n"
        );
        buf.clear();
        invalidate(&mut buf, &text, 30, Some(5), 0, 10);
        delete(&mut buf, &spaced, 11);
        incr(
            &mut buf,
            &text,
            -3,
            Some(Create {
                initial: 10,
                ttl: Expiry::After(40 * 24 * 3600),
            }),
            1_800_000_000,
            12,
        );
        assert_eq!(
            String::from_utf8_lossy(&buf),
            "md ns:v1:user:42 I T30 C5 O10\r\n\
             md bnM6djE6YSBiDQo= b O11\r\n\
             ma ns:v1:user:42 N1803456000 J10 D3 MD v O12\r\n"
        );
    }

    proptest! {
        /// The key token written into a command is the key's wire token, whatever the key.
        #[test]
        fn keys_are_written_as_their_wire_token(key in proptest::collection::vec(any::<u8>(), 1..300)) {
            let k = KeySpace::new("ns", "v").expect("valid").store_key(&key);
            let mut buf = BytesMut::new();
            let b64 = put_key(&mut buf, &k);
            let token = k.wire_token();
            prop_assert_eq!(&buf[..], token.as_bytes());
            prop_assert_eq!(b64, k.wire_form() == WireForm::Base64);
        }

        /// Whatever bytes arrive, cut wherever, the reader answers (never panics), and never
        /// holds more than a read chunk and a reply line, plus the values it was told to keep.
        #[test]
        fn arbitrary_streams_stay_within_bounds(
            input in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(0usize..2000, 0..8),
            keep_below in 0usize..64,
        ) {
            let mut reader = ReplyReader::new();
            let mut cuts = cuts;
            cuts.push(input.len());
            cuts.sort_unstable();
            let mut at = 0;
            let mut kept = 0usize;
            'feed: for cut in cuts {
                let cut = cut.min(input.len());
                while at < cut {
                    at += feed(&mut reader, &input[at..cut]);
                    loop {
                        let mut admit = |_: &Meta, size: usize| {
                            if size < keep_below { kept += size; Admit::Keep(None) } else { Admit::Skip }
                        };
                        match reader.next(&mut admit) {
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(_) => break 'feed,
                        }
                    }
                    prop_assert!(reader.buffered() <= MAX_LINE + READ_CHUNK + kept);
                }
            }
        }

        /// Replies of any sizes and opaques, cut at any points, come out whole and in order.
        #[test]
        fn replies_survive_any_split(
            replies in proptest::collection::vec((any::<u32>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300))), 1..6),
            cuts in proptest::collection::vec(0usize..2000, 0..6),
        ) {
            let mut stream = Vec::new();
            for (opaque, value) in &replies {
                match value {
                    Some(v) => {
                        stream.extend_from_slice(format!("VA {} f1 O{opaque}\r\n", v.len()).as_bytes());
                        stream.extend_from_slice(v);
                        stream.extend_from_slice(b"\r\n");
                    }
                    None => stream.extend_from_slice(format!("HD O{opaque}\r\n").as_bytes()),
                }
            }
            let mut cuts = cuts;
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut reader = ReplyReader::new();
            let mut out = Vec::new();
            let mut at = 0;
            for cut in cuts {
                let cut = cut.min(stream.len());
                while at < cut {
                    at += feed(&mut reader, &stream[at..cut]);
                    while let Some(r) = reader.next(&mut |_, _| Admit::Keep(None)).expect("valid") {
                        out.push(r);
                    }
                }
            }
            prop_assert_eq!(out.len(), replies.len());
            for (reply, (opaque, value)) in out.iter().zip(&replies) {
                prop_assert_eq!(reply.opaque(), Some(*opaque));
                match (reply, value) {
                    (Reply::Value(_, data), Some(v)) => prop_assert_eq!(&data[..], &v[..]),
                    (Reply::Done(_), None) => {}
                    (other, _) => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }
    }
}
