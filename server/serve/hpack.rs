//! A mirror of the HPACK decoder (RFC 7541) that h2 runs for one connection, which judges each
//! header block as h2 will, and rewrites the malformed ones so that h2 fails only their stream.
//!
//! h2 treats a header field that HTTP/2 forbids (an uppercase name, NUL, CR or LF in a value,
//! an unknown pseudo-header; RFC 9113 §8.2.1) as a failure to decode the whole header block
//! (`hpack::Header::new` returns an error, and `codec::framed_read` answers "failed HPACK
//! decoding" with GOAWAY PROTOCOL_ERROR), which closes the connection and every call on it.
//! RFC 9113 makes such a request malformed: an error of its stream only. h2 already has that
//! path for fields it can decode but rejects (a connection-specific field such as
//! `transfer-encoding`): it decodes the rest of the block, to keep the connection's header
//! table, and resets the stream with PROTOCOL_ERROR.
//!
//! [`Decoder::check`] decodes each block as h2's decoder would, with the same table (sizes and
//! evictions; no field contents are kept, only their lengths and whether they were valid), and
//! the same validity rules (those of `http`'s `HeaderName::from_lowercase`,
//! `HeaderValue::from_bytes`, `Method::from_bytes` and `StatusCode::from_bytes`, which h2
//! applies). A block with a forbidden field is rewritten into one that
//! - changes h2's table exactly as the original changes the client's: every field the
//!   original adds to the table is added, with the same size, in the same order (a forbidden
//!   part replaced by a valid one of the same length, a valid name kept as it is, so that
//!   later references by index resolve as the client means them);
//! - carries `transfer-encoding: x`, which h2 answers with RST_STREAM PROTOCOL_ERROR for that
//!   stream only.
//!
//! Fields the client refers to in the table whose original was forbidden are forbidden too.
//! Anything this mirror does not decode as h2 would (a genuine compression error, a size
//! update out of place) is left to h2 untouched: [`Verdict::Unknown`].

use std::collections::VecDeque;
use std::ops::Range;

/// The largest header table h2's decoder allows: `SETTINGS_HEADER_TABLE_SIZE`'s default,
/// which neither hyper's nor tonic's server changes.
pub(super) const SERVER_TABLE_SIZE: usize = 4096;

/// What h2 makes of a header field's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name {
    /// A regular field name h2 accepts.
    Regular,
    Authority,
    Method,
    Scheme,
    Path,
    Protocol,
    Status,
    /// A name h2 refuses: empty, an unknown pseudo-header, or characters HTTP/2 forbids.
    Forbidden,
}

impl Name {
    fn of(name: &[u8]) -> Self {
        match name {
            [] => Self::Forbidden,
            [b':', pseudo @ ..] => match pseudo {
                b"authority" => Self::Authority,
                b"method" => Self::Method,
                b"scheme" => Self::Scheme,
                b"path" => Self::Path,
                b"protocol" => Self::Protocol,
                b"status" => Self::Status,
                _ => Self::Forbidden,
            },
            _ if name.len() <= MAX_NAME_BYTES && name.iter().all(|&b| name_byte(b)) => {
                Self::Regular
            }
            _ => Self::Forbidden,
        }
    }

    /// Whether h2 accepts `value` for a field of this name.
    fn accepts(self, value: &[u8]) -> bool {
        match self {
            Self::Regular => value.iter().all(|&b| value_byte(b)),
            Self::Authority | Self::Scheme | Self::Path | Self::Protocol => {
                std::str::from_utf8(value).is_ok()
            }
            Self::Method => http::Method::from_bytes(value).is_ok(),
            Self::Status => http::StatusCode::from_bytes(value).is_ok(),
            Self::Forbidden => false,
        }
    }

    /// A value of `len` bytes this name accepts: what replaces a forbidden value.
    fn stand_in(self, len: usize) -> Option<Vec<u8>> {
        let value = match self {
            // Three digits are the only status there is.
            Self::Status => (len == 3).then(|| b"200".to_vec())?,
            // `0` is a token character, so `000…` is a method (an empty one is not).
            _ => vec![b'0'; len],
        };
        self.accepts(&value).then_some(value)
    }
}

