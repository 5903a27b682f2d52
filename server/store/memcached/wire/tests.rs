//! Tests of `wire.rs`.

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
    let budget = crate::store::budget::ReplyBudget::new(100);
    let mut reader = ReplyReader::new();
    feed(&mut reader, b"VA 2 O1\r\nhi\r\n");
    let reply = reader
        .next(&mut |_, size| Admit::Keep(budget.take(size)))
        .expect("valid")
        .expect("whole");
    assert_eq!(budget.held(), 2);
    let copy = match &reply {
        Reply::Value(_, v) => v.clone(),
        other => panic!("{other:?}"),
    };
    drop(reply);
    assert_eq!(budget.held(), 2, "a clone keeps it");
    drop(copy);
    assert_eq!(budget.held(), 0);
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

/// memcached decides the win of an invalidated item under the item's lock only for a read with
/// `N`, `R`, `T`, `h` or `l` (proto_text.c, `process_mget_command`, 1.6.18): a read with none of
/// them, racing another on another memcached thread, can win too. Every read this store sends
/// carries one.
#[test]
fn every_read_makes_memcached_lock_the_item() {
    let space = KeySpace::new("ns", "v1").expect("valid");
    let key = space.store_key(b"user:42");
    for bits in 0u8..32 {
        let opts = GetOpts {
            recache_below: (bits & 1 != 0).then_some(31),
            vivify_for: (bits & 2 != 0).then_some(5),
            touch: (bits & 4 != 0).then_some(Expiry::Never),
            no_value: bits & 8 != 0,
            hot: bits & 16 != 0,
        };
        let mut buf = BytesMut::new();
        get(&mut buf, &key, opts, 1_800_000_000, 7);
        let command = String::from_utf8(buf.to_vec()).expect("text");
        let flags = command.trim_end().trim_start_matches("mg ns:v1:user:42");
        assert!(
            flags.contains(" h"),
            "{command:?} does not make memcached lock the item"
        );
        assert_eq!(
            flags.contains(" l"),
            opts.hot,
            "{command:?}: the access time only for the hot-key cache"
        );
    }
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
    assert_eq!(&buf[..], b"mg ns:v1:user:42 f t c v h R31 N5 T0 O7\r\n");
    buf.clear();
    get(&mut buf, &spaced, GetOpts::default(), 0, 8);
    assert_eq!(&buf[..], b"mg bnM6djE6YSBiDQo= f t c v h b O8\r\n");
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
