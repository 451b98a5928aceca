//! Printing: one JSON document with `--output json` (a list is an array, a show or a wait is the
//! object), aligned columns otherwise.
//!
//! Every line the CLI prints goes through [`line`] (stdout, through the [`outln!`] macro) or
//! [`err_line`] (stderr, [`errln!`]); nothing else in the crate prints, so nothing can panic on
//! a closed stdout as `println!` does ("failed printing to stdout: Broken pipe", exit 101).
//!
//! A failed write to stdout is kept as C's stdio keeps its error indicator: the first error
//! sticks, later writes are skipped, and [`finish`] reports it when the command ends. A closed
//! pipe (`repovault repo list | head -1`) is not an error: the reader took what it wanted and
//! closed its end, so the command ends quietly with its own exit code (0 when it succeeded)
//! rather than the 141 a process killed by SIGPIPE reports to the shell. That keeps
//! `set -o pipefail` scripts from failing on `repovault ... | head`, and nothing is lost: the
//! CLI's output is a report of what the coordinator did, which happened whether or not it was
//! read to the end. Any other write error (a full disk behind `> file`) fails the command.

use std::io::Write as _;
use std::sync::Mutex;

use repovault_common::domain::FromWire;
use serde::Serialize;

use crate::admin_client::CliError;
use crate::args::OutputFormat;

/// The first error writing to stdout, if any (see the module documentation).
static STDOUT_ERROR: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Writes one line to stdout unless an earlier write failed; a failure is kept for [`finish`].
pub fn line(args: std::fmt::Arguments<'_>) {
    write_stdout(|out| out.write_fmt(args).and_then(|()| out.write_all(b"\n")));
}

/// Writes `bytes` as they are (a generated script), as [`line`] writes a line.
pub fn raw(bytes: &[u8]) {
    write_stdout(|out| out.write_all(bytes));
}

fn write_stdout(write: impl FnOnce(&mut std::io::StdoutLock<'_>) -> std::io::Result<()>) {
    let mut failed = STDOUT_ERROR.lock().unwrap_or_else(|p| p.into_inner());
    if failed.is_some() {
        return;
    }
    if let Err(e) = write(&mut std::io::stdout().lock()) {
        *failed = Some(e);
    }
}

/// Writes one line to stderr. A failure is ignored: stderr is where it would be reported.
pub fn err_line(args: std::fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_fmt(args)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// `println!` through [`line`].
macro_rules! outln {
    () => { $crate::output::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::line(format_args!($($arg)*)) };
}
/// `eprintln!` through [`err_line`].
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::err_line(format_args!($($arg)*)) };
}
pub(crate) use {errln, outln};

/// Flushes stdout and reports the first write error of the command: `Ok` when every line was
/// written or the reader closed the pipe (quietly, see the module documentation), an error
/// (exit 1) otherwise.
pub fn finish() -> Result<(), CliError> {
    let mut failed = STDOUT_ERROR.lock().unwrap_or_else(|p| p.into_inner());
    let error = match failed.take() {
        Some(e) => Some(e),
        None => std::io::stdout().flush().err(),
    };
    match error {
        None => Ok(()),
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(CliError::failed(format!("cannot write the output: {e}"))),
    }
}

/// Prints `v` as the command's one JSON document, with absent values as `null` (see
/// [`absent_as_null`]). Object keys come out in alphabetical order, as a `serde_json::Value`
/// holds them: an order that does not depend on how a message's fields are numbered.
pub fn json<T: Serialize + ?Sized>(v: &T) {
    match serde_json::to_value(v) {
        Ok(mut doc) => {
            absent_as_null(&mut doc);
            json_document(&doc);
        }
        Err(e) => errln!("error: cannot render JSON: {e}"),
    }
}

/// Prints a JSON document as it is: a document stored in a backup (`backup browse`), whose
/// values are the forge's own.
pub fn json_document(doc: &serde_json::Value) {
    match serde_json::to_string_pretty(doc) {
        Ok(s) => outln!("{s}"),
        Err(e) => errln!("error: cannot render JSON: {e}"),
    }
}

