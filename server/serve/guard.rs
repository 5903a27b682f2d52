//! [`HeaderGuard`]: what a client sends on a gRPC connection, on its way to h2, with each
//! header block that h2 would answer by closing the whole connection (a field HTTP/2 forbids)
//! rewritten so that h2 resets that call's stream alone (see [`super::hpack`] for why and how).
//!
//! The guard follows the client's frames as they pass: everything but header blocks goes
//! through untouched and uncopied; a header block (a HEADERS frame and its CONTINUATION frames)
//! is held back until it is whole, judged, and handed on as it was or rewritten. What it does
//! not follow (not HTTP/2, frames out of order, a block larger than h2 takes) it leaves to h2,
//! and from then on it only passes bytes through. What the server writes is not touched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::hpack::{Decoder, Verdict};

/// What a client sends first (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEAD: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame every HTTP/2 server takes (`SETTINGS_MAX_FRAME_SIZE`'s minimum), and
/// the one h2 keeps to unless told otherwise: rewritten blocks are cut to it.
const FRAME_BYTES: usize = 16 * 1024;
/// Frames of one header block the guard holds back before leaving the block to h2. h2 takes
/// at most 5 with the server's header list limit (64 KiB) and frame size, and closes the
/// connection beyond that whatever the guard does.
const MAX_BLOCK_FRAMES: usize = 8;
const MAX_BLOCK_BYTES: usize = MAX_BLOCK_FRAMES * (FRAME_HEAD + FRAME_BYTES);

/// A connection's reading side, guarded: a malformed header block fails its own stream, not
/// the connection.
pub(crate) struct HeaderGuard<IO> {
    io: IO,
    frames: Frames,
    /// Bytes read but not handed on yet: the first `ready` of them are decided.
    held: BytesMut,
    ready: usize,
    /// The client has closed its side.
    eof: bool,
}

impl<IO> HeaderGuard<IO> {
    pub(crate) fn new(io: IO) -> Self {
        Self {
            io,
            frames: Frames::default(),
            held: BytesMut::new(),
            ready: 0,
            eof: false,
        }
    }

    pub(crate) fn get_ref(&self) -> &IO {
        &self.io
    }
}

/// Where the guard is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// In the connection preface, this many bytes of it to come.
    Preface(usize),
    /// At the start of a frame.
    FrameStart,
    /// In the payload of a frame that is not a header block, this many bytes of it to come.
    Payload(usize),
    /// No longer following: everything passes.
    Off,
}

/// What to do with the bytes at hand.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The first bytes go on as they are.
    Pass(usize),
    /// The first `len` bytes (a whole header block's frames) are replaced by `with`.
    Replace { len: usize, with: Vec<u8> },
    /// Nothing can be decided before more bytes arrive.
    More,
}

/// The client's frames, followed.
struct Frames {
    at: Position,
    decoder: Decoder,
    /// A header block's fragments, joined.
    block: Vec<u8>,
}

impl Default for Frames {
    fn default() -> Self {
        Self {
            at: Position::Preface(PREFACE.len()),
            decoder: Decoder::default(),
            block: Vec::new(),
        }
    }
}

/// A frame's 9-byte head.
#[derive(Debug, Clone, Copy)]
struct Head {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl Head {
    fn read(bytes: &[u8]) -> Option<Self> {
        let head = bytes.get(..FRAME_HEAD)?;
        Some(Self {
            len: usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]),
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        let len = u32::try_from(self.len).unwrap_or(u32::MAX).to_be_bytes();
        out.extend_from_slice(&len[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&self.stream.to_be_bytes());
    }
}

impl Frames {
    /// Decides about the start of `input` (not empty): bytes it passes are behind it; bytes it
    /// asks more for are looked at again, with more after them, next time.
    fn step(&mut self, input: &[u8]) -> Step {
        match self.at {
            Position::Off => Step::Pass(input.len()),
            Position::Preface(left) => {
                let n = left.min(input.len());
                let expected = &PREFACE[PREFACE.len() - left..][..n];
                self.at = if input[..n] != *expected {
                    Position::Off
                } else if n == left {
                    Position::FrameStart
                } else {
                    Position::Preface(left - n)
                };
                Step::Pass(n)
            }
            Position::Payload(left) => {
                let n = left.min(input.len());
                self.at = if n == left {
                    Position::FrameStart
                } else {
                    Position::Payload(left - n)
                };
                Step::Pass(n)
            }
            Position::FrameStart => {
                let Some(head) = Head::read(input) else {
                    return Step::More;
                };
                match head.kind {
                    HEADERS => self.header_block(input, head),
                    // Out of place (CONTINUATION) or not a client's (PUSH_PROMISE): h2 closes
                    // the connection.
                    CONTINUATION | PUSH_PROMISE => self.off(input),
                    _ => {
                        let payload = head.len.min(input.len() - FRAME_HEAD);
                        self.at = if payload == head.len {
                            Position::FrameStart
                        } else {
                            Position::Payload(head.len - payload)
                        };
                        Step::Pass(FRAME_HEAD + payload)
                    }
                }
            }
        }
    }

