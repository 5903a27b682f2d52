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
pub(crate) type BudgetGuard = crate::store::budget::ReplyShare;

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

/// `mg <key> f t c [v] h [l] [R<n>] [N<exp>] [T<exp>] [b] O<opaque>`
///
/// Every read carries `h`, whether or not it wants to know if the item was read before:
/// memcached (1.6.18 and since) holds the item's lock for the whole command only when a read
/// has one of `N`, `R`, `T`, `h` or `l`, and hands the win (`W`) of an invalidated item to the
/// first read that finds no win handed out yet. Without the lock, two reads of an invalidated
/// item on two of memcached's threads can both find none, and both win: two refreshes where
/// there must be one. `h` is the flag without side effects (it only adds `h0`/`h1` to the
/// reply).
pub(crate) fn get(buf: &mut BytesMut, key: &StoreKey, opts: GetOpts, now: u64, opaque: u32) {
    buf.put_slice(b"mg ");
    let b64 = put_key(buf, key);
    buf.put_slice(b" f t c");
    if !opts.no_value {
        buf.put_slice(b" v");
    }
    buf.put_slice(b" h");
    if opts.hot {
        buf.put_slice(b" l");
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
mod tests;
