//! What every dashboard page shares: its layout (wide, reloading while a
//! run moves) and how it shows a time.

use chrono::{DateTime, Utc};

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
