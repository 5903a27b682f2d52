//! Batched reads (`GetMany`): each distinct key read once, and an answer built within one
//! gRPC message, values in request order for as long as they fit.

use std::collections::HashMap;

use bytes::Bytes;
use foldhash::fast::RandomState;

/// Bytes a batched result takes besides its key and value, at most: field tags and lengths,
/// outcome, flags, ttl, grace and a lease token (about 60), or an error's code and message (at
/// most about 130).
pub(crate) const RESULT_OVERHEAD: usize = 160;
/// Bytes of a message besides its results (gRPC framing), with room to spare.
pub(crate) const MESSAGE_OVERHEAD: usize = 64;

/// The distinct keys of a batch in order of first appearance, and for each position of the
/// batch the index of its key among them.
pub(crate) fn distinct_keys<'k>(
    keys: impl Iterator<Item = &'k [u8]>,
) -> (Vec<&'k [u8]>, Vec<usize>) {
    let (size, _) = keys.size_hint();
    let mut distinct: Vec<&[u8]> = Vec::with_capacity(size);
    // foldhash, seeded per process: keys come from clients, so the hash must not be one they
    // can aim collisions at; SipHash (std's) took ~5% of a GetMany's CPU.
    let mut index: HashMap<&[u8], usize, RandomState> =
        HashMap::with_capacity_and_hasher(size, RandomState::default());
    let of_position = keys
        .map(|key| {
            *index.entry(key).or_insert_with(|| {
                distinct.push(key);
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, of_position)
}

/// What a batched answer to `keys` has room for in values, within a message of `max_message`
/// bytes: what is left once every result's key and fixed fields are counted.
pub(crate) fn answer_room(max_message: usize, keys: &[Bytes]) -> usize {
    let fixed: usize = keys.iter().map(|k| k.len() + RESULT_OVERHEAD).sum();
    max_message.saturating_sub(fixed + MESSAGE_OVERHEAD)
}

/// The answer of each position of a batch from the answers of its distinct keys, values in
/// request order as long as they fit in `room` bytes (a value's size is `size`); a value that
/// does not fit (a duplicate key repeats its value) fails its position alone, with
/// `no_room(size)`.
pub(crate) fn fit_answers<T: Clone, E: Clone>(
    answers: &[Result<T, E>],
    of_position: &[usize],
    mut room: usize,
    size: impl Fn(&T) -> usize,
    no_room: impl Fn(usize) -> E,
) -> Vec<Result<T, E>> {
    of_position
        .iter()
        .map(|&i| match &answers[i] {
            Ok(answer) => {
                let size = size(answer);
                if size > room {
                    return Err(no_room(size));
                }
                room -= size;
                Ok(answer.clone())
            }
            Err(e) => Err(e.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_distinct_key_once_in_order_of_first_appearance() {
        let keys: [&[u8]; 5] = [b"a", b"b", b"a", b"c", b"b"];
        let (distinct, of_position) = distinct_keys(keys.into_iter());
        assert_eq!(distinct, [&b"a"[..], b"b", b"c"]);
        assert_eq!(of_position, [0, 1, 0, 2, 1]);
    }

    #[test]
    fn values_fit_in_request_order_and_a_duplicate_repeats_its_value() {
        let answers: Vec<Result<usize, String>> = vec![Ok(40), Err("bad key".into()), Ok(50)];
        let fitted = fit_answers(
            &answers,
            &[0, 1, 2, 0],
            100,
            |n| *n,
            |n| format!("no room {n}"),
        );
        assert_eq!(
            fitted,
            [
                Ok(40),
                Err("bad key".to_owned()),
                Ok(50),
                // 90 of 100 bytes are taken: the repeat of the first value does not fit.
                Err("no room 40".to_owned()),
            ]
        );
    }

    #[test]
    fn the_room_is_what_keys_and_fixed_fields_leave() {
        let keys = [Bytes::from_static(b"abc"), Bytes::from_static(b"de")];
        let fixed = 3 + 2 + 2 * RESULT_OVERHEAD + MESSAGE_OVERHEAD;
        assert_eq!(answer_room(10_000, &keys), 10_000 - fixed);
        assert_eq!(answer_room(fixed - 1, &keys), 0);
    }
}
