//! `schedule`: the next firings of a timer schedule (NCRONTAB, six fields,
//! UTC), as the Functions host would fire it.

use std::io::Write;
use std::process::ExitCode;

use chrono::{NaiveDateTime, Utc};

use crate::domain::schedule;

/// Print the next firings of a timer schedule (NCRONTAB, six fields, UTC).
#[derive(clap::Args)]
pub struct Schedule {
    /// The schedule, e.g. "0 0 18 8-14 * Tue".
    expression: String,
    /// How many firings.
    #[arg(long, default_value_t = 5)]
    next: usize,
    /// Start after this time (YYYY-MM-DDTHH:MM:SS, UTC); default now.
    #[arg(long)]
    after: Option<NaiveDateTime>,
}

impl Schedule {
    /// Prints the firings, or says why there are none.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Schedule {
            expression,
            next,
            after,
        } = self;
        let schedule = schedule::Schedule::parse(&expression)?;
        let after = after.unwrap_or_else(|| Utc::now().naive_utc());
        if schedule.next_after(after).is_none() {
            anyhow::bail!(
                "the schedule \"{expression}\" never fires: no date up to the year 9999 matches it (is the day of the month one the month has, e.g. not 30 Feb?)"
            );
        }
        let mut out = std::io::stdout().lock();
        for firing in schedule.upcoming(after, next) {
            writeln!(out, "{}", firing.format("%Y-%m-%d %H:%M:%S %a UTC"))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
