//! CPU time from `/proc`, for the benchmarks that say what bounds them: of a process, of the
//! children of this process with a given command name, and of this process's threads split by
//! name (a runtime whose threads carry a name of their own is counted apart from the rest).

use std::time::Duration;

/// User + system CPU time from a `/proc/.../stat` file's text.
fn stat_cpu(stat: &str) -> Option<Duration> {
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the ')'.
    let ticks: u64 = fields
        .get(11..13)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    // USER_HZ is 100 on Linux for every architecture this runs on (sysconf(_SC_CLK_TCK)).
    Some(Duration::from_millis(ticks * 10))
}

/// The command name of a `/proc/.../stat` file's text (between the first '(' and last ')').
fn stat_comm(stat: &str) -> Option<&str> {
    let start = stat.find('(')? + 1;
    let end = stat.rfind(')')?;
    stat.get(start..end)
}

/// The CPU time (user + system) of process `pid` so far.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The CPU time so far of the children of this process whose command name is `comm`.
pub fn children_cpu(comm: &str) -> Duration {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter(|s| {
            let ppid = s
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            stat_comm(s) == Some(comm) && ppid == Some(me.as_str())
        })
        .filter_map(|s| stat_cpu(&s))
        .sum()
}

/// The CPU time so far of this process's threads: those whose name starts with `prefix`, and
/// the others. Threads that ended are not counted: measure across work whose threads live.
pub fn threads_cpu(prefix: &str) -> (Duration, Duration) {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return (Duration::ZERO, Duration::ZERO);
    };
    let mut split = (Duration::ZERO, Duration::ZERO);
    for stat in dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok()) {
        let Some(cpu) = stat_cpu(&stat) else {
            continue;
        };
        if stat_comm(&stat).is_some_and(|c| c.starts_with(prefix)) {
            split.0 += cpu;
        } else {
            split.1 += cpu;
        }
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_thread_is_counted_apart() {
        let spin = std::thread::Builder::new()
            .name("proc-cpu-spin".into())
            .spawn(|| {
                let t = std::time::Instant::now();
                let mut x = 0u64;
                while t.elapsed() < Duration::from_millis(300) {
                    x = x.wrapping_add(std::hint::black_box(1));
                }
                let (named, _) = threads_cpu("proc-cpu-spin");
                (x, named)
            })
            .expect("spawn");
        let (_, named) = spin.join().expect("join");
        assert!(named >= Duration::from_millis(100), "{named:?}");
        assert!(process_cpu(std::process::id()).is_some_and(|c| c >= named));
        assert_eq!(
            stat_comm("12 (a (b) c) S 1 2"),
            Some("a (b) c"),
            "a name with parentheses"
        );
    }
}
