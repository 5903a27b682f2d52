//! The header block decoder: blocks written field by field, the dynamic table and its size
//! updates, Huffman strings, the verdicts on forbidden fields, and properties over arbitrary
//! names, values and blocks.

use super::*;
use proptest::prelude::*;

/// A header block written field by field.
#[derive(Default)]
struct Block(Vec<u8>);

impl Block {
    fn literal(mut self, flags: u8, prefix: u32, name: &[u8], value: &[u8]) -> Self {
        put_integer(&mut self.0, flags, prefix, 0);
        put_string(&mut self.0, name);
        put_string(&mut self.0, value);
        self
    }
    /// Literal, added to the table.
    fn add(self, name: &[u8], value: &[u8]) -> Self {
        self.literal(0x40, 6, name, value)
    }
    /// Literal, not added.
    fn plain(self, name: &[u8], value: &[u8]) -> Self {
        self.literal(0x00, 4, name, value)
    }
    fn indexed(mut self, index: usize) -> Self {
        put_integer(&mut self.0, 0x80, 7, index);
        self
    }
    /// Literal with a name from the table, added to the table.
    fn add_named(mut self, index: usize, value: &[u8]) -> Self {
        put_integer(&mut self.0, 0x40, 6, index);
        put_string(&mut self.0, value);
        self
    }
    fn resize(mut self, size: usize) -> Self {
        put_integer(&mut self.0, 0x20, 5, size);
        self
    }
    fn huffman_value(mut self, name: &[u8], value: &[u8]) -> Self {
        put_integer(&mut self.0, 0x40, 6, 0);
        put_string(&mut self.0, name);
        let coded = huffman::encode(value);
        put_integer(&mut self.0, 0x80, 7, coded.len());
        self.0.extend_from_slice(&coded);
        self
    }
}

/// The sizes of the table's entries, newest first.
fn sizes(decoder: &Decoder) -> Vec<usize> {
    decoder.entries.iter().map(Entry::size).collect()
}

/// Decodes `rewritten` with a fresh mirror that stands for h2 (it never sees the
/// original), checking that h2 would accept every field and reset the stream.
fn h2_sees(h2: &mut Decoder, rewritten: &[u8]) {
    h2.changes.clear();
    assert!(matches!(h2.decode(rewritten), Ok(false)), "{rewritten:?}");
    assert!(
        rewritten.ends_with(&[0x0f, 0x2a, 0x01, b'x']),
        "transfer-encoding: x"
    );
}

#[test]
fn valid_blocks_pass_and_fill_the_table() {
    let mut d = Decoder::default();
    let block = Block::default()
        .indexed(3)
        .add(b"content-type", b"application/grpc")
        .plain(b"te", b"trailers")
        .add_named(1, b"mintcache")
        .indexed(62)
        .indexed(63);
    assert_eq!(d.check(&block.0), Verdict::Valid);
    assert_eq!(sizes(&d), vec![32 + 10 + 9, 32 + 12 + 16]);
}

#[test]
fn forbidden_fields_are_malformed_and_keep_the_tables_in_step() {
    let cases: &[(&str, Block)] = &[
        ("uppercase name", Block::default().add(b"X-Upper", b"v")),
        ("NUL", Block::default().add(b"x-nul", b"a\0b")),
        ("CRLF", Block::default().add(b"x-crlf", b"a\r\nb")),
        ("DEL", Block::default().add(b"x-del", b"a\x7fb")),
        ("empty name", Block::default().add(b"", b"vv")),
        ("unknown pseudo", Block::default().add(b":x", b"v")),
        ("bad method", Block::default().add(b":method", b"G T")),
        ("bad path", Block::default().add(b":path", b"/\xff")),
        ("bad status", Block::default().add(b":status", b"99")),
        ("not added", Block::default().plain(b"X-Upper", b"v")),
        ("huffman", Block::default().huffman_value(b"x-h", b"a\nb")),
        (
            "bad value under a good name by index",
            Block::default().add_named(31, b"a\0"),
        ),
    ];
    for (case, block) in cases {
        let mut client = Decoder::default();
        let mut h2 = Decoder::default();
        let verdict = client.check(&block.0);
        let (case, rewritten) = match verdict {
            Verdict::Malformed(rewritten) => (case, rewritten),
            Verdict::Unknown if *case == "bad status" => continue,
            other => panic!("{case}: {other:?}"),
        };
        h2_sees(&mut h2, &rewritten);
        assert_eq!(sizes(&client), sizes(&h2), "{case}");
    }
}

