//! The connection's own rules against a scripted peer on loopback (memcached itself is
//! exercised by the end-to-end tests).
use super::*;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn limits(max_queued: usize) -> ConnLimits {
    ConnLimits {
        max_queued,
        max_value: 1 << 20,
        reply_budget: ReplyBudget::new(8 << 20),
    }
}

fn start(stream: TcpStream) -> Conn {
    Conn::start(stream, limits(1000), Arc::new(AtomicU32::new(1_000_000)))
}

/// A peer on loopback that answers each command line with what `replies` says (nothing
/// for `None`), and reports every line it reads.
async fn peer_seeing(
    replies: impl Fn(&str) -> Option<String> + Send + 'static,
) -> (TcpStream, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (seen, lines_seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = seen.send(line.clone());
            if let Some(reply) = replies(&line)
                && write.write_all(reply.as_bytes()).await.is_err()
            {
                return;
            }
        }
    });
    (TcpStream::connect(addr).await.expect("connect"), lines_seen)
}

async fn peer(replies: impl Fn(&str) -> Option<String> + Send + 'static) -> TcpStream {
    peer_seeing(replies).await.0
}

fn opaque_of(line: &str) -> String {
    line.split(' ')
        .find_map(|t| t.strip_prefix('O'))
        .unwrap_or("0")
        .to_owned()
}

fn echo(line: &str) -> Option<String> {
    let key = line.split(' ').nth(1).unwrap_or("");
    Some(format!(
        "VA {} O{}\r\n{key}\r\n",
        key.len(),
        opaque_of(line)
    ))
}

fn get(key: &str, opaque: u32) -> Batch {
    Batch::new(
        vec![Bytes::from(format!("mg {key} v O{opaque}\r\n"))],
        vec![opaque],
    )
}

/// A peer that holds back its reply to `slow` until the next command arrives.
fn holding_slow() -> impl Fn(&str) -> Option<String> + Send + 'static {
    let held = Arc::new(Mutex::new(None::<String>));
    move |line| {
        let mut held = lock(&held);
        if line.contains(" slow ") {
            *held = echo(line);
            return None;
        }
        let earlier = held.take().unwrap_or_default();
        Some(earlier + &echo(line).unwrap_or_default())
    }
}

/// A connection whose first caller drives it, waiting for `slow` (its reply is held until the
/// next command arrives); the lines its peer reads after that one.
async fn driven_by_slow() -> (
    Conn,
    tokio::task::JoinHandle<Result<Vec<Reply>, ConnError>>,
    mpsc::UnboundedReceiver<String>,
) {
    let (stream, mut seen) = peer_seeing(holding_slow()).await;
    let conn = start(stream);
    let first = tokio::spawn({
        let conn = conn.clone();
        async move { conn.call(get("slow", 1)).await }
    });
    assert_eq!(seen.recv().await.as_deref(), Some("mg slow v O1"));
    assert!(
        conn.shared.io.try_lock().is_err(),
        "the first caller drives the connection"
    );
    (conn, first, seen)
}

#[tokio::test]
async fn concurrent_callers_each_get_their_own_reply() {
    let conn = start(peer(echo).await);
    let calls = (0..200u32).map(|i| {
        let conn = conn.clone();
        async move { (i, conn.call(get(&format!("k{i}"), i + 1)).await) }
    });
    for (i, replies) in futures_util::future::join_all(calls).await {
        let replies = replies.expect("answered");
        assert_eq!(
            replies,
            vec![Reply::Value(
                Meta {
                    opaque: Some(i + 1),
                    ..Meta::default()
                },
                Bytes::from(format!("k{i}"))
            )]
        );
    }
    assert_eq!(conn.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_on_many_tasks_each_get_their_own_reply() {
    let conn = start(peer(echo).await);
    let tasks: Vec<_> = (0..400u32)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move { (i, conn.call(get(&format!("k{i}"), i + 1)).await) })
        })
        .collect();
    for task in tasks {
        let (i, replies) = task.await.expect("task");
        let replies = replies.expect("answered");
        assert!(
            matches!(&replies[..], [Reply::Value(m, d)] if m.opaque == Some(i + 1) && d[..] == *format!("k{i}").as_bytes()),
            "{replies:?}"
        );
    }
    assert_eq!(conn.in_flight(), 0);
}

