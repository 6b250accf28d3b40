//! `patch-tuesday`: a year's Patch Tuesdays and the factory's build times,
//! as the settings place them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Settings;
use crate::domain::calendar::{Month, patch_tuesday};

/// The years `patch-tuesday` prints: the calendar's range, not chrono's.
const MIN_YEAR: i64 = 1970;
const MAX_YEAR: i64 = 9999;

/// Print a year's Patch Tuesdays and the factory's monthly build times.
#[derive(clap::Args)]
pub struct PatchTuesday {
    /// The year (1970-9999).
    #[arg(long, value_parser = clap::value_parser!(i32).range(MIN_YEAR..=MAX_YEAR))]
    year: i32,
}

impl PatchTuesday {
    /// Prints the year's table.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let year = self.year;
        let calendar = Settings::from_env()?.calendar;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Patch Tuesday  build time ({}, {} day(s) later at {:02}:00)",
            calendar.zone, calendar.offset_days, calendar.hour
        )?;
        for month in 1..=12 {
            let day = patch_tuesday(year, month).context("no such month")?;
            let build = calendar.build_time(Month { year, month });
            writeln!(
                out,
                "{}     {}  ({} UTC)",
                day.format("%Y-%m-%d"),
                build
                    .with_timezone(&calendar.zone)
                    .format("%Y-%m-%d %H:%M %Z"),
                build.format("%Y-%m-%d %H:%M")
            )?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
