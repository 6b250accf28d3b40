//! `fleet`: every image's compliance with this month's patches, from a
//! running factory's fleet view (docs/fleet.md).

use std::io::Write;
use std::process::ExitCode;

use super::client::Client;
use super::output::print_answer;
use crate::domain::fleet::{Compliance, FleetPage};

/// Every image's compliance with this month's patches: its latest
/// release, patched / due / overdue with the days, its runs in flight and
/// what they wait on, its last failure (docs/fleet.md).
#[derive(clap::Args)]
pub struct Fleet {
    /// The factory's base URL.
    #[arg(
        long,
        env = "IMAGE_FACTORY_URL",
        default_value = "http://localhost:7071"
    )]
    url: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl Fleet {
    /// Prints the fleet view.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let fleet = Client::new(&self.url).fleet().await?;
        if self.json {
            print_answer(serde_json::to_string_pretty(&fleet)?)?;
        } else {
            print_fleet(&fleet)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Prints the fleet view: the headline, then one line per image.
fn print_fleet(fleet: &FleetPage) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let h = &fleet.headline;
    writeln!(
        out,
        "{} of {} images patched since the {} Patch Tuesday build ({}); {} due, {} overdue (deadline {}, {}-day grace)",
        h.patched,
        h.total,
        h.window.month,
        h.window.build_time.format("%Y-%m-%d %H:%M UTC"),
        h.due,
        h.overdue,
        h.window.deadline.format("%Y-%m-%d %H:%M UTC"),
        h.window.grace_days
    )?;
    let width = fleet
        .images
        .iter()
        .map(|r| r.image.len())
        .max()
        .unwrap_or(0)
        .max(5);
    writeln!(
        out,
        "{:<width$} {:<8} {:<11} {:<14} {:<17} {:<10} LAST FAILURE",
        "IMAGE", "STATE", "DAYS", "RELEASED", "WHEN", "IN FLIGHT"
    )?;
    for row in &fleet.images {
        let days = match &row.compliance {
            Compliance::Patched { .. } => "-".to_string(),
            Compliance::Due { days_left, .. } => format!("{days_left} left"),
            Compliance::Overdue { days_overdue, .. } => format!("{days_overdue} late"),
        };
        let (version, when) = row.latest_release.as_ref().map_or_else(
            || ("never".to_string(), "-".to_string()),
            |r| {
                (
                    r.version.clone(),
                    r.released_at.format("%Y-%m-%d %H:%M").to_string(),
                )
            },
        );
        let flying = row
            .in_flight
            .iter()
            .map(|r| match (&r.approval, r.stage) {
                (Some(_), _) => "approval".to_string(),
                (None, Some(stage)) => stage.name().to_string(),
                (None, None) => r.status.name().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let failure = row.last_failure.as_ref().map_or_else(
            || "-".to_string(),
            |f| format!("{} {}", f.run_id, f.at.format("%Y-%m-%d")),
        );
        writeln!(
            out,
            "{:<width$} {:<8} {:<11} {:<14} {:<17} {:<10} {}",
            row.image,
            row.compliance.name(),
            days,
            version,
            when,
            if flying.is_empty() { "-" } else { &flying },
            failure
        )?;
        if let Some(pause) = &row.paused {
            writeln!(out, "{:<width$}   {}", "", pause.describe(&row.image))?;
        }
    }
    Ok(())
}