    fn off(&mut self, input: &[u8]) -> Step {
        self.at = Position::Off;
        Step::Pass(input.len())
    }

    /// A header block starting at the start of `input`, with `first` the head of its HEADERS
    /// frame.
    fn header_block(&mut self, input: &[u8], first: Head) -> Step {
        if first.stream == 0 {
            return self.off(input);
        }
        // The block's frames, all there before anything is decided.
        let mut end = 0;
        let mut frames = 0;
        loop {
            let Some(head) = Head::read(&input[end..]) else {
                return Step::More;
            };
            if frames > 0 && (head.kind != CONTINUATION || head.stream != first.stream) {
                return self.off(input);
            }
            frames += 1;
            end += FRAME_HEAD + head.len;
            if frames > MAX_BLOCK_FRAMES || end > MAX_BLOCK_BYTES {
                return self.off(input);
            }
            if input.len() < end {
                return Step::More;
            }
            if head.flags & END_HEADERS != 0 {
                break;
            }
        }
        let Some(priority) = self.join_fragments(&input[..end]) else {
            return self.off(input);
        };
        self.at = Position::FrameStart;
        match self.decoder.check(&self.block) {
            Verdict::Valid => Step::Pass(end),
            Verdict::Malformed(block) => Step::Replace {
                len: end,
                with: frames_of(&block, first, priority),
            },
            Verdict::Unknown => self.off(input),
        }
    }

    /// Joins the block fragments of `frames` into `self.block`; the HEADERS frame's priority
    /// fields, if any. `None` if the padding does not fit.
    fn join_fragments(&mut self, mut frames: &[u8]) -> Option<Option<[u8; 5]>> {
        self.block.clear();
        let mut priority = None;
        while let Some(head) = Head::read(frames) {
            let mut payload = &frames[FRAME_HEAD..FRAME_HEAD + head.len];
            frames = &frames[FRAME_HEAD + head.len..];
            if head.kind == HEADERS {
                let mut pad = 0;
                if head.flags & PADDED != 0 {
                    let (&len, rest) = payload.split_first()?;
                    pad = usize::from(len);
                    payload = rest;
                }
                if head.flags & PRIORITY != 0 {
                    priority = Some(<[u8; 5]>::try_from(payload.get(..5)?).ok()?);
                    payload = &payload[5..];
                }
                payload = payload.get(..payload.len().checked_sub(pad)?)?;
            }
            self.block.extend_from_slice(payload);
        }
        Some(priority)
    }
}

/// The frames that carry `block` on `first`'s stream, with its END_STREAM flag and priority,
/// without padding, cut to [`FRAME_BYTES`].
fn frames_of(block: &[u8], first: Head, priority: Option<[u8; 5]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + 4 * FRAME_HEAD);
    let first_room = FRAME_BYTES - priority.map_or(0, |p| p.len());
    let (head_part, mut rest) = block.split_at(block.len().min(first_room));
    let flags = (first.flags & END_STREAM)
        | if priority.is_some() { PRIORITY } else { 0 }
        | if rest.is_empty() { END_HEADERS } else { 0 };
    Head {
        len: head_part.len() + priority.map_or(0, |p| p.len()),
        kind: HEADERS,
        flags,
        stream: first.stream,
    }
    .write(&mut out);
    if let Some(priority) = priority {
        out.extend_from_slice(&priority);
    }
    out.extend_from_slice(head_part);
    while !rest.is_empty() {
        let (part, more) = rest.split_at(rest.len().min(FRAME_BYTES));
        Head {
            len: part.len(),
            kind: CONTINUATION,
            flags: if more.is_empty() { END_HEADERS } else { 0 },
            stream: first.stream,
        }
        .write(&mut out);
        out.extend_from_slice(part);
        rest = more;
    }
    out
}

impl<IO: AsyncRead + Unpin> AsyncRead for HeaderGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Decided bytes first.
            if this.ready > 0 {
                let n = this.ready.min(buf.remaining());
                buf.put_slice(&this.held[..n]);
                this.held.advance(n);
                this.ready -= n;
                return Poll::Ready(Ok(()));
            }
            if !this.held.is_empty() {
                match this.frames.step(&this.held) {
                    Step::Pass(n) => this.ready = n,
                    Step::Replace { len, with } => {
                        this.held.advance(len);
                        let rest = std::mem::take(&mut this.held);
                        this.ready = with.len();
                        this.held = BytesMut::from(&with[..]);
                        this.held.extend_from_slice(&rest);
                    }
                    Step::More if this.eof => {
                        // The client ended inside a frame: h2 sees what there is.
                        this.frames.at = Position::Off;
                    }
                    Step::More => {
                        // More of what is held back, read through the caller's buffer.
                        let before = buf.filled().len();
                        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
                        let read = &buf.filled()[before..];
                        if read.is_empty() {
                            this.eof = true;
                        }
                        this.held.extend_from_slice(read);
                        buf.set_filled(before);
                    }
                }
                continue;
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Nothing held: read straight into the caller's buffer, and keep back what cannot
            // be handed on yet.
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            let filled = buf.filled().len();
            if filled == before {
                this.eof = true;
                return Poll::Ready(Ok(()));
            }
            let mut at = before;
            while at < filled {
                match this.frames.step(&buf.filled()[at..filled]) {
                    Step::Pass(n) => at += n,
                    Step::Replace { len, with } => {
                        this.ready = with.len();
                        this.held = BytesMut::from(&with[..]);
                        this.held.extend_from_slice(&buf.filled()[at + len..filled]);
                        break;
                    }
                    Step::More => {
                        this.held.extend_from_slice(&buf.filled()[at..filled]);
                        break;
                    }
                }
            }
            buf.set_filled(at);
            if at > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HeaderGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Head {
            len: payload.len(),
            kind,
            flags,
            stream,
        }
        .write(&mut out);
        out.extend_from_slice(payload);
        out
    }

