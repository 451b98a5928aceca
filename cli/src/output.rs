//! Printing: one JSON document with `--output json` (a list is an array, a show or a wait is the
//! object), aligned columns otherwise.

use repovault_common::domain::FromWire;
use serde::Serialize;

use crate::args::OutputFormat;

pub fn json<T: Serialize + ?Sized>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
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
        println!("{}", s.join("  ").trim_end());
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
        println!("{k:<w$}  {v}");
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