/// Longest header name `http` accepts.
const MAX_NAME_BYTES: usize = (1 << 16) - 1;

/// A byte of a header name as HTTP/2 allows it (`http`'s `HEADER_CHARS_H2`: a token
/// character, letters in lowercase).
fn name_byte(b: u8) -> bool {
    matches!(b,
        b'!' | b'"' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'0'..=b'9' | b'^' | b'_' | b'`' | b'a'..=b'z' | b'|' | b'~')
}

/// A byte of a header value as `http` allows it: visible, a space, a tab, or obs-text.
fn value_byte(b: u8) -> bool {
    (b >= 0x20 && b != 0x7f) || b == b'\t'
}

/// The names of the static table (RFC 7541 Appendix A), 1-based.
const STATIC_NAMES: [&[u8]; 61] = [
    b":authority",
    b":method",
    b":method",
    b":path",
    b":path",
    b":scheme",
    b":scheme",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b"accept-charset",
    b"accept-encoding",
    b"accept-language",
    b"accept-ranges",
    b"accept",
    b"access-control-allow-origin",
    b"age",
    b"allow",
    b"authorization",
    b"cache-control",
    b"content-disposition",
    b"content-encoding",
    b"content-language",
    b"content-length",
    b"content-location",
    b"content-range",
    b"content-type",
    b"cookie",
    b"date",
    b"etag",
    b"expect",
    b"expires",
    b"from",
    b"host",
    b"if-match",
    b"if-modified-since",
    b"if-none-match",
    b"if-range",
    b"if-unmodified-since",
    b"last-modified",
    b"link",
    b"location",
    b"max-forwards",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"range",
    b"referer",
    b"refresh",
    b"retry-after",
    b"server",
    b"set-cookie",
    b"strict-transport-security",
    b"transfer-encoding",
    b"user-agent",
    b"vary",
    b"via",
    b"www-authenticate",
];

/// Index of `transfer-encoding` in the static table: a connection-specific field, which h2
/// answers with a reset of the stream alone.
const TRANSFER_ENCODING: usize = 57;

/// A field as a table entry: what h2's table holds of it, as far as sizes and validity go.
#[derive(Clone, Copy, Debug)]
struct Entry {
    name: Name,
    name_len: usize,
    value_len: usize,
    /// Whether h2 accepts the field.
    valid: bool,
}

impl Entry {
    /// An entry's size (RFC 7541 §4.1), as h2 counts it.
    fn size(&self) -> usize {
        32 + self.name_len + self.value_len
    }
}

/// Where a field's name came from.
#[derive(Clone, Debug)]
enum NameSource {
    /// A table index (static or dynamic).
    Index(usize),
    /// A string literal: these bytes of the block (its length prefix included).
    Literal(Range<usize>),
}

/// A change a header block makes to the table, with what is needed to make it again.
#[derive(Clone, Debug)]
enum TableChange {
    /// A dynamic table size update: these bytes of the block.
    Resize(Range<usize>),
    /// A field added to the table; `value` is its encoded string in the block.
    Add {
        name: NameSource,
        value: Range<usize>,
        entry: Entry,
    },
}

/// What a header block is, for h2.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Every field is one h2 accepts: the block goes to h2 as it is.
    Valid,
    /// A field h2 would refuse by closing the connection: the block to send h2 instead, which
    /// makes the same changes to its table and gets the stream reset.
    Malformed(Vec<u8>),
    /// Not decodable as h2 would decode it, or not repairable: the block goes to h2 as it is,
    /// and this mirror no longer knows h2's table.
    Unknown,
}

/// The HPACK decoding state of one connection's client-to-server direction.
pub(super) struct Decoder {
    /// Newest first, as indices count (62 is the newest).
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// Huffman-decoded strings.
    scratch: Vec<u8>,
    changes: Vec<TableChange>,
}

