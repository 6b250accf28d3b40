//! `fleet`: every image's compliance with this month's patches, from a
//! running factory's fleet view (docs/fleet.md).

use std::io::Write;
use std::process::ExitCode;

use super::client::Client;
use super::output::print_answer;
use crate::domain::fleet::{Compliance, FleetPage, PatchLevel};

/// Every image's compliance with this month's patches: its current
/// version (and the rollback that made it current, if one did), patched / due / overdue with the days, its runs in flight and
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
        "IMAGE", "STATE", "DAYS", "CURRENT", "SINCE", "IN FLIGHT"
    )?;
    let mut by_dates = false;
    for row in &fleet.images {
        // By evidence when the latest release has some; else by dates, marked `*`.
        let (state, days) = match &row.patch_level {
            PatchLevel::Evidence {
                exposed_to,
                by_severity,
                ..
            } => (
                if *exposed_to == 0 {
                    "patched"
                } else {
                    "exposed"
                }
                .to_string(),
                if *exposed_to == 0 {
                    "-".to_string()
                } else {
                    format!("{exposed_to} CVEs/{}C", by_severity.critical)
                },
            ),
            PatchLevel::Unknown { .. } | PatchLevel::Dates => {
                by_dates = true;
                let days = match &row.compliance {
                    Compliance::Patched { .. } => "-".to_string(),
                    Compliance::Due { days_left, .. } => format!("{days_left} left"),
                    Compliance::Overdue { days_overdue, .. } => format!("{days_overdue} late"),
                };
                (format!("{}*", row.compliance.name()), days)
            }
        };
        let (version, when) = row.current_release.as_ref().map_or_else(
            || ("never".to_string(), "-".to_string()),
            |r| {
                (
                    r.version.clone(),
                    r.current_since.format("%Y-%m-%d %H:%M").to_string(),
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
            state,
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
    for row in &fleet.images {
        if let Some(b) = row
            .current_release
            .as_ref()
            .and_then(|r| r.rolled_back.as_ref())
        {
            writeln!(
                out,
                "{}: {} rolled back from {} by {} at {}: {}",
                row.image,
                b.to,
                b.from.as_deref().unwrap_or("no current version"),
                b.actor,
                b.at.format("%Y-%m-%d %H:%M UTC"),
                b.reason
            )?;
        }
        for child in &row.outdated_children {
            writeln!(
                out,
                "{}: outdated child {}: {}",
                row.image, child.image, child.reason
            )?;
        }
        match (&row.patch_level, row.patch_level.describe()) {
            (_, Some(text)) => writeln!(out, "{}: {text}", row.image)?,
            (PatchLevel::Unknown { reason }, None) => {
                writeln!(out, "{}: patch evidence not judged ({reason})", row.image)?
            }
            _ => {}
        }
    }
    if by_dates {
        writeln!(
            out,
            "* by dates: the image's latest release has no patch evidence that could be judged"
        )?;
    }
    Ok(())
}