    /// `x-a: v` as a literal without indexing, and with `name` instead of `x-a`.
    fn block(name: &[u8]) -> Vec<u8> {
        let mut b = vec![0x00, name.len() as u8];
        b.extend_from_slice(name);
        b.extend_from_slice(&[1, b'v']);
        b
    }

    /// Everything `input` becomes through a guard, fed in pieces of `chunk` bytes and read
    /// with a buffer of `read` bytes.
    async fn through(input: &[u8], chunk: usize, read: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            for piece in input.chunks(chunk) {
                client.write_all(piece).await.expect("write");
                tokio::task::yield_now().await;
            }
        });
        let mut guard = HeaderGuard::new(server);
        let mut out = Vec::new();
        let mut buf = vec![0u8; read];
        loop {
            let n = guard.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        writer.await.expect("writer");
        out
    }

    fn stream_of(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        for f in frames {
            out.extend_from_slice(f);
        }
        out
    }

    #[tokio::test]
    async fn valid_traffic_passes_unchanged_however_it_is_cut() {
        let input = stream_of(&[
            frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]),
            frame(HEADERS, END_HEADERS, 1, &block(b"x-a")),
            frame(0x0, 0, 1, &[7; 40_000][..16_384]),
            frame(HEADERS, PADDED | PRIORITY, 3, &{
                let mut p = vec![2, 0, 0, 0, 1, 16];
                p.extend_from_slice(&block(b"x-b")[..3]);
                p.extend_from_slice(&[0, 0]);
                p
            }),
            frame(CONTINUATION, END_HEADERS, 3, &block(b"x-b")[3..]),
            frame(0x0, END_STREAM, 1, b"end"),
        ]);
        for (chunk, read) in [(1, 7), (5, 1), (9, 100), (4096, 8192), (1 << 20, 1 << 16)] {
            assert_eq!(through(&input, chunk, read).await, input, "{chunk}/{read}");
        }
    }

    #[tokio::test]
    async fn a_malformed_block_is_rewritten_alone() {
        let before = frame(0x0, 0, 1, b"data of stream 1");
        let after = frame(0x0, END_STREAM, 1, b"more");
        let bad = frame(HEADERS, END_HEADERS | END_STREAM, 3, &block(b"X-A"));
        let input = stream_of(&[before.clone(), bad, after.clone()]);
        let mut rewritten_block = Vec::new();
        // transfer-encoding: x
        rewritten_block.extend_from_slice(&[0x0f, 0x2a, 0x01, b'x']);
        let expected = stream_of(&[
            before,
            frame(HEADERS, END_HEADERS | END_STREAM, 3, &rewritten_block),
            after,
        ]);
        for (chunk, read) in [(1, 3), (7, 50), (1 << 20, 1 << 16)] {
            assert_eq!(
                through(&input, chunk, read).await,
                expected,
                "{chunk}/{read}"
            );
        }
    }

    #[tokio::test]
    async fn what_it_does_not_follow_passes_untouched() {
        // Not HTTP/2: everything passes, uppercase and all.
        let http1 = b"GET / HTTP/1.1\r\nHost: X\r\n\r\n".repeat(3);
        assert_eq!(through(&http1, 5, 64).await, http1);
        // A CONTINUATION out of place: the guard stops, and even a malformed block after it
        // goes to h2 as it is.
        let input = stream_of(&[
            frame(CONTINUATION, END_HEADERS, 1, &block(b"x-a")),
            frame(HEADERS, END_HEADERS, 3, &block(b"X-A")),
        ]);
        assert_eq!(through(&input, 3, 64).await, input);
        // A block cut short by the end of the connection.
        let mut cut = stream_of(&[frame(HEADERS, END_HEADERS, 1, &block(b"X-A"))]);
        cut.truncate(cut.len() - 2);
        assert_eq!(through(&cut, 4, 64).await, cut);
    }

    /// What h2's client encoder makes of a header value holding every byte a value may hold
    /// (Huffman-coded, since enough `a`s make that the shorter form) decodes as valid, with the
    /// value's length: the Huffman code and the decoder agree with h2's.
    #[tokio::test]
    async fn h2s_own_header_blocks_decode_as_valid() {
        let mut value: Vec<u8> = (0u8..=255)
            .filter(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
            .collect();
        // Neither end may be whitespace, or `http` trims it.
        value.insert(0, b'a');
        value.push(b'a');
        value.extend(std::iter::repeat_n(b'a', 1500));
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let (mut send, connection) = h2::client::handshake(client).await.expect("handshake");
        let driver = tokio::spawn(connection);
        let request = http::Request::builder()
            .method("POST")
            .uri("http://mintcache/mintcache.v1.Cache/Get")
            .header(
                "x-every-byte",
                http::HeaderValue::from_bytes(&value).expect("valid"),
            )
            .body(())
            .expect("request");
        let _response = send.send_request(request, true).expect("sent");
        // The client's bytes, until a whole header block.
        let mut bytes = Vec::new();
        let mut frames = Frames::default();
        let mut at = 0;
        let verdict = loop {
            let mut buf = [0u8; 8192];
            let n = server.read(&mut buf).await.expect("read");
            assert!(n > 0, "the client stopped");
            bytes.extend_from_slice(&buf[..n]);
            let mut decided = None;
            while at < bytes.len() {
                let Some(head) = Head::read(&bytes[at..]).filter(|_| at >= PREFACE.len()) else {
                    if at < PREFACE.len() {
                        at = PREFACE.len().min(bytes.len());
                        continue;
                    }
                    break;
                };
                let end = at + FRAME_HEAD + head.len;
                if bytes.len() < end {
                    break;
                }
                if head.kind == HEADERS {
                    assert_ne!(head.flags & END_HEADERS, 0, "one frame");
                    let payload = &bytes[at + FRAME_HEAD..end];
                    // Shorter than the value as it is: Huffman-coded.
                    assert!(payload.len() < value.len(), "{} bytes", payload.len());
                    decided = Some(frames.decoder.check(payload));
                }
                at = end;
            }
            if let Some(verdict) = decided {
                break verdict;
            }
        };
        assert_eq!(verdict, Verdict::Valid);
        assert!(
            frames.decoder.holds_value_of_len(value.len()),
            "the value decoded to another length"
        );
        driver.abort();
    }

    #[test]
    fn rewritten_blocks_are_cut_into_frames() {
        let block = vec![0x82; FRAME_BYTES + 10];
        let first = Head {
            len: 0,
            kind: HEADERS,
            flags: END_STREAM | PADDED,
            stream: 5,
        };
        let out = frames_of(&block, first, Some([0, 0, 0, 1, 9]));
        let h1 = Head::read(&out).expect("head");
        assert_eq!(
            (h1.kind, h1.flags, h1.len),
            (HEADERS, END_STREAM | PRIORITY, FRAME_BYTES)
        );
        let h2 = Head::read(&out[FRAME_HEAD + h1.len..]).expect("head");
        assert_eq!((h2.kind, h2.flags, h2.len), (CONTINUATION, END_HEADERS, 15));
        assert_eq!(out.len(), 2 * FRAME_HEAD + block.len() + 5);
    }
}