#[test]
fn a_status_that_cannot_be_stood_in_for_is_left_to_h2() {
    let mut d = Decoder::default();
    assert_eq!(
        d.check(&Block::default().add(b":status", b"99").0),
        Verdict::Unknown
    );
    let mut d = Decoder::default();
    assert!(matches!(
        d.check(&Block::default().add(b":status", b"abc").0),
        Verdict::Malformed(_)
    ));
    // An empty name with an empty value has no stand-in of its size.
    let mut d = Decoder::default();
    assert_eq!(d.check(&Block::default().add(b"", b"").0), Verdict::Unknown);
}

#[test]
fn references_to_forbidden_entries_are_forbidden() {
    let mut client = Decoder::default();
    let mut h2 = Decoder::default();
    let Verdict::Malformed(r) = client.check(&Block::default().add(b"x-a", b"bad\0").0) else {
        panic!("malformed");
    };
    h2_sees(&mut h2, &r);
    // The entry itself, by index: malformed.
    assert!(matches!(
        client.check(&Block::default().indexed(62).0),
        Verdict::Malformed(_)
    ));
    // Its name (valid) with a valid value: valid, and h2 has the same name there.
    assert_eq!(
        client.check(&Block::default().add_named(62, b"ok").0),
        Verdict::Valid
    );
    assert_eq!(sizes(&client), vec![32 + 3 + 2, 32 + 3 + 4]);
    // A forbidden name's entry: its name by index is forbidden too.
    let Verdict::Malformed(r) = client.check(&Block::default().add(b"X-B", b"v").0) else {
        panic!("malformed");
    };
    h2.check(&Block::default().add_named(62, b"ok").0);
    h2_sees(&mut h2, &r);
    assert!(matches!(
        client.check(&Block::default().add_named(62, b"w").0),
        Verdict::Malformed(_)
    ));
    assert_eq!(sizes(&client).len(), 4);
}

#[test]
fn evictions_and_size_updates_match() {
    let mut d = Decoder::default();
    let big = vec![b'v'; 1000];
    for n in 0..5 {
        let name = format!("x-{n}");
        assert_eq!(
            d.check(&Block::default().add(name.as_bytes(), &big).0),
            Verdict::Valid
        );
    }
    // 1035 bytes each: three fit in 4096.
    assert_eq!(sizes(&d).len(), 3);
    assert_eq!(d.check(&Block::default().resize(1100).0), Verdict::Valid);
    assert_eq!(sizes(&d).len(), 1);
    assert!(matches!(
        d.check(&Block::default().indexed(63).0),
        Verdict::Unknown
    ));
    // Above the server's setting, or after a field: not what h2 takes.
    let mut d = Decoder::default();
    assert_eq!(d.check(&Block::default().resize(4097).0), Verdict::Unknown);
    let mut d = Decoder::default();
    assert_eq!(
        d.check(&Block::default().indexed(2).resize(0).0),
        Verdict::Unknown
    );
    // A forbidden block keeps its size update, first.
    let mut d = Decoder::default();
    let Verdict::Malformed(r) = d.check(&Block::default().resize(0).add(b"X", b"v").0) else {
        panic!("malformed");
    };
    assert_eq!(r[0], 0x20);
}