/// The JSON output's one convention for a value that is absent: `null`. The wire format
/// (proto3) cannot tell an unset string or number from `""` or `0`, so the records arrive with
/// those; this turns them into `null` where they mean "absent", and leaves every present value
/// spelled as it always was (`cli/schemas/` describes each command's document):
/// - every empty string (an unset time, id, error, URL, an unspecified enum);
/// - the numbers that exist only for some records, where 0 is their absence: an
///   organisation's `app_id` and `installation_id` (App credentials only), a repository's
///   `forge_id` (forge repositories only), the sizes (`size_bytes`, `added_bytes`,
///   `bytes_received`) and `counts` of a backup or timeline entry that has not completed, a
///   restore's `artifact_bytes` without an artifact, its `refs_pushed` when its target is a
///   download (nothing is pushed), and its unspecified `access`.
pub fn absent_as_null(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.is_empty() => *v = Value::Null,
        Value::Array(items) => items.iter_mut().for_each(absent_as_null),
        Value::Object(o) => {
            o.values_mut().for_each(absent_as_null);
            let zero = |o: &serde_json::Map<String, Value>, k: &str| o.get(k) == Some(&0.into());
            let mut absent: Vec<&str> = Vec::new();
            if o.contains_key("credential") {
                absent.extend(["app_id", "installation_id"]);
            }
            if o.contains_key("full_name") {
                absent.push("forge_id");
            }
            let status = o.get("status").and_then(Value::as_str);
            if o.contains_key("size_bytes") && status != Some("completed") {
                absent.extend(["size_bytes", "added_bytes", "bytes_received"]);
                let all_zero = o
                    .get("counts")
                    .and_then(Value::as_object)
                    .is_some_and(|c| c.values().all(|n| n == &Value::from(0)));
                if all_zero {
                    o.insert("counts".into(), Value::Null);
                }
            }
            if o.contains_key("artifact_bytes") {
                absent.push("access");
                if o.get("artifact_sha256").is_some_and(Value::is_null) {
                    absent.push("artifact_bytes");
                }
                if o.get("target").and_then(Value::as_str) == Some("download") {
                    absent.push("refs_pushed");
                }
            }
            for k in absent {
                if zero(o, k) {
                    o.insert(k.into(), Value::Null);
                }
            }
        }
        _ => {}
    }
}

/// A list: one JSON array, or a table with one row per item.
pub fn list<T: Serialize>(
    format: OutputFormat,
    items: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    if is_json(format) {
        json(items);
    } else {
        table(headers, &items.iter().map(row).collect::<Vec<_>>());
    }
}

/// One object: a JSON document, or its fields as `human` prints them.
pub fn show<T: Serialize>(format: OutputFormat, item: &T, human: impl Fn(&T)) {
    if is_json(format) {
        json(item);
    } else {
        human(item);
    }
}

/// Prints rows under headers with aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        outln!("{}", s.join("  ").trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Key-value pairs of one object.
pub fn fields(pairs: &[(&str, String)]) {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        outln!("{k:<w$}  {v}");
    }
}

pub fn is_json(f: OutputFormat) -> bool {
    f == OutputFormat::Json
}

pub use repovault_common::units::human_bytes;

/// A wire enum field as its closed-set value; `None` when unspecified or unknown to this CLI
/// (sent by a newer coordinator).
pub fn value<T: FromWire>(v: i32) -> Option<T> {
    T::from_wire(v, "").ok()
}

/// A wire enum field as its spelling: `""` when unspecified, `unknown(N)` for a value newer
/// than this CLI.
pub fn spelled<T: FromWire + std::fmt::Display>(v: i32) -> String {
    match value::<T>(v) {
        Some(t) => t.to_string(),
        None if v == 0 => String::new(),
        None => format!("unknown({v})"),
    }
}

#[cfg(test)]
mod tests {
    use super::absent_as_null;
    use repovault_proto::v1 as pb;

    fn doc<T: serde::Serialize>(v: &T) -> serde_json::Value {
        let mut d = serde_json::to_value(v).unwrap_or_default();
        absent_as_null(&mut d);
        d
    }

    /// Present values keep their spelling, a real 0 included; only what is absent turns null.
    #[test]
    fn absent_values_are_null_and_present_ones_unchanged() {
        let completed = pb::Backup {
            id: "b1".into(),
            status: 3,
            size_bytes: 100,
            added_bytes: 0,
            counts: Some(pb::Counts::default()),
            ..Default::default()
        };
        let d = doc(&completed);
        assert_eq!(d["status"], "completed");
        assert_eq!(
            d["added_bytes"], 0,
            "an unchanged incremental adds 0 bytes: {d}"
        );
        assert_eq!(d["counts"]["commits"], 0, "{d}");
        assert!(d["error"].is_null() && d["finished_at"].is_null(), "{d}");
        assert!(d["verification"].is_null(), "{d}");

        let pending = pb::Backup {
            status: 1,
            size_bytes: 0,
            ..completed
        };
        let d = doc(&pending);
        assert_eq!(d["status"], "pending");
        assert!(
            d["size_bytes"].is_null() && d["added_bytes"].is_null(),
            "{d}"
        );
        assert!(d["counts"].is_null(), "{d}");
        assert_eq!(d["attempt"], 0, "a count stays a count: {d}");

        let org = pb::Org {
            name: "acme".into(),
            credential: "none".into(),
            full_every_days: 7,
            ..Default::default()
        };
        let d = doc(&org);
        assert_eq!(d["credential"], "none");
        assert_eq!(d["full_every_days"], 7);
        assert_eq!(d["has_ca_cert"], false);
        assert!(d["app_id"].is_null() && d["api_url"].is_null(), "{d}");
        assert!(d["provider"].is_null(), "unspecified: {d}");
    }
}