/// Why a block could not be decoded as h2 would decode it.
#[derive(Debug)]
struct Undecodable;

impl Default for Decoder {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max_size: SERVER_TABLE_SIZE,
            scratch: Vec::new(),
            changes: Vec::new(),
        }
    }
}

impl Decoder {
    /// Decodes a whole header block (the fragments of a HEADERS frame and its CONTINUATION
    /// frames, joined), updating the table as h2 will.
    pub(super) fn check(&mut self, block: &[u8]) -> Verdict {
        self.changes.clear();
        match self.decode(block) {
            Ok(false) => Verdict::Valid,
            Ok(true) => self
                .rewrite(block)
                .map_or(Verdict::Unknown, Verdict::Malformed),
            Err(Undecodable) => Verdict::Unknown,
        }
    }

    /// Decodes `block`; whether it holds a field h2 refuses.
    fn decode(&mut self, block: &[u8]) -> Result<bool, Undecodable> {
        let mut at = 0;
        let mut forbidden = false;
        // Size updates come first in a block (RFC 7541 §4.2); h2 refuses them later.
        let mut fields_seen = false;
        while let Some(&first) = block.get(at) {
            let start = at;
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = integer(block, &mut at, 7)?;
                forbidden |= !self.get(index)?.valid;
                fields_seen = true;
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3).
                let size = integer(block, &mut at, 5)?;
                if fields_seen || size > SERVER_TABLE_SIZE {
                    return Err(Undecodable);
                }
                self.max_size = size;
                self.evict_to(size);
                self.changes.push(TableChange::Resize(start..at));
            } else {
                // Literal field (§6.2): with incremental indexing (01), without indexing
                // (0000), never indexed (0001).
                let adds = first & 0xc0 == 0x40;
                let index = integer(block, &mut at, if adds { 6 } else { 4 })?;
                let (name, name_len, source) = if index == 0 {
                    let literal = at;
                    let name = self.string(block, &mut at)?;
                    (Name::of(name), name.len(), NameSource::Literal(literal..at))
                } else {
                    let entry = self.get(index)?;
                    (entry.name, entry.name_len, NameSource::Index(index))
                };
                let value_at = at;
                let value = self.string(block, &mut at)?;
                let entry = Entry {
                    name,
                    name_len,
                    value_len: value.len(),
                    valid: name.accepts(value),
                };
                forbidden |= !entry.valid;
                fields_seen = true;
                if adds {
                    self.changes.push(TableChange::Add {
                        name: source,
                        value: value_at..at,
                        entry,
                    });
                    self.add(entry);
                }
            }
        }
        Ok(forbidden)
    }

    /// Whether the table holds a field whose value has `len` bytes, for tests.
    #[cfg(test)]
    pub(super) fn holds_value_of_len(&self, len: usize) -> bool {
        self.entries.iter().any(|e| e.value_len == len)
    }

    /// The entry at `index` (1-based: the static table, then the dynamic one).
    fn get(&self, index: usize) -> Result<Entry, Undecodable> {
        match index {
            0 => Err(Undecodable),
            1..=61 => {
                let name = STATIC_NAMES[index - 1];
                Ok(Entry {
                    name: Name::of(name),
                    name_len: name.len(),
                    // Values of the static table are never looked at for their length: a field
                    // taken whole from it is never added to the table.
                    value_len: 0,
                    valid: true,
                })
            }
            _ => self.entries.get(index - 62).copied().ok_or(Undecodable),
        }
    }

    fn add(&mut self, entry: Entry) {
        let size = entry.size();
        self.evict_to(self.max_size.saturating_sub(size));
        // An entry larger than the table empties it and is not kept (§4.4).
        if self.size + size <= self.max_size {
            self.size += size;
            self.entries.push_front(entry);
        }
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            match self.entries.pop_back() {
                Some(oldest) => self.size -= oldest.size(),
                None => break,
            }
        }
    }

    /// A string literal (§5.2), decoded.
    fn string<'a>(&'a mut self, block: &'a [u8], at: &mut usize) -> Result<&'a [u8], Undecodable> {
        let huffman = block.get(*at).ok_or(Undecodable)? & 0x80 != 0;
        let len = integer(block, at, 7)?;
        let end = at.checked_add(len).ok_or(Undecodable)?;
        let raw = block.get(*at..end).ok_or(Undecodable)?;
        *at = end;
        if huffman {
            self.scratch.clear();
            huffman::decode(raw, &mut self.scratch).map_err(|_| Undecodable)?;
            Ok(&self.scratch)
        } else {
            Ok(raw)
        }
    }

    /// The block that makes `changes` to h2's table, field by field, and gets its stream reset.
    /// `None` when a forbidden field has no valid stand-in of the same size.
    fn rewrite(&self, block: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(block.len() + 8);
        for change in &self.changes {
            match change {
                TableChange::Resize(bytes) => out.extend_from_slice(&block[bytes.clone()]),
                TableChange::Add { name, value, entry } => {
                    add_again(&mut out, block, name, value, entry)?;
                }
            }
        }
        // `transfer-encoding: x`, not added to the table.
        put_integer(&mut out, 0x00, 4, TRANSFER_ENCODING);
        put_integer(&mut out, 0x00, 7, 1);
        out.push(b'x');
        Some(out)
    }
}