#[test]
fn the_huffman_code_is_the_rfcs() {
    assert_eq!(huffman::kraft_sum(), 1 << 30, "a complete prefix code");
    let codes = huffman::codes();
    // Spot checks against RFC 7541 Appendix B.
    assert_eq!(codes[usize::from(b'0')], (0x0, 5));
    assert_eq!(codes[usize::from(b' ')], (0x14, 6));
    assert_eq!(codes[usize::from(b'A')], (0x21, 6));
    assert_eq!(codes[0], (0x1ff8, 13));
    assert_eq!(codes[10], (0x3fff_fffc, 30));
    assert_eq!(codes[13], (0x3fff_fffd, 30));
    assert_eq!(codes[255], (0x3ff_ffee, 26));
    assert_eq!(codes[256], (0x3fff_ffff, 30));
    // RFC 7541 C.4 and C.6.
    for (text, coded) in [
        (&b"www.example.com"[..], &b"\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff"[..]),
        (b"no-cache", b"\xa8\xeb\x10\x64\x9c\xbf"),
        (b"custom-key", b"\x25\xa8\x49\xe9\x5b\xa9\x7d\x7f"),
        (b"custom-value", b"\x25\xa8\x49\xe9\x5b\xb8\xe8\xb4\xbf"),
        (b"302", b"\x64\x02"),
        (b"private", b"\xae\xc3\x77\x1a\x4b"),
        (
            b"Mon, 21 Oct 2013 20:13:21 GMT",
            b"\xd0\x7a\xbe\x94\x10\x54\xd4\x44\xa8\x20\x05\x95\x04\x0b\x81\x66\xe0\x82\xa6\x2d\x1b\xff",
        ),
        (
            b"https://www.example.com",
            b"\x9d\x29\xad\x17\x18\x63\xc7\x8f\x0b\x97\xc8\xe9\xae\x82\xae\x43\xd3",
        ),
    ] {
        let mut out = Vec::new();
        huffman::decode(coded, &mut out).expect("decodes");
        assert_eq!(out, text);
        assert_eq!(huffman::encode(text), coded);
    }
}

#[test]
fn bad_huffman_is_refused() {
    let mut out = Vec::new();
    // '0' (00000), then padding of ones.
    assert!(huffman::decode(&[0x07], &mut out).is_ok());
    assert_eq!(out, b"0");
    // EOS itself, then more.
    assert!(huffman::decode(&[0xff, 0xff, 0xff, 0xfc], &mut out).is_err());
    // Padding longer than 7 bits.
    assert!(huffman::decode(&[0x1f, 0xff], &mut out).is_err());
    // Padding that is not all ones: '0' is 00000, then 001.
    assert!(huffman::decode(&[0x01], &mut out).is_err());
}

proptest! {
    #[test]
    fn names_are_judged_as_http_does(name in proptest::collection::vec(any::<u8>(), 0..80)) {
        let ours = Name::of(&name);
        if name.first() != Some(&b':') {
            prop_assert_eq!(
                ours == Name::Regular,
                http::HeaderName::from_lowercase(&name).is_ok()
            );
        }
    }

    #[test]
    fn values_are_judged_as_http_does(value in proptest::collection::vec(any::<u8>(), 0..40)) {
        prop_assert_eq!(
            Name::Regular.accepts(&value),
            http::HeaderValue::from_bytes(&value).is_ok()
        );
    }

    #[test]
    fn huffman_round_trips(s in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut out = Vec::new();
        huffman::decode(&huffman::encode(&s), &mut out).expect("decodes");
        prop_assert_eq!(out, s);
    }

    /// Whatever a block holds, a malformed one rewritten leaves h2's table as the
    /// client's, and h2 accepts the rewrite.
    #[test]
    fn rewrites_keep_the_tables_in_step(
        fields in proptest::collection::vec(
            (any::<bool>(), "[a-zA-Z:\\- ]{0,6}", proptest::collection::vec(any::<u8>(), 0..8)),
            1..12,
        ),
    ) {
        let mut client = Decoder::default();
        let mut h2 = Decoder::default();
        for (add, name, value) in fields {
            let block = if add {
                Block::default().add(name.as_bytes(), &value)
            } else {
                Block::default().plain(name.as_bytes(), &value).indexed(62)
            };
            let before = sizes(&client);
            match client.check(&block.0) {
                Verdict::Valid => { h2.check(&block.0); }
                Verdict::Malformed(r) => h2_sees(&mut h2, &r),
                // A reference past the table, or no stand-in: the test's own limits.
                Verdict::Unknown => return Ok(()),
            }
            prop_assert_eq!(sizes(&client), sizes(&h2), "from {:?}", before);
        }
    }
}
