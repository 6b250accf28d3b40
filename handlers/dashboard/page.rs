//! What every dashboard page shares: its layout (wide, reloading while a
//! run moves), how it shows a time, and how it tells a rollback.

use chrono::{DateTime, Utc};

use crate::domain::run::{Rollback, Run};
use crate::pages::Layout;

/// Seconds between reloads of a page that shows a run still moving.
const REFRESH_SECONDS: u32 = 5;

/// A time as the pages show it, to the minute.
pub(super) fn minute(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The layout of a dashboard page: wide, reloading while a run moves.
pub(super) fn layout(moving: bool) -> Layout {
    Layout {
        wide: true,
        refresh_seconds: moving.then_some(REFRESH_SECONDS),
        nav: true,
    }
}

/// What rollbacks say of a released run: who withdrew it, when a rollback
/// did, and each rollback that made it current again.
pub(super) fn rollback_lines(run: &Run) -> (Option<String>, Vec<String>) {
    let release = run.release.as_ref();
    (
        release
            .and_then(|r| r.withdrawn.as_deref())
            .map(withdrawn_by),
        release
            .iter()
            .flat_map(|r| &r.rollbacks)
            .map(made_current)
            .collect(),
    )
}

/// A rollback, as the version it made current tells it.
pub(super) fn made_current(b: &Rollback) -> String {
    format!(
        "made current again {} by {} ({}), rolled back from {}: {}",
        minute(b.at),
        b.actor,
        b.via,
        b.from.as_deref().unwrap_or("no current version"),
        b.reason
    )
}

/// A rollback, as a version it withdrew tells it.
pub(super) fn withdrawn_by(b: &Rollback) -> String {
    format!(
        "withdrawn {} by {} ({}), rolled back to {}: {}",
        minute(b.at),
        b.actor,
        b.via,
        b.to,
        b.reason
    )
}
