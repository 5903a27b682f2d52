//! The batch commands, `get-many`, `set-many` and `delete-many`: one call each for many keys,
//! and their reports (one entry per key; per-key errors apart). The line formats they read and
//! print are in `crate::batch`.

use mintcache_client::{Client, KeyError, Lookup};
use serde_json::{Value, json};

use crate::args::WriteArgs;
use crate::batch;
use crate::errors::{CliError, code_exit};
use crate::exit::Exit;
use crate::output::{DEGRADED_WARNING, Data, Report, key_text, lookup_json};

/// `get-many`: peeks, like `get`.
pub(super) async fn get_many(
    client: &Client,
    keys: Vec<Vec<u8>>,
    base64: bool,
) -> Result<Report, CliError> {
    let results = client.peek_many(keys.iter().cloned()).await?;
    Ok(get_many_report(&keys, results, base64))
}

pub(super) async fn set_many(
    client: &Client,
    items: Vec<(Vec<u8>, Vec<u8>)>,
    write: &WriteArgs,
) -> Result<Report, CliError> {
    if !write.allow_empty
        && let Some((key, _)) = items.iter().find(|(_, v)| v.is_empty())
    {
        return Err(CliError::usage(format!(
            "the value of {} is empty: pass --allow-empty to store empty values",
            key_text(key)
        )));
    }
    let options = write.options(None);
    let keys: Vec<Vec<u8>> = items.iter().map(|(k, _)| k.clone()).collect();
    let results = client
        .set_many(items.into_iter().map(|(k, v)| (k, v, options.clone())))
        .await?;
    Ok(write_many_report(&keys, results, "stored", "not stored"))
}

pub(super) async fn delete_many(client: &Client, keys: Vec<Vec<u8>>) -> Result<Report, CliError> {
    let results = client.delete_many(keys.iter().cloned()).await?;
    Ok(write_many_report(&keys, results, "deleted", "not found"))
}

fn key_json(key: &[u8]) -> Value {
    json!({
        "key": std::str::from_utf8(key).ok(),
        "key_base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key),
    })
}

fn key_error_json(key: &[u8], e: &KeyError) -> Value {
    let mut entry = key_json(key);
    entry["error"] = json!({
        "code": mintcache_client::code_name(e.code),
        "message": e.message,
    });
    entry
}

fn get_many_report(
    keys: &[Vec<u8>],
    results: Vec<Result<Lookup, KeyError>>,
    base64: bool,
) -> Report {
    let mut exit = Exit::Success;
    let (mut entries, mut lines, mut errors, mut missing) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut degraded = false;
    for (key, result) in keys.iter().zip(results) {
        match result {
            Ok(lookup) => {
                degraded |= lookup.degraded;
                entries.push(lookup_json(key, &lookup));
                match lookup.usable_value() {
                    Some(value) => match batch::item_line(key, value, base64) {
                        Ok(line) => lines.extend(line),
                        Err(why) => {
                            errors.push(format!(
                                "{}: cannot print it as one KEY<TAB>VALUE line ({why}): use \
                                 --base64 or --json",
                                key_text(key)
                            ));
                            exit = exit.max(Exit::Usage);
                        }
                    },
                    None => {
                        missing.push(key_text(key));
                        exit = exit.max(Exit::Miss);
                    }
                }
            }
            Err(e) => {
                entries.push(key_error_json(key, &e));
                errors.push(format!("{}: {e}", key_text(key)));
                exit = exit.max(code_exit(e.code, &e.message));
            }
        }
    }
    let found = keys.len() - missing.len() - errors.len();
    let mut feedback = format!("{found} of {} found", keys.len());
    if !missing.is_empty() {
        feedback.push_str(&format!("; missing: {}", missing.join(" ")));
    }
    let mut report = Report::new(exit, json!({ "results": entries }))
        .data(Data::Raw(lines))
        .feedback(feedback);
    report.errors = errors;
    if degraded {
        report.warnings.push(DEGRADED_WARNING.to_owned());
    }
    report
}

/// The report of `set-many` / `delete-many`: one flag per key.
fn write_many_report(
    keys: &[Vec<u8>],
    results: Vec<Result<bool, KeyError>>,
    done: &str,
    not_done: &str,
) -> Report {
    let mut exit = Exit::Success;
    let (mut entries, mut errors, mut undone) = (Vec::new(), Vec::new(), Vec::new());
    let mut count = 0;
    for (key, result) in keys.iter().zip(results) {
        match result {
            Ok(flag) => {
                let mut entry = key_json(key);
                entry[done] = json!(flag);
                entries.push(entry);
                if flag {
                    count += 1;
                } else {
                    undone.push(key_text(key));
                    exit = exit.max(Exit::Miss);
                }
            }
            Err(e) => {
                entries.push(key_error_json(key, &e));
                errors.push(format!("{}: {e}", key_text(key)));
                exit = exit.max(code_exit(e.code, &e.message));
            }
        }
    }
    let mut feedback = format!("{done} {count} of {}", keys.len());
    if !undone.is_empty() {
        feedback.push_str(&format!("; {not_done}: {}", undone.join(" ")));
    }
    if !errors.is_empty() {
        feedback.push_str(&format!("; {} failed", errors.len()));
    }
    let mut report = Report::new(exit, json!({ "results": entries })).feedback(feedback);
    report.errors = errors;
    report
}
