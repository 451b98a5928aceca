//! The one ending of every command that queues a task and waits for it: follow the task's
//! progress, read its final record, print it, map it to the exit code. `backup run`,
//! `backup verify`, `backup download`, `restore start`, `restore watch` and `drill run` all end
//! through [`run_and_wait`], so progress lines, the failure line and `--output json` (one
//! document: the final record) behave the same in each.

use serde::Serialize;

use repovault_common::domain::TaskStatus;
use repovault_proto::v1 as pb;

use crate::admin_client::{Admin, CliError};
use crate::args::OutputFormat;
use crate::exit;
use crate::output::value;
use crate::output::{self, is_json};
use crate::output::{errln, outln};

mod progress_view;
pub(crate) use progress_view::{Bar, Totals};

/// A task to follow until it ends.
pub(crate) struct Task<'a> {
    /// The task id the enqueue answered.
    pub id: &'a str,
    /// How progress lines and the failure line name it: `backup <id>`, `drill of <repo>`.
    pub what: String,
}

/// What a command does once its task has ended.
pub(crate) struct Ended<F, H, C> {
    /// Reads the final record (and does any work that needs the finished task, such as
    /// fetching a download), after the task has ended.
    pub fetch: F,
    /// Prints the record without `--output json`; with it, the record is the one document.
    pub human: H,
    /// The exit code the record maps to.
    pub code: C,
}

/// Prints the record of a task the caller does not wait for (`--detach`, or no `--wait`): the
/// record as the one JSON document, or `line`. Exit 0: the task was queued.
pub(crate) fn queued<Q: Serialize>(
    out: OutputFormat,
    record: &Q,
    line: impl FnOnce(&Q) -> String,
) -> i32 {
    if is_json(out) {
        output::json(record);
    } else {
        outln!("{}", line(record));
    }
    exit::OK
}

/// Follows `task` to its end (`None`: it has already ended), then reads the final record with
/// `ended.fetch`, prints it and returns the exit code `ended.code` maps it to. An error reading
/// the progress or the record is the command's error (its own exit code), not the task's.
pub(crate) async fn run_and_wait<R, F, H, C>(
    c: &mut Admin,
    out: OutputFormat,
    task: Option<Task<'_>>,
    ended: Ended<F, H, C>,
) -> Result<i32, CliError>
where
    R: Serialize,
    F: AsyncFnOnce(&mut Admin) -> Result<R, CliError>,
    H: Fn(&R),
    C: FnOnce(&R) -> i32,
{
    if let Some(t) = task {
        watch(c, t.id, &t.what, out).await?;
    }
    let record = (ended.fetch)(c).await?;
    output::show(out, &record, ended.human);
    Ok((ended.code)(&record))
}

/// The bar's message while the artifact of restore `id` streams to this machine.
pub(crate) fn download_line(id: &str) -> String {
    format!("restore {id}: download")
}

/// Exit 0 if a task's record ended `completed`, 1 otherwise.
pub(crate) fn completed(status: i32) -> i32 {
    if value(status) == Some(TaskStatus::Completed) {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// Follows a task until it ends: a progress bar on a terminal (see `progress_view.rs`), phase
/// lines on stderr otherwise (nothing with --output json, whose stdout is one document).
async fn watch(
    c: &mut Admin,
    task_id: &str,
    what: &str,
    out: OutputFormat,
) -> Result<(), CliError> {
    let mut stream = c
        .watch_task(pb::WatchTaskRequest {
            task_id: task_id.to_string(),
        })
        .await?
        .into_inner();
    let mut bar = Bar::on_terminal(out);
    let mut last_phase = String::new();
    let mut last = pb::TaskProgress::default();
    while let Some(p) = stream.message().await? {
        if let Some(b) = &mut bar {
            let message = format!("{what}: {} {}", p.phase, p.message);
            b.show(&p.phase, Totals::from(&p), message);
        } else if !is_json(out) && p.phase != last_phase {
            errln!("{what}: {} {}", p.phase, p.message);
        }
        last_phase = p.phase.clone();
        last = p;
        if value::<TaskStatus>(last.status).is_some_and(TaskStatus::is_terminal) {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
    if value(last.status) == Some(TaskStatus::Failed) && !is_json(out) {
        errln!("{what} failed: {}", last.error);
    }
    Ok(())
}
