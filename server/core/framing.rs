//! gRPC's message framing, as a request body arrives: each message is a 1-byte flag, a 4-byte
//! big-endian length and that many bytes. [`Framing`] follows the bytes of a body in whatever
//! pieces they come and reports each message's length as soon as its prefix is complete, so
//! that a message can be refused (too large, or no memory left for it) before it is read.

/// Bytes of a message's prefix: the compression flag and the length.
pub(crate) const PREFIX_BYTES: usize = 5;

/// Where a body is in its gRPC framing (the 5-byte prefix, then the message).
#[derive(Debug, Default, Clone)]
pub(crate) struct Framing {
    prefix: [u8; PREFIX_BYTES],
    /// Bytes of the current prefix seen so far.
    prefix_seen: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
}

impl Framing {
    /// Takes the next bytes of the body, calling `on_message` with the length of each message
    /// whose prefix completes in them, in order; stops at the first error it returns.
    pub(crate) fn advance<E>(
        &mut self,
        mut bytes: &[u8],
        mut on_message: impl FnMut(u32) -> Result<(), E>,
    ) -> Result<(), E> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.remaining -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = bytes.len().min(PREFIX_BYTES - self.prefix_seen);
            self.prefix[self.prefix_seen..self.prefix_seen + n].copy_from_slice(&bytes[..n]);
            self.prefix_seen += n;
            bytes = &bytes[n..];
            if self.prefix_seen == PREFIX_BYTES {
                let [_, a, b, c, d] = self.prefix;
                let len = u32::from_be_bytes([a, b, c, d]);
                self.prefix_seen = 0;
                self.remaining = u64::from(len);
                on_message(len)?;
            }
        }
        Ok(())
    }

    /// Whether the bytes so far end where a message ends (or are none): a body that stops
    /// anywhere else was cut short.
    pub(crate) fn at_boundary(&self) -> bool {
        self.prefix_seen == 0 && self.remaining == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.push(0);
            out.extend_from_slice(&u32::try_from(m.len()).expect("small").to_be_bytes());
            out.extend_from_slice(m);
        }
        out
    }

    fn lengths(framing: &mut Framing, pieces: &[&[u8]]) -> Vec<u32> {
        let mut seen = Vec::new();
        for piece in pieces {
            framing
                .advance(piece, |len| {
                    seen.push(len);
                    Ok::<(), ()>(())
                })
                .expect("no error");
        }
        seen
    }

    #[test]
    fn table() {
        let mut f = Framing::default();
        assert!(f.at_boundary());
        assert_eq!(lengths(&mut f, &[&[0, 0, 0]]), Vec::<u32>::new());
        assert!(!f.at_boundary(), "inside a prefix");
        assert_eq!(lengths(&mut f, &[&[0, 3, 1, 2]]), vec![3]);
        assert!(!f.at_boundary(), "inside a message");
        assert_eq!(lengths(&mut f, &[&[3]]), Vec::<u32>::new());
        assert!(f.at_boundary());
        // An empty message (e.g. FlushRequest) is a prefix alone.
        let mut f = Framing::default();
        assert_eq!(lengths(&mut f, &[&[0, 0, 0, 0, 0]]), vec![0]);
        assert!(f.at_boundary());
        // The length is known from the prefix alone: 4 GiB - 1 announced, nothing sent.
        let mut f = Framing::default();
        assert_eq!(lengths(&mut f, &[&[0, 255, 255, 255, 255]]), vec![u32::MAX]);
        assert!(!f.at_boundary());
    }

    #[test]
    fn stops_at_the_first_refusal() {
        let body = framed(&[vec![1; 10], vec![2; 20]]);
        let mut f = Framing::default();
        let mut seen = Vec::new();
        let r = f.advance(&body, |len| {
            seen.push(len);
            Err(len)
        });
        assert_eq!((r, seen), (Err(10), vec![10]));
    }

    proptest! {
        /// However a body is cut into pieces, the same lengths come out, and only its end is a
        /// boundary.
        #[test]
        fn pieces_do_not_matter(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..5),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let body = framed(&messages);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
            cuts.push(0);
            cuts.push(body.len());
            cuts.sort_unstable();
            let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &body[w[0]..w[1]]).collect();
            let mut f = Framing::default();
            let expected: Vec<u32> = messages.iter().map(|m| u32::try_from(m.len()).expect("small")).collect();
            prop_assert_eq!(lengths(&mut f, &pieces), expected);
            prop_assert!(f.at_boundary());
            if !body.is_empty() {
                let mut g = Framing::default();
                lengths(&mut g, &[&body[..body.len() - 1]]);
                prop_assert!(!g.at_boundary());
            }
        }
    }
}
