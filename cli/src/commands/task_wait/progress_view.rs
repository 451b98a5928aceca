//! What a terminal shows while a task runs or a download streams: a bar with the percentage, the
//! rate and the time left when the current phase's total is known, a spinner with the count and
//! its rate when it is not. Off a terminal, and with `--output json`, there is no bar at all
//! (the callers print phase lines, or nothing).
//!
//! The choice is a pure function of the phase's counters ([`Gauge::of`]); the bar's rate and
//! time left restart at every phase change, since a phase's rate says nothing of the next one's.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use repovault_proto::v1 as pb;

use crate::args::OutputFormat;
use crate::output::is_json;

/// How often the bar redraws without news: the spinner turns and the time left follows the
/// clock between the coordinator's events (one every half second at most while counters move,
/// every two seconds otherwise). Five a second is smooth to the eye and costs nothing.
const TICK: Duration = Duration::from_millis(200);

/// The counters of one phase, as a task's progress or a download reports them; a total of 0 is
/// unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub bytes: u64,
    pub total_bytes: u64,
    /// The phase's unit other than bytes: git objects, files, items.
    pub objects: u64,
    pub total_objects: u64,
}

impl Totals {
    /// Bytes done of `total` (0 = unknown): a download.
    pub(crate) fn bytes(done: u64, total: u64) -> Totals {
        Totals {
            bytes: done,
            total_bytes: total,
            ..Totals::default()
        }
    }
}

impl From<&pb::TaskProgress> for Totals {
    fn from(p: &pb::TaskProgress) -> Self {
        Totals {
            bytes: p.bytes,
            total_bytes: p.total_bytes,
            objects: p.objects,
            total_objects: p.total_objects,
        }
    }
}

/// What the bar shows of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gauge {
    /// Bytes of a known total: percentage, bytes of total, rate in bytes, time left.
    Bytes,
    /// Items (git objects, files, forge items) of a known total: percentage, count of total,
    /// rate, time left.
    Items,
    /// Bytes of an unknown total: a spinner with the bytes so far and their rate.
    BytesSoFar,
    /// Items of an unknown total: a spinner with the count so far and its rate.
    ItemsSoFar,
    /// Nothing counted: a spinner and the time the phase has taken.
    Idle,
}

impl Gauge {
    /// The gauge for a phase's counters: a known total first (bytes before items, the finer
    /// unit), then whatever is counted.
    pub(crate) fn of(t: &Totals) -> Gauge {
        if t.total_bytes > 0 {
            Gauge::Bytes
        } else if t.total_objects > 0 {
            Gauge::Items
        } else if t.bytes > 0 {
            Gauge::BytesSoFar
        } else if t.objects > 0 {
            Gauge::ItemsSoFar
        } else {
            Gauge::Idle
        }
    }

    /// The bar's position and length (`None`: a spinner). The length is never below the
    /// position (a source that grew while it was read).
    pub(crate) fn position(self, t: &Totals) -> (u64, Option<u64>) {
        match self {
            Gauge::Bytes => (t.bytes, Some(t.total_bytes.max(t.bytes))),
            Gauge::Items => (t.objects, Some(t.total_objects.max(t.objects))),
            Gauge::BytesSoFar => (t.bytes, None),
            Gauge::ItemsSoFar => (t.objects, None),
            Gauge::Idle => (0, None),
        }
    }

    /// The indicatif template. The message comes last and is cut to the terminal's width, so
    /// the numbers always show.
    pub(crate) fn template(self) -> &'static str {
        match self {
            Gauge::Bytes => {
                "{spinner} [{bar:24}] {percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {wide_msg}"
            }
            Gauge::Items => {
                "{spinner} [{bar:24}] {percent:>3}% {pos}/{len} {per_sec} ETA {eta} {wide_msg}"
            }
            Gauge::BytesSoFar => "{spinner} {bytes} {binary_bytes_per_sec} {elapsed} {wide_msg}",
            Gauge::ItemsSoFar => "{spinner} {pos} {per_sec} {elapsed} {wide_msg}",
            Gauge::Idle => "{spinner} {elapsed} {wide_msg}",
        }
    }

    /// Whether the position counts bytes (a change of unit restarts the rate).
    fn counts_bytes(self) -> bool {
        matches!(self, Gauge::Bytes | Gauge::BytesSoFar)
    }

    fn style(self) -> ProgressStyle {
        ProgressStyle::with_template(self.template())
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .progress_chars("=> ")
    }
}

/// A bar on stderr, following one phase after another.
pub(crate) struct Bar {
    bar: ProgressBar,
    phase: Option<String>,
    gauge: Gauge,
    message: String,
}

impl Bar {
    /// A bar when stderr is a terminal and the output is not JSON; `None` otherwise.
    pub(crate) fn on_terminal(out: OutputFormat) -> Option<Bar> {
        if is_json(out) || !std::io::stderr().is_terminal() {
            return None;
        }
        let b = Bar::to(ProgressDrawTarget::stderr());
        b.bar.enable_steady_tick(TICK);
        Some(b)
    }

    fn to(target: ProgressDrawTarget) -> Bar {
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(Gauge::Idle.style());
        Bar {
            bar,
            phase: None,
            gauge: Gauge::Idle,
            message: String::new(),
        }
    }

