//! The operators' pages, rendered on the server (no JavaScript, no front-end
//! build): the runs list with filters, a run's page with its stage timeline
//! drawn as SVG, its approval trail, release metadata and log tail, and an
//! image's page with its released versions. Pure: given records, returns HTML.

use chrono::{DateTime, Utc};

use crate::domain::run::{Run, RunStatus, Stage, StageStatus};
use crate::pages::{Layout, escape, page_with};

/// Where the pages live (under the HTTP route prefix).
pub const BASE: &str = "/api/dashboard";

/// Seconds between reloads of a page that shows a run still moving.
const REFRESH_SECONDS: u32 = 5;

/// The filters of the runs list.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    /// Only this image.
    pub image: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
}

fn status_badge(status: RunStatus) -> String {
    format!(r#"<span class="status {0}">{0}</span>"#, status.name())
}

fn run_link(run: &Run) -> String {
    format!(
        r#"<a href="{BASE}/runs/{}">{}</a>"#,
        escape(&run.id),
        escape(&run.id)
    )
}

fn image_link(image: &str) -> String {
    format!(r#"<a href="{BASE}/images/{0}">{0}</a>"#, escape(image))
}

/// How long a run took, or has taken so far.
pub fn duration(run: &Run, now: DateTime<Utc>) -> String {
    let end = if run.status.is_terminal() {
        run.updated_at
    } else {
        now
    };
    human((end - run.created_at).num_seconds())
}

fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn trigger_name(run: &Run) -> &'static str {
    use crate::domain::run::TriggerKind::*;
    match run.trigger.kind {
        Push => "push",
        PatchTuesday => "Patch Tuesday",
        OutOfBand => "out-of-band",
        BaseImageUpdate => "base-image update",
    }
}

fn short_commit(run: &Run) -> String {
    run.trigger
        .commit
        .as_deref()
        .map(|c| c.chars().take(12).collect())
        .unwrap_or_else(|| "—".into())
}

/// The runs list, newest first.
pub fn runs_page(
    runs: &[Run],
    images: &[String],
    filters: &Filters,
    next: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    let image_options: String = std::iter::once(String::new())
        .chain(images.iter().cloned())
        .map(|i| {
            let selected = if filters.image.as_deref() == Some(i.as_str()) {
                " selected"
            } else {
                ""
            };
            let label = if i.is_empty() {
                "all images".to_string()
            } else {
                i.clone()
            };
            format!(
                r#"<option value="{}"{selected}>{}</option>"#,
                escape(&i),
                escape(&label)
            )
        })
        .collect();
    let statuses = [
        None,
        Some(RunStatus::Queued),
        Some(RunStatus::Running),
        Some(RunStatus::WaitingForApproval),
        Some(RunStatus::Released),
        Some(RunStatus::Rejected),
        Some(RunStatus::Failed),
        Some(RunStatus::ApprovalExpired),
        Some(RunStatus::Skipped),
    ];
    let status_options: String = statuses
        .iter()
        .map(|s| {
            let value = s.map(|s| s.name()).unwrap_or_default();
            let selected = if filters.status == *s {
                " selected"
            } else {
                ""
            };
            let label = if value.is_empty() {
                "any status"
            } else {
                value
            };
            format!(r#"<option value="{value}"{selected}>{label}</option>"#)
        })
        .collect();
    let rows: String = runs
        .iter()
        .map(|run| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                run_link(run),
                image_link(&run.image),
                trigger_name(run),
                escape(&short_commit(run)),
                run.version,
                status_badge(run.status),
                duration(run, now),
                run.created_at.format("%Y-%m-%d %H:%M UTC"),
            )
        })
        .collect();
    let empty = if runs.is_empty() {
        "<p>No runs match.</p>"
    } else {
        ""
    };
    let more = next
        .map(|c| {
            let mut query = format!("continuation={}", escape(c));
            if let Some(i) = &filters.image {
                query.push_str(&format!("&amp;image={}", escape(i)));
            }
            if let Some(s) = filters.status {
                query.push_str(&format!("&amp;status={}", s.name()));
            }
            format!(r#"<p><a href="{BASE}?{query}">Older runs →</a></p>"#)
        })
        .unwrap_or_default();
    let body = format!(
        r#"<form class="filters" method="get" action="{BASE}">
<label>Image<br><select name="image">{image_options}</select></label>
<label>Status<br><select name="status">{status_options}</select></label>
<button type="submit">Filter</button>
</form>
<div class="scroll"><table>
<thead><tr><th>Run</th><th>Image</th><th>Trigger</th><th>Commit</th><th>Version</th><th>Status</th><th>Duration</th><th>Started</th></tr></thead>
<tbody>{rows}</tbody></table></div>{empty}{more}"#
    );
    let active = runs.iter().any(|r| !r.status.is_terminal());
    page_with(
        "Runs",
        &body,
        Layout {
            wide: true,
            refresh_seconds: active.then_some(REFRESH_SECONDS),
        },
    )
}

/// The stage timeline: one bar per stage from its start to its end (or now).
pub fn timeline_svg(run: &Run, now: DateTime<Utc>) -> String {
    let start = run.created_at;
    let end = if run.status.is_terminal() {
        run.updated_at
    } else {
        now
    };
    let total = (end - start).num_milliseconds().max(1) as f64;
    let (left, width, row) = (90.0, 600.0, 26.0);
    let mut bars = String::new();
    for (i, record) in run.stages.iter().enumerate() {
        let y = 10.0 + i as f64 * row;
        bars.push_str(&format!(
            r#"<text x="0" y="{}" font-size="13">{}</text>"#,
            y + 14.0,
            record.stage.name()
        ));
        let Some(started) = record.started_at else {
            continue;
        };
        let finished = record.finished_at.unwrap_or(end);
        let x = left + width * (started - start).num_milliseconds() as f64 / total;
        let w = (width * (finished - started).num_milliseconds() as f64 / total).max(3.0);
        let color = match record.status {
            StageStatus::Succeeded => "#2f9e57",
            StageStatus::Failed => "#c0392b",
            StageStatus::Waiting => "#d4a017",
            StageStatus::Running => "#3b73d9",
            StageStatus::Pending => "#b0b7c0",
        };
        bars.push_str(&format!(
            r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="18" rx="3" fill="{color}"><title>{}: {:?}, {}</title></rect>"#,
            record.stage.name(),
            record.status,
            human((finished - started).num_seconds())
        ));
    }
    let height = 20.0 + row * Stage::ALL.len() as f64;
    format!(
        r##"<svg class="timeline" role="img" aria-label="stage timeline" viewBox="0 0 {} {height}" width="100%" xmlns="http://www.w3.org/2000/svg">{bars}<text x="{left}" y="{}" font-size="11" fill="#555">{} total</text></svg>"##,
        left + width + 10.0,
        height - 2.0,
        human((end - start).num_seconds())
    )
}

/// The last lines of a build attempt's log, for a run's page.
#[derive(Clone, Debug)]
pub struct AttemptLog {
    /// The build attempt, from 1.
    pub attempt: usize,
    /// Its log's last lines.
    pub tail: String,
}

/// A run's page: `log_tail` is the current build attempt's log, `earlier`
/// the logs earlier attempts left (cut short by a crash, superseded).
pub fn run_page(
    run: &Run,
    log_tail: Option<&str>,
    earlier: &[AttemptLog],
    now: DateTime<Utc>,
) -> String {
    let mut facts = vec![
        ("Status", status_badge(run.status)),
        ("Image", image_link(&run.image)),
        ("Version", run.version.to_string()),
        (
            "Trigger",
            format!("{} ({})", trigger_name(run), escape(&run.trigger.source)),
        ),
        (
            "Commit",
            escape(run.trigger.commit.as_deref().unwrap_or("—")),
        ),
        (
            "Started",
            run.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ),
        ("Duration", duration(run, now)),
    ];
    if let Some(reason) = &run.trigger.reason {
        facts.push(("Reason", escape(reason)));
    }
    if let Some(failure) = &run.failure {
        facts.push(("Why it stopped", escape(&failure.reason)));
    }
    if let Some(skipped) = &run.skipped {
        facts.push(("Skipped", escape(skipped)));
    }
    if let Some(worker) = run
        .stage(Stage::Build)
        .current_attempt()
        .and_then(|a| a.worker.as_ref())
    {
        facts.push((
            "Build worker",
            format!(
                "job execution {} since {}; log: <a href=\"{}\">{}</a>",
                escape(&worker.execution),
                worker.started_at.format("%Y-%m-%d %H:%M UTC"),
                escape(&worker.log_url),
                escape(&worker.log_url)
            ),
        ));
    }
    let facts: String = facts
        .iter()
        .map(|(k, v)| format!("<dt>{k}</dt><dd>{v}</dd>"))
        .collect();
    let stages: String = run
        .stages
        .iter()
        .map(|s| {
            let took = match (s.started_at, s.finished_at) {
                (Some(a), Some(b)) => human((b - a).num_seconds()),
                (Some(a), None) => format!("{} so far", human((now - a).num_seconds())),
                _ => "—".into(),
            };
            format!(
                "<tr><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                s.stage.name(),
                s.status,
                took,
                s.attempts.len(),
                escape(s.summary.as_deref().unwrap_or(""))
            )
        })
        .collect();
    let mut body = format!(
        r#"<nav><a href="{BASE}">← all runs</a>{}</nav><dl>{facts}</dl>
<h2>Timeline</h2>{}
<div class="scroll"><table><thead><tr><th>Stage</th><th>Status</th><th>Took</th><th>Attempts</th><th>Outcome</th></tr></thead><tbody>{stages}</tbody></table></div>"#,
        image_link(&run.image),
        timeline_svg(run, now)
    );
    if let Some(request) = &run.approval {
        let decisions: String = run
            .decisions
            .iter()
            .map(|d| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&d.approver),
                    d.verdict.name(),
                    d.at.format("%Y-%m-%d %H:%M UTC"),
                    escape(&d.via),
                    escape(d.comment.as_deref().unwrap_or(""))
                )
            })
            .collect();
        body.push_str(&format!(
            r#"<h2>Approval</h2><p>{} of {} approvals needed from {}, until {}.</p>
<div class="scroll"><table><thead><tr><th>Approver</th><th>Decision</th><th>When</th><th>How</th><th>Comment</th></tr></thead><tbody>{decisions}</tbody></table></div>"#,
            request.required,
            request.approvers.len(),
            escape(&request.approvers.join(", ")),
            request.expires_at.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    if let Some(release) = &run.release {
        let json = serde_json::to_string_pretty(release).unwrap_or_default();
        body.push_str(&format!(
            "<h2>image-version.json</h2><pre>{}</pre>",
            escape(&json)
        ));
    }
    let deliveries: String = run
        .follow_ups
        .iter()
        .flat_map(|f| {
            let crate::domain::followup::FollowUpKind::Event { event } = f.kind;
            f.deliveries.iter().map(move |d| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(event.name()),
                    escape(&d.target),
                    escape(&d.describe())
                )
            })
        })
        .collect();
    if !deliveries.is_empty() {
        body.push_str(&format!(
            r#"<h2>Release events</h2><div class="scroll"><table><thead><tr><th>Event</th><th>Target</th><th>Delivery</th></tr></thead><tbody>{deliveries}</tbody></table></div>"#
        ));
    }
    if let Some(tail) = log_tail {
        body.push_str(&format!(
            "<h2>Build log (last lines)</h2><pre>{}</pre>",
            escape(tail)
        ));
    }
    if !earlier.is_empty() {
        body.push_str("<h2>Earlier build attempts</h2>");
    }
    let attempts = &run.stage(Stage::Build).attempts;
    for log in earlier {
        let outcome = attempts
            .get(log.attempt.wrapping_sub(1))
            .and_then(|a| a.outcome.as_deref())
            .unwrap_or("no outcome recorded");
        body.push_str(&format!(
            r#"<h3>Attempt {n}: {}</h3><p><a href="/api/runs/{}?log=0&amp;attempt={n}">Its log from the start</a> (last lines below)</p><pre>{}</pre>"#,
            escape(outcome),
            escape(&run.id),
            escape(&log.tail),
            n = log.attempt,
        ));
    }
    page_with(
        &format!("Run {}", run.id),
        &body,
        Layout {
            wide: true,
            refresh_seconds: (!run.status.is_terminal()).then_some(REFRESH_SECONDS),
        },
    )
}