/// While a caller drives the connection (it waits for a reply), the calls that run in the
/// same turn of the scheduler leave in one write, however many: each waits a turn before it
/// asks the driver to write, instead of waking it for its own command alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_calls_of_one_turn_leave_in_one_write() {
    let (conn, driver, _) = driven_by_slow().await;
    // Spawned from the runtime's one worker, the calls run one after the other in one turn.
    let calls = tokio::spawn({
        let conn = conn.clone();
        async move {
            (0..50u32)
                .map(|i| {
                    let conn = conn.clone();
                    tokio::spawn(async move { (i, conn.call(get(&format!("k{i}"), i + 2)).await) })
                })
                .collect::<Vec<_>>()
        }
    })
    .await
    .expect("spawned");
    for call in calls {
        let (i, replies) = call.await.expect("task");
        let replies = replies.expect("answered");
        assert!(
            matches!(&replies[..], [Reply::Value(m, _)] if m.opaque == Some(i + 2)),
            "{replies:?}"
        );
    }
    driver.await.expect("task").expect("answered");
    // The slow command's write, then one for the 50.
    assert_eq!(conn.shared.io.lock().await.writes, 2);
    assert_eq!(conn.in_flight(), 0);
}

#[tokio::test]
async fn a_caller_that_gives_up_leaves_the_connection_in_step() {
    let conn = start(peer(holding_slow()).await);
    let gave_up = tokio::time::timeout(Duration::from_millis(50), conn.call(get("slow", 1))).await;
    assert!(gave_up.is_err(), "the slow call is still waiting");
    // Its late reply is consumed and dropped; the next caller gets its own.
    let replies = conn.call(get("next", 2)).await.expect("answered");
    assert!(
        matches!(&replies[..], [Reply::Value(meta, data)] if meta.opaque == Some(2) && &data[..] == b"next"),
        "{replies:?}"
    );
    assert!(!conn.is_closed());
    assert_eq!(conn.in_flight(), 0);
}

#[tokio::test]
async fn a_command_whose_caller_left_before_it_was_written_is_never_written() {
    let (conn, first, mut seen) = driven_by_slow().await;
    // A second caller queues behind it and gives up before it is written: polled once (it
    // queues its command), then dropped before the driver runs.
    let second = futures_util::FutureExt::now_or_never(conn.call(get("left", 2)));
    assert!(second.is_none(), "{second:?}");
    // A third goes through, and frees the first.
    let third = conn.call(get("third", 3)).await.expect("answered");
    assert!(matches!(&third[..], [Reply::Value(m, _)] if m.opaque == Some(3)));
    let first = first.await.expect("task").expect("answered");
    assert!(matches!(&first[..], [Reply::Value(m, _)] if m.opaque == Some(1)));
    assert_eq!(seen.recv().await.as_deref(), Some("mg third v O3"));
    assert!(seen.try_recv().is_err(), "nothing else was written");
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_sends_nothing() {
    let (stream, mut seen) = peer_seeing(|_| None).await;
    let conn = Conn::start(stream, limits(2), Arc::new(AtomicU32::new(1)));
    let waiting: Vec<_> = (1..=2u32)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.call(get("k", i)).await })
        })
        .collect();
    for _ in 0..2 {
        assert!(seen.recv().await.is_some());
    }
    assert_eq!(conn.call(get("k", 3)).await, Err(ConnError::Full));
    assert!(!conn.is_closed(), "a full queue is not a broken connection");
    conn.close("test over");
    for call in waiting {
        assert!(matches!(
            call.await.expect("task"),
            Err(ConnError::Broken(_))
        ));
    }
}

#[tokio::test]
async fn an_idle_connection_the_server_closed_reports_its_commands_as_never_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        drop(stream);
    });
    let conn = start(TcpStream::connect(addr).await.expect("connect"));
    server.await.expect("closed");
    // The close has reached this side by the time the peer task ended; give the kernel a
    // moment to deliver the FIN.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(conn.call(get("k", 1)).await, Err(ConnError::NotSent));
    assert!(conn.is_closed());
}

#[tokio::test]
async fn a_reply_out_of_step_closes_the_connection() {
    let conn = start(peer(|_| Some("HD O999\r\n".to_owned())).await);
    let e = conn.call(get("k", 1)).await.expect_err("refused");
    assert!(matches!(e, ConnError::Protocol(_)), "{e:?}");
    assert!(conn.is_closed());
    assert_eq!(conn.call(get("k", 2)).await, Err(ConnError::NotSent));
}

