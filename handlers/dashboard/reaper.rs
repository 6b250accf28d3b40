//! The reaper's panel (`/api/dashboard/reaper`): what the reaper deleted,
//! would delete in dry-run mode, or failed to delete, and the boot
//! diagnostics it saved, newest first, read from the runs' own records
//! (`Run::reaped`, `Run::boot_diagnostics`); and a run's own part of it on
//! the run's page. Pure: given runs, returns HTML (`reaper.html`).

use askama::Template;

use super::page::{layout, minute};
use crate::domain::run::{BootDiagnosticsRecord, Run};
use crate::pages::{Frame, filters, render};

/// Rows the panel shows at most.
pub const PANEL_ROWS: usize = 200;

/// How the reaper runs here, for the panel's heading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No cloud resources: nothing to reap.
    Off,
    /// Deleting.
    Deleting,
    /// Dry run: recording what it would delete.
    DryRun,
}

/// One reaper action.
pub(super) struct ReapRow<'a> {
    pub at: String,
    pub run: &'a str,
    pub outcome: &'static str,
    pub resource_type: &'a str,
    pub resource: &'a str,
    pub reason: &'a str,
}

/// One VM's boot diagnostics.
pub(super) struct DiagnosticsRow<'a> {
    pub at: String,
    pub run: &'a str,
    pub role: &'a str,
    pub vm: &'a str,
    pub serial_log: Option<Link<'a>>,
    pub screenshot: Option<Link<'a>>,
    pub attempts: u32,
    pub note: &'a str,
}

/// A kept file: its address, and a link only when it is a web address
/// (never a `javascript:` or other scheme a record could carry).
pub(super) struct Link<'a> {
    pub text: &'a str,
    pub href: Option<&'a str>,
}

fn link(url: &str) -> Link<'_> {
    Link {
        text: url,
        href: ["https://", "http://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
            .then_some(url),
    }
}

/// The reaper's actions on `runs`, newest first.
pub(super) fn reap_rows(runs: &[Run]) -> Vec<ReapRow<'_>> {
    let mut rows: Vec<(chrono::DateTime<chrono::Utc>, ReapRow<'_>)> = runs
        .iter()
        .flat_map(|run| {
            run.reaped.iter().map(move |r| {
                (
                    r.at,
                    ReapRow {
                        at: minute(r.at),
                        run: run.id.as_str(),
                        outcome: r.outcome.name(),
                        resource_type: &r.resource_type,
                        resource: &r.resource,
                        reason: &r.reason,
                    },
                )
            })
        })
        .collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.0));
    rows.into_iter().map(|(_, row)| row).collect()
}

/// The boot diagnostics of `runs`, newest first.
pub(super) fn diagnostics_rows(runs: &[Run]) -> Vec<DiagnosticsRow<'_>> {
    let mut rows: Vec<(chrono::DateTime<chrono::Utc>, DiagnosticsRow<'_>)> = runs
        .iter()
        .flat_map(|run| {
            run.boot_diagnostics
                .iter()
                .map(move |d| (d.at, diagnostics_row(run.id.as_str(), d)))
        })
        .collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.0));
    rows.into_iter().map(|(_, row)| row).collect()
}

fn diagnostics_row<'a>(run: &'a str, d: &'a BootDiagnosticsRecord) -> DiagnosticsRow<'a> {
    DiagnosticsRow {
        at: minute(d.at),
        run,
        role: &d.role,
        vm: &d.vm,
        serial_log: d.serial_log.as_deref().map(link),
        screenshot: d.screenshot.as_deref().map(link),
        attempts: d.attempts,
        note: d.note.as_deref().unwrap_or(""),
    }
}

#[derive(Template)]
#[template(path = "reaper.html")]
struct ReaperPage<'a> {
    frame: Frame,
    mode: Mode,
    scanned: usize,
    reaped: Vec<ReapRow<'a>>,
    diagnostics: Vec<DiagnosticsRow<'a>>,
}

/// The reaper's panel over `runs` (the newest runs), in `mode`.
pub fn reaper_page(runs: &[Run], mode: Mode) -> String {
    let mut reaped = reap_rows(runs);
    reaped.truncate(PANEL_ROWS);
    let mut diagnostics = diagnostics_rows(runs);
    diagnostics.truncate(PANEL_ROWS);
    render(&ReaperPage {
        frame: Frame::with("Reaper", layout(false)),
        mode,
        scanned: runs.len(),
        reaped,
        diagnostics,
    })
}