/// Writes a field that adds `entry` to h2's table: the original where h2 accepts it, a stand-in
/// of the same size where it does not.
fn add_again(
    out: &mut Vec<u8>,
    block: &[u8],
    name: &NameSource,
    value: &Range<usize>,
    entry: &Entry,
) -> Option<()> {
    if entry.name != Name::Forbidden {
        // The name is kept (by the same index, which means the same name to h2, or as the
        // same literal), so that later references to it by index mean what the client means.
        match name {
            NameSource::Index(index) => put_integer(out, 0x40, 6, *index),
            NameSource::Literal(bytes) => {
                out.push(0x40);
                out.extend_from_slice(&block[bytes.clone()]);
            }
        }
        if entry.valid {
            out.extend_from_slice(&block[value.clone()]);
        } else {
            put_string(out, &entry.name.stand_in(entry.value_len)?);
        }
        return Some(());
    }
    // A forbidden name: any later reference to this entry is forbidden too, so only its size
    // matters. A name cannot be empty, so an empty one takes a byte from the value.
    let (name_len, value_len) = match (entry.name_len, entry.value_len) {
        (0, 0) => return None,
        (0, value_len) => (1, value_len - 1),
        lengths => lengths,
    };
    out.push(0x40);
    put_string(out, &vec![b'0'; name_len]);
    put_string(out, &vec![b'0'; value_len]);
    Some(())
}

/// An integer with an `n`-bit prefix (§5.1).
fn integer(block: &[u8], at: &mut usize, n: u32) -> Result<usize, Undecodable> {
    // As h2: at most 5 bytes, which keeps any value far below `u32::MAX`.
    const MAX_BYTES: usize = 5;
    let max = (1usize << n) - 1;
    let first = *block.get(*at).ok_or(Undecodable)?;
    *at += 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0;
    for bytes in 2..=MAX_BYTES {
        let b = *block.get(*at).ok_or(Undecodable)?;
        *at += 1;
        value += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        if bytes == MAX_BYTES {
            break;
        }
    }
    Err(Undecodable)
}