#[tokio::test]
async fn a_peer_that_is_not_memcached_closes_the_connection() {
    let conn = start(peer(|_| Some("HTTP/1.1 400 Bad Request\r\n".to_owned())).await);
    let e = conn.call(get("k", 1)).await.expect_err("refused");
    assert!(
        matches!(e, ConnError::Protocol(ref m) if m.contains("not a memcached")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_closed_peer_fails_what_was_sent_and_refuses_what_was_not() {
    // The peer hangs up at the first command without answering.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut lines = BufReader::new(stream).lines();
        let _ = lines.next_line().await;
    });
    let conn = start(TcpStream::connect(addr).await.expect("connect"));
    let e = conn.call(get("k", 1)).await.expect_err("lost");
    assert!(matches!(e, ConnError::Broken(_)), "{e:?}");
    assert_eq!(conn.call(get("k", 2)).await, Err(ConnError::NotSent));
    assert_eq!(conn.in_flight(), 0);
}

#[tokio::test]
async fn an_empty_batch_is_answered_at_once_and_keeps_the_connection_in_step() {
    let conn = start(peer(echo).await);
    let empty = Batch::new(Vec::new(), Vec::new());
    assert_eq!(conn.call(empty).await, Ok(Vec::new()));
    let replies = conn.call(get("k", 1)).await.expect("answered");
    assert!(matches!(&replies[..], [Reply::Value(meta, _)] if meta.opaque == Some(1)));
    assert_eq!(conn.in_flight(), 0);
}

#[tokio::test]
async fn batches_get_all_their_replies_in_order() {
    let conn = start(peer(echo).await);
    let batch = Batch::new(
        vec![Bytes::from_static(
            b"mg a v O7\r\nmg bb v O8\r\nmg ccc v O9\r\n",
        )],
        vec![7, 8, 9],
    );
    let replies = conn.call(batch).await.expect("answered");
    let values: Vec<&[u8]> = replies
        .iter()
        .map(|r| match r {
            Reply::Value(_, data) => &data[..],
            _ => &b"?"[..],
        })
        .collect();
    assert_eq!(values, [&b"a"[..], b"bb", b"ccc"]);
}

#[tokio::test]
async fn values_beyond_the_call_budget_are_skipped_and_the_rest_kept() {
    let conn = start(peer(echo).await);
    let mut batch = Batch::new(
        vec![Bytes::from_static(
            b"mg aaaa v O1\r\nmg bbbbbb v O2\r\nmg cc v O3\r\n",
        )],
        vec![1, 2, 3],
    );
    batch.budget = Some(CallBudget::new(6));
    let replies = conn.call(batch).await.expect("answered");
    assert!(matches!(&replies[0], Reply::Value(_, d) if &d[..] == b"aaaa"));
    assert!(matches!(&replies[1], Reply::Skipped(m, 6) if m.opaque == Some(2)));
    assert!(matches!(&replies[2], Reply::Value(_, d) if &d[..] == b"cc"));
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn the_reply_budget_is_held_as_long_as_a_value_lives() {
    let reply_budget = ReplyBudget::new(10);
    let conn = Conn::start(
        peer(echo).await,
        ConnLimits {
            max_queued: 10,
            max_value: 100,
            reply_budget: reply_budget.clone(),
        },
        Arc::new(AtomicU32::new(1)),
    );
    let held = conn.call(get("eightchr", 1)).await.expect("answered");
    assert_eq!(reply_budget.held(), 8);
    // No room for another 8 bytes while the first value lives.
    let refused = conn.call(get("87654321", 2)).await.expect("answered");
    assert!(
        matches!(&refused[..], [Reply::Skipped(_, 8)]),
        "{refused:?}"
    );
    drop(held);
    assert_eq!(reply_budget.held(), 0);
    let kept = conn.call(get("87654321", 3)).await.expect("answered");
    assert!(matches!(&kept[..], [Reply::Value(_, d)] if &d[..] == b"87654321"));
}

#[tokio::test]
async fn an_election_won_for_a_caller_that_left_is_given_back() {
    // The peer answers `slow` (a win) only after the next command arrives.
    let held = Arc::new(Mutex::new(None::<String>));
    let (stream, mut seen) = peer_seeing(move |line| {
        let mut held = lock(&held);
        if line.contains(" slow ") {
            *held = Some(format!("VA 1 c42 t30 O{} W X\r\nv\r\n", opaque_of(line)));
            return None;
        }
        let earlier = held.take().unwrap_or_default();
        if line.starts_with("md ") {
            return Some(format!("HD O{}\r\n", opaque_of(line)));
        }
        Some(earlier + &echo(line).unwrap_or_default())
    })
    .await;
    let conn = Conn::start(stream, limits(100), Arc::new(AtomicU32::new(500)));
    let mut won = get("slow", 1);
    won.abandon = Some(Arc::new(|index, meta, _, buf, opaque| {
        assert_eq!(index, 0);
        assert!(meta.won && meta.stale);
        buf.put_slice(format!("md slow I T30 C{} O{opaque}\r\n", meta.cas.unwrap_or(0)).as_bytes());
        true
    }));
    let gave_up = tokio::time::timeout(Duration::from_millis(50), conn.call(won)).await;
    assert!(gave_up.is_err());
    assert_eq!(seen.recv().await.as_deref(), Some("mg slow v O1"));
    conn.call(get("next", 2)).await.expect("answered");
    assert_eq!(seen.recv().await.as_deref(), Some("mg next v O2"));
    assert_eq!(seen.recv().await.as_deref(), Some("md slow I T30 C42 O500"));
    // Its reply is consumed by the next caller; the connection stays in step.
    conn.call(get("after", 3)).await.expect("answered");
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn a_stalled_connection_is_told_apart_from_a_busy_one() {
    let conn = start(peer(|_| None).await);
    let mark = conn.read_mark();
    let _ = tokio::time::timeout(Duration::from_millis(30), conn.call(get("k", 1))).await;
    assert!(!conn.read_since(mark), "nothing came back");
    let conn = start(peer(echo).await);
    let mark = conn.read_mark();
    conn.call(get("k", 1)).await.expect("answered");
    assert!(conn.read_since(mark));
}

/// Whatever a peer sends back, cut however it arrives, no caller ever gets a reply carrying
/// another command's opaque: each gets its own replies, or an error.
#[test]
fn no_reply_ever_reaches_the_wrong_caller() {
    use proptest::prelude::*;
    let reply = prop_oneof![
        // The right reply for the next command (the common case).
        Just(None),
        // A reply with another opaque.
        any::<u32>().prop_map(Some),
    ];
    let config = ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        plan in proptest::collection::vec((reply, proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))), 1..12),
        garbage in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..30)),
        chunk in 1usize..50,
    )| {
        // The stream: for command i (opaque 100 + i), a value reply with either its own
        // opaque or another one; maybe garbage somewhere.
        let mut stream = Vec::new();
        for (i, (other, value)) in plan.iter().enumerate() {
            let opaque = other.unwrap_or(100 + i as u32);
            match value {
                Some(v) => {
                    stream.extend_from_slice(format!("VA {} O{opaque}\r\n", v.len()).as_bytes());
                    stream.extend_from_slice(v);
                    stream.extend_from_slice(b"\r\n");
                }
                None => stream.extend_from_slice(format!("HD O{opaque}\r\n").as_bytes()),
            }
            if i == plan.len() / 2 && let Some(g) = &garbage {
                stream.extend_from_slice(g);
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let commands = plan.len();
        runtime.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                let (mut stream_out, _) = listener.accept().await.expect("accept");
                for part in stream.chunks(chunk) {
                    if stream_out.write_all(part).await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
                // Then stay silent (the test ends by closing).
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
            let conn = start(TcpStream::connect(addr).await.expect("connect"));
            let calls = (0..commands as u32).map(|i| {
                let conn = conn.clone();
                async move {
                    let call = conn.call(get("k", 100 + i));
                    (i, tokio::time::timeout(Duration::from_millis(500), call).await)
                }
            });
            for (i, result) in futures_util::future::join_all(calls).await {
                if let Ok(Ok(replies)) = result {
                    for reply in replies {
                        assert!(
                            reply.opaque().is_none_or(|o| o == 100 + i),
                            "caller {} got {reply:?}", 100 + i
                        );
                    }
                }
            }
            conn.close("case over");
        });
    });
}
