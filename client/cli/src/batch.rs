//! The line formats of the batch commands.
//!
//! - keys (`get-many`, `delete-many`): one key per line, as is (a final `\r` is dropped, so
//!   files from Windows work); empty lines are skipped;
//! - items (`set-many`): `KEY<TAB>VALUE` per line; the value is the rest of the line after the
//!   first tab, byte for byte;
//! - with `--base64`, every key and value is base64 (standard alphabet), so any bytes fit;
//! - `get-many` prints `KEY<TAB>VALUE` lines for the keys that hold a value: the `set-many`
//!   format, so one's output is the other's input.

use std::ffi::OsString;
use std::io::BufRead;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::errors::CliError;

/// Keys from the arguments, or (none, or a single `-`) from stdin lines.
pub(crate) fn keys(
    args: &[OsString],
    base64: bool,
    stdin: Option<&mut dyn BufRead>,
) -> Result<Vec<Vec<u8>>, CliError> {
    let from_args = !(args.is_empty() || (args.len() == 1 && args[0] == "-"));
    let keys: Vec<Vec<u8>> = if from_args {
        args.iter()
            .map(|a| a.clone().into_encoded_bytes())
            .collect()
    } else {
        lines(stdin, "keys")?
    };
    let keys = keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| decode(key, base64, &format!("key {}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(CliError::usage(
            "no keys given (as arguments, or one per line on stdin)",
        ));
    }
    Ok(keys)
}

/// A key and its value.
pub(crate) type Item = (Vec<u8>, Vec<u8>);

/// `(key, value)` items from KEY VALUE argument pairs, or from `KEY<TAB>VALUE` stdin lines.
pub(crate) fn items(
    args: &[OsString],
    base64: bool,
    stdin: Option<&mut dyn BufRead>,
) -> Result<Vec<Item>, CliError> {
    let from_args = !(args.is_empty() || (args.len() == 1 && args[0] == "-"));
    let items = if from_args {
        if !args.len().is_multiple_of(2) {
            return Err(CliError::usage(format!(
                "set-many takes KEY VALUE pairs; {} arguments leave a key without a value",
                args.len()
            )));
        }
        args.chunks_exact(2)
            .map(|pair| {
                (
                    pair[0].clone().into_encoded_bytes(),
                    pair[1].clone().into_encoded_bytes(),
                )
            })
            .collect()
    } else {
        lines(stdin, "items")?
            .into_iter()
            .enumerate()
            .map(|(i, line)| split_item(line, i + 1))
            .collect::<Result<Vec<_>, _>>()?
    };
    let items = items
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| {
            let what = format!("item {}", i + 1);
            Ok((decode(key, base64, &what)?, decode(value, base64, &what)?))
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    if items.is_empty() {
        return Err(CliError::usage(
            "no items given (KEY VALUE pairs as arguments, or KEY<TAB>VALUE lines on stdin)",
        ));
    }
    Ok(items)
}

fn split_item(line: Vec<u8>, number: usize) -> Result<Item, CliError> {
    match line.iter().position(|&b| b == b'\t') {
        Some(tab) => Ok((line[..tab].to_vec(), line[tab + 1..].to_vec())),
        None => Err(CliError::usage(format!(
            "stdin line {number}: no tab; set-many reads KEY<TAB>VALUE lines"
        ))),
    }
}

/// The non-empty lines of stdin, without their line ends.
fn lines(stdin: Option<&mut dyn BufRead>, what: &str) -> Result<Vec<Vec<u8>>, CliError> {
    let Some(stdin) = stdin else {
        return Err(CliError::usage(format!("no {what} given")));
    };
    let mut lines = Vec::new();
    for line in stdin.split(b'\n') {
        let mut line = line.map_err(CliError::Stdin)?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    Ok(lines)
}

fn decode(field: Vec<u8>, base64: bool, what: &str) -> Result<Vec<u8>, CliError> {
    if !base64 {
        return Ok(field);
    }
    BASE64
        .decode(&field)
        .map_err(|e| CliError::usage(format!("{what}: not base64 ({e})")))
}

/// One `KEY<TAB>VALUE` output line of `get-many`, or why the pair cannot be one line.
pub(crate) fn item_line(key: &[u8], value: &[u8], base64: bool) -> Result<Vec<u8>, &'static str> {
    if base64 {
        return Ok(format!("{}\t{}\n", BASE64.encode(key), BASE64.encode(value)).into_bytes());
    }
    if key.contains(&b'\t') || key.contains(&b'\n') {
        return Err("the key contains a tab or a newline");
    }
    if value.contains(&b'\n') {
        return Err("the value contains a newline");
    }
    let mut line = Vec::with_capacity(key.len() + value.len() + 2);
    line.extend_from_slice(key);
    line.push(b'\t');
    line.extend_from_slice(value);
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn keys_come_from_arguments_or_stdin_lines() {
        assert_eq!(
            keys(&os(&["a", "b c"]), false, None).expect("keys"),
            [b"a".to_vec(), b"b c".to_vec()]
        );
        let mut stdin: &[u8] = b"one\r\n\ntwo words\nlast";
        assert_eq!(
            keys(&os(&["-"]), false, Some(&mut stdin)).expect("keys"),
            [b"one".to_vec(), b"two words".to_vec(), b"last".to_vec()]
        );
        let mut stdin: &[u8] = b"AP8=\n";
        assert_eq!(
            keys(&[], true, Some(&mut stdin)).expect("keys"),
            [vec![0, 255]]
        );
        let mut empty: &[u8] = b"\n";
        assert!(keys(&[], false, Some(&mut empty)).is_err());
        assert!(keys(&[], false, None).is_err());
        assert!(keys(&os(&["!!"]), true, None).is_err());
    }

    #[test]
    fn items_come_from_pairs_or_tab_separated_lines() {
        assert_eq!(
            items(&os(&["k1", "v 1", "k2", ""]), false, None).expect("items"),
            [
                (b"k1".to_vec(), b"v 1".to_vec()),
                (b"k2".to_vec(), Vec::new())
            ]
        );
        assert!(items(&os(&["k1", "v1", "k2"]), false, None).is_err());
        let mut stdin: &[u8] = b"a\t{\"x\":\"\\t\"}\tmore\nb\t\n";
        assert_eq!(
            items(&[], false, Some(&mut stdin)).expect("items"),
            [
                (b"a".to_vec(), b"{\"x\":\"\\t\"}\tmore".to_vec()),
                (b"b".to_vec(), Vec::new())
            ]
        );
        let mut no_tab: &[u8] = b"a b\n";
        let e = items(&[], false, Some(&mut no_tab)).expect_err("no tab");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn get_many_lines_are_set_many_input() {
        let line = item_line(b"k", b"v\tw", false).expect("one line");
        let mut stdin: &[u8] = &line;
        assert_eq!(
            items(&[], false, Some(&mut stdin)).expect("items"),
            [(b"k".to_vec(), b"v\tw".to_vec())]
        );
        assert!(item_line(b"k", b"a\nb", false).is_err());
        assert!(item_line(b"k\t", b"v", false).is_err());
        let line = item_line(b"k\n", b"a\nb", true).expect("base64");
        let mut stdin: &[u8] = &line;
        assert_eq!(
            items(&[], true, Some(&mut stdin)).expect("items"),
            [(b"k\n".to_vec(), b"a\nb".to_vec())]
        );
    }
}