    /// Shows `phase` at `t` with `message`. A phase other than the last one starts over: its
    /// rate and time left count from now.
    pub(crate) fn show(&mut self, phase: &str, t: Totals, message: String) {
        if self.phase.as_deref() != Some(phase) {
            self.bar.reset();
            self.phase = Some(phase.to_string());
        }
        let gauge = Gauge::of(&t);
        if gauge != self.gauge {
            self.bar.set_style(gauge.style());
            if gauge.counts_bytes() != self.gauge.counts_bytes() {
                // The rate so far was of another unit (a fetch's bytes, then its objects).
                self.bar.reset_eta();
            }
            self.gauge = gauge;
        }
        let (pos, len) = gauge.position(&t);
        match len {
            Some(len) => self.bar.set_length(len),
            None => self.bar.unset_length(),
        }
        self.bar.set_position(pos);
        if message != self.message {
            self.bar.set_message(message.clone());
            self.message = message;
        }
    }

    /// Removes the bar from the terminal.
    pub(crate) fn finish(self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;

    fn totals(bytes: u64, total_bytes: u64, objects: u64, total_objects: u64) -> Totals {
        Totals {
            bytes,
            total_bytes,
            objects,
            total_objects,
        }
    }

    #[test]
    fn a_known_total_gets_a_bar_and_an_unknown_one_a_spinner() {
        // A fetch before the pack's header: bytes received, no total.
        assert_eq!(Gauge::of(&totals(4096, 0, 0, 0)), Gauge::BytesSoFar);
        // A fetch after it: objects of the pack's count (its bytes have no total).
        assert_eq!(Gauge::of(&totals(4096, 0, 120, 3000)), Gauge::Items);
        // A snapshot, a restore, a download, a verification: bytes of a total.
        assert_eq!(Gauge::of(&totals(10, 100, 0, 0)), Gauge::Bytes);
        // LFS: bytes of a total and objects of a total; bytes are the finer unit.
        assert_eq!(Gauge::of(&totals(10, 100, 1, 4)), Gauge::Bytes);
        // A metadata restore: items of a total, no bytes.
        assert_eq!(Gauge::of(&totals(0, 0, 12, 300)), Gauge::Items);
        assert_eq!(Gauge::of(&totals(0, 0, 12, 0)), Gauge::ItemsSoFar);
        // A phase that counts nothing (fsck, manifest, the coordinator's own phases).
        assert_eq!(Gauge::of(&Totals::default()), Gauge::Idle);
    }

    #[test]
    fn the_bar_is_set_in_the_gauges_unit() {
        let t = totals(4096, 0, 120, 3000);
        assert_eq!(Gauge::Items.position(&t), (120, Some(3000)));
        assert_eq!(Gauge::BytesSoFar.position(&t), (4096, None));
        // A source that grew while it was read never shows more than 100%.
        assert_eq!(
            Gauge::Bytes.position(&totals(150, 100, 0, 0)),
            (150, Some(150))
        );
        assert_eq!(Gauge::Idle.position(&t), (0, None));
    }

    #[test]
    fn bars_show_percentage_rate_and_time_left_and_spinners_the_rate() {
        for g in [
            Gauge::Bytes,
            Gauge::Items,
            Gauge::BytesSoFar,
            Gauge::ItemsSoFar,
            Gauge::Idle,
        ] {
            let t = g.template();
            assert!(ProgressStyle::with_template(t).is_ok(), "{g:?}: {t}");
            let bar = matches!(g, Gauge::Bytes | Gauge::Items);
            assert_eq!(t.contains("{percent"), bar, "{g:?}: {t}");
            assert_eq!(t.contains("{eta}"), bar, "{g:?}: {t}");
            let rate = t.contains("{binary_bytes_per_sec}") || t.contains("{per_sec}");
            assert_eq!(rate, g != Gauge::Idle, "{g:?}: {t}");
            assert!(t.ends_with("{wide_msg}"), "{g:?}: {t}");
        }
    }

    /// A terminal that keeps what is drawn on it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl Screen {
        fn last(&self) -> String {
            let lines = self.0.lock().expect("screen");
            lines
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .cloned()
                .unwrap_or_default()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().expect("screen").push(s.to_string());
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Lets the draw target's rate limit (20 draws a second) pass, then draws.
    fn draw(b: &Bar) {
        std::thread::sleep(Duration::from_millis(60));
        b.bar.tick();
    }

    #[test]
    fn a_phase_with_a_total_draws_a_bar_and_the_next_phase_starts_over() {
        let screen = Screen::default();
        let mut b = Bar::to(ProgressDrawTarget::term_like(Box::new(screen.clone())));

        b.show("fetch", totals(2048, 0, 0, 0), "backup b1: fetch".into());
        draw(&b);
        let line = screen.last();
        assert!(line.contains("2.00 KiB") && line.contains("/s"), "{line}");
        assert!(!line.contains('%'), "{line}");

        b.show(
            "fetch",
            totals(4096, 0, 300, 1200),
            "backup b1: fetch".into(),
        );
        draw(&b);
        let line = screen.last();
        assert!(line.contains(" 25%") && line.contains("300/1200"), "{line}");
        assert!(line.contains("/s") && line.contains("ETA"), "{line}");
        assert!(line.contains("backup b1: fetch"), "{line}");

        b.show(
            "snapshot",
            totals(512, 1024, 0, 0),
            "backup b1: snapshot".into(),
        );
        draw(&b);
        let line = screen.last();
        assert!(
            line.contains(" 50%") && line.contains("512 B/1.00 KiB"),
            "{line}"
        );
        assert!(line.contains("B/s") && line.contains("ETA"), "{line}");
        b.finish();
    }
}