fn put_integer(out: &mut Vec<u8>, flags: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        // Below `max`, which fits in the prefix's bits.
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A string literal as it is (no Huffman coding).
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_integer(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// HPACK's Huffman code (RFC 7541 Appendix B): canonical, so the code lengths define it.
pub(super) mod huffman {
    use std::sync::LazyLock;

    /// Code length of each symbol, bytes 0 to 255 then EOS (256), from RFC 7541 Appendix B.
    const LENGTHS: [u8; 257] = [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
        28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 0x20
        5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 0x30
        13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 0x40
        7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 0x50
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 0x60
        6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 0x70
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
        24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
        21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
        19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
        26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
        30, // EOS
    ];
    const EOS: u16 = 256;
    const MAX_LENGTH: usize = 30;

    /// The canonical code: per length, its first code and where its symbols start in
    /// `symbols` (sorted by length, then by value).
    struct Code {
        count: [u32; MAX_LENGTH + 1],
        first_code: [u32; MAX_LENGTH + 1],
        first_symbol: [usize; MAX_LENGTH + 1],
        symbols: Vec<u16>,
    }

    static CODE: LazyLock<Code> = LazyLock::new(|| {
        let mut count = [0u32; MAX_LENGTH + 1];
        for &len in &LENGTHS {
            count[usize::from(len)] += 1;
        }
        let mut symbols: Vec<u16> = (0..=EOS).collect();
        symbols.sort_by_key(|&s| (LENGTHS[usize::from(s)], s));
        let mut first_code = [0u32; MAX_LENGTH + 1];
        let mut first_symbol = [0usize; MAX_LENGTH + 1];
        let (mut code, mut symbol) = (0u32, 0usize);
        for len in 1..=MAX_LENGTH {
            first_code[len] = code;
            first_symbol[len] = symbol;
            code = (code + count[len]) << 1;
            symbol += count[len] as usize;
        }
        Code {
            count,
            first_code,
            first_symbol,
            symbols,
        }
    });

    /// A Huffman-coded string that is not one (RFC 7541 §5.2).
    #[derive(Debug, PartialEq, Eq)]
    pub(in crate::serve) struct Invalid;

    /// Decodes `coded` onto `out`.
    pub(in crate::serve) fn decode(coded: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
        let code_table = &*CODE;
        let (mut code, mut len) = (0u32, 0usize);
        for &byte in coded {
            for bit in (0..8).rev() {
                code = (code << 1) | u32::from((byte >> bit) & 1);
                len += 1;
                let offset = code.wrapping_sub(code_table.first_code[len]);
                if offset < code_table.count[len] {
                    let symbol = code_table.symbols[code_table.first_symbol[len] + offset as usize];
                    // The EOS symbol in a string is an error (§5.2).
                    let byte = u8::try_from(symbol).map_err(|_| Invalid)?;
                    out.push(byte);
                    (code, len) = (0, 0);
                } else if len == MAX_LENGTH {
                    return Err(Invalid);
                }
            }
        }
        // What is left is padding: fewer than 8 bits, all ones (the start of EOS).
        if len < 8 && code == (1 << len) - 1 {
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    /// The code of each symbol, for tests: (code, length).
    #[cfg(test)]
    pub(in crate::serve) fn codes() -> Vec<(u32, u8)> {
        let code_table = &*CODE;
        let mut codes = vec![(0, 0); 257];
        for len in 1..=MAX_LENGTH {
            for i in 0..code_table.count[len] {
                let symbol = code_table.symbols[code_table.first_symbol[len] + i as usize];
                codes[usize::from(symbol)] = (code_table.first_code[len] + i, len as u8);
            }
        }
        codes
    }

    /// Encodes `s`, for tests.
    #[cfg(test)]
    pub(in crate::serve) fn encode(s: &[u8]) -> Vec<u8> {
        let codes = codes();
        let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
        for &b in s {
            let (code, len) = codes[usize::from(b)];
            acc = (acc << len) | u64::from(code);
            bits += u32::from(len);
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            let pad = 8 - bits;
            out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
        }
        out
    }

    /// The sum of 2^-length over all symbols, times 2^30: a complete prefix code sums to one.
    #[cfg(test)]
    pub(in crate::serve) fn kraft_sum() -> u64 {
        LENGTHS
            .iter()
            .map(|&len| 1u64 << (MAX_LENGTH - usize::from(len)))
            .sum()
    }
}

#[cfg(test)]
mod tests;