/// An image's page: its runs, its released versions, the latest one.
pub fn image_page(image: &str, runs: &[Run], now: DateTime<Utc>) -> String {
    let released: Vec<&Run> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Released)
        .collect();
    let latest = released.first();
    let versions: String = released
        .iter()
        .map(|r| {
            let tag = if Some(r) == latest { " <strong>latest</strong>" } else { "" };
            let approvers: Vec<&str> = r.decisions.iter().map(|d| d.approver.as_str()).collect();
            format!(
                "<tr><td>{}{tag}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                r.version,
                run_link(r),
                escape(&short_commit(r)),
                escape(&approvers.join(", ")),
                r.updated_at.format("%Y-%m-%d %H:%M UTC")
            )
        })
        .collect();
    let recent: String = runs
        .iter()
        .take(20)
        .map(|r| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                run_link(r),
                r.version,
                status_badge(r.status),
                duration(r, now)
            )
        })
        .collect();
    let latest_line = latest
        .map(|r| {
            format!(
                "<p>Latest released version: <strong>{}</strong> (run {}).</p>",
                r.version,
                run_link(r)
            )
        })
        .unwrap_or_else(|| "<p>No version released yet.</p>".into());
    let body = format!(
        r#"<nav><a href="{BASE}">← all runs</a></nav>{latest_line}
<h2>Released versions</h2><div class="scroll"><table><thead><tr><th>Version</th><th>Run</th><th>Commit</th><th>Approved by</th><th>Released</th></tr></thead><tbody>{versions}</tbody></table></div>
<h2>Recent runs</h2><div class="scroll"><table><thead><tr><th>Run</th><th>Version</th><th>Status</th><th>Duration</th></tr></thead><tbody>{recent}</tbody></table></div>"#
    );
    page_with(
        &format!("Image {image}"),
        &body,
        Layout {
            wide: true,
            refresh_seconds: None,
        },
    )
}

/// A page for something that does not exist, with a way back.
pub fn not_found_page(what: &str) -> String {
    page_with(
        "Not found",
        &format!(
            r#"<p class="notice error">{}</p><p><a href="{BASE}">← all runs</a></p>"#,
            escape(what)
        ),
        Layout::default(),
    )
}
