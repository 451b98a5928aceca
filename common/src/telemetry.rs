//! Logging set-up for every binary: a filter (`RUST_LOG`, else the binary's default), a format
//! (text for people, JSON lines for log pipelines), colour only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event (timestamp, level, fields, span), for log pipelines.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?} is not one of: text, json")),
        }
    }
}

/// Directives added to every default filter: rustic_core logs a line per file it reads or
/// writes at `info` (measured: 78% of a coordinator's log during backups), which buries what an
/// operator needs. `RUST_LOG` replaces the default entirely, so they can be turned back on.
const QUIET: &str = "rustic_core=warn";

/// The filter for `default_filter` when `RUST_LOG` is not set.
fn default_filter(default_filter: &str) -> EnvFilter {
    EnvFilter::new(format!("{default_filter},{QUIET}"))
}

/// Installs the global subscriber, writing to stderr in `format`; ANSI colour only when stderr
/// is a terminal. Idempotent (tests call it repeatedly; the first call wins).
pub fn init(default: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _already_set = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_keeps_rustic_cores_per_file_lines_out() {
        let f = default_filter("info").to_string();
        assert!(f.contains("rustic_core=warn"), "{f}");
        assert!(f.contains("info"), "{f}");
    }

    #[test]
    fn log_formats_parse_by_name() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!(matches!("yaml".parse::<LogFormat>(), Err(e) if e.contains("text, json")));
    }
}
