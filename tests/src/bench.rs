//! What every benchmark binary prints and tidies the same way: medians, sizes, removal.

use std::path::Path;

use anyhow::{Context as _, Result};

/// The median (the mean of the middle two for an even count; 0 for none).
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn mib(b: u64) -> String {
    mib_f(b as f64)
}

pub fn mib_f(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

pub fn kib_f(b: f64) -> String {
    format!("{:.1} KiB", b / 1024.0)
}

/// Removes the file or directory `p`, if it exists.
pub fn remove_if_exists(p: &Path) -> Result<()> {
    let r = if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", p.display()))
        }
        _ => Ok(()),
    }
}
