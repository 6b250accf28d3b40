//! The fleet page (`/api/dashboard/fleet`): the headline count of images
//! patched since this month's Patch Tuesday build, then one row per image with
//! its latest release, its patch state (by its patch evidence against the
//! newest month when it has some; else by dates, said so), its runs in
//! flight and what they wait on, and its last failure with the diagnosis. Pure: given a page of the
//! fleet view, works out the text each cell shows; the markup is the template
//! `fleet.html`.

use askama::Template;
use chrono::{DateTime, Utc};

use crate::domain::fleet::{
    Compliance, FailureFacts, FleetPage, FleetRow, InFlight, PatchLevel, PatchedBy, ReleaseFacts,
};
use crate::pages::{Frame, Layout, filters, render};

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// At most `max` characters of `text`, cut with an ellipsis.
fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".into()
    } else {
        format!("{n} days")
    }
}

/// The headline above the table.
struct HeadlineView<'a> {
    patched: usize,
    total: usize,
    month: &'a str,
    build: String,
    due: usize,
    overdue: usize,
    deadline: String,
    grace: String,
}

/// An image's current release.
struct ReleaseView<'a> {
    run_id: &'a str,
    version: &'a str,
    /// Since when it is current.
    since: String,
    base: &'a str,
    /// The latest it was released below (published, not promoted).
    below_latest: Option<&'a str>,
    /// The rollback that made it current: from which version, who, why.
    rolled_back: Option<RollbackView<'a>>,
}

/// A rollback, in a cell.
struct RollbackView<'a> {
    from: &'a str,
    actor: &'a str,
    reason: &'a str,
}

/// What the patch-state cell says under its badge.
enum Detail<'a> {
    /// Released: a link to the releasing run (its id, the link's text).
    Released(&'a str, String),
    /// Inputs unchanged: a link to the run that found so.
    Unchanged(&'a str, String),
    /// Due or overdue, or judged by evidence: text.
    Text(String),
}

/// The patch-state cell: the badge reuses the run status colours (green,
/// yellow, red).
struct StateView<'a> {
    class: &'static str,
    name: &'static str,
    detail: Detail<'a>,
}

/// A run in flight.
struct FlightView<'a> {
    run_id: &'a str,
    version: &'a str,
    waits: String,
}

/// The diagnosis of a failure.
struct DiagnosisView<'a> {
    symptom: &'a str,
    cause: &'a str,
    fix: &'a str,
}

/// An image's last failure.
struct FailureView<'a> {
    run_id: &'a str,
    what: String,
    reason: &'a str,
    short: String,
    diagnosis: Option<DiagnosisView<'a>>,
}

/// The pause of an image's scheduled runs.
struct PausedView<'a> {
    since: String,
    count: usize,
    runs: String,
    paused_by: &'a str,
    reason: &'a str,
    short: String,
}

/// One image's row.
struct RowView<'a> {
    image: &'a str,
    paused: Option<PausedView<'a>>,
    release: Option<ReleaseView<'a>>,
    state: StateView<'a>,
    in_flight: Vec<FlightView<'a>>,
    failure: Option<FailureView<'a>>,
    /// Each outdated child and why.
    outdated_children: Vec<(&'a str, &'a str)>,
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetView<'a> {
    frame: Frame,
    headline: HeadlineView<'a>,
    /// Whether any image has outdated children (the column is shown).
    children: bool,
    rows: Vec<RowView<'a>>,
    /// The continuation of the next page.
    next: Option<&'a str>,
}

fn release(r: &ReleaseFacts) -> ReleaseView<'_> {
    ReleaseView {
        run_id: &r.run_id,
        version: &r.version,
        since: when(r.current_since),
        base: r.base_image_version.as_deref().unwrap_or("not recorded"),
        below_latest: r.below_latest.as_deref(),
        rolled_back: r.rolled_back.as_ref().map(|b| RollbackView {
            from: b.from.as_deref().unwrap_or("no current version"),
            actor: &b.actor,
            reason: &b.reason,
        }),
    }
}

fn state(compliance: &Compliance) -> StateView<'_> {
    let (class, detail) = match compliance {
        Compliance::Patched { run_id, how, at } => (
            "released",
            match how {
                PatchedBy::Released => Detail::Released(run_id, format!("released {}", when(*at))),
                PatchedBy::Unchanged => Detail::Unchanged(run_id, format!("checked {}", when(*at))),
            },
        ),
        Compliance::Due {
            days_since_build,
            days_left,
            deadline,
        } => (
            "waiting-for-approval",
            Detail::Text(format!(
                "{} since the build, {} left (until {})",
                days(*days_since_build),
                days(*days_left),
                when(*deadline)
            )),
        ),
        Compliance::Overdue {
            days_overdue,
            deadline,
        } => (
            "failed",
            Detail::Text(format!("{} past {}", days(*days_overdue), when(*deadline))),
        ),
    };
    StateView {
        class,
        name: compliance.name(),
        detail,
    }
}

fn in_flight(run: &InFlight) -> FlightView<'_> {
    let stage = run.stage.map_or("—", |s| s.name());
    let waits = match &run.approval {
        Some(a) => format!(
            "waits for approval since {} ({} of {} needed; waiting on {})",
            when(run.since),
            a.required,
            a.approvers.len(),
            a.waiting_on.join(", ")
        ),
        None => format!("{} at {stage} since {}", run.status, when(run.since)),
    };
    FlightView {
        run_id: &run.run_id,
        version: &run.version,
        waits,
    }
}

fn failure(f: &FailureFacts) -> FailureView<'_> {
    let stage = f
        .stage
        .map_or(String::new(), |s| format!(" at {}", s.name()));
    FailureView {
        run_id: &f.run_id,
        what: format!("failed{stage}, {}", when(f.at)),
        reason: &f.reason,
        short: short(&f.reason, 160),
        diagnosis: f.diagnosis.as_ref().map(|d| DiagnosisView {
            symptom: &d.symptom,
            cause: &d.cause,
            fix: &d.fix,
        }),
    }
}

/// The patch-state cell of a row: by evidence when the latest release has
/// some, else by dates, saying so.
fn patch_state(row: &FleetRow) -> StateView<'_> {
    if let (
        Some(text),
        PatchLevel::Evidence {
            exposed_to,
            by_severity,
            os_build,
            cumulative_update,
            stand_in,
            ..
        },
    ) = (row.patch_level.describe(), &row.patch_level)
    {
        let update = cumulative_update.as_ref().map_or(String::new(), |u| {
            format!(", {} is build {}", u.kb, u.fixed_build)
        });
        let stand_in = if *stand_in {
            " (stand-in evidence)"
        } else {
            ""
        };
        return StateView {
            class: match (exposed_to, by_severity.critical) {
                (0, _) => "released",
                (_, 0) => "waiting-for-approval",
                _ => "failed",
            },
            name: if *exposed_to == 0 {
                "patched"
            } else {
                "exposed"
            },
            detail: Detail::Text(format!("{text}; build {os_build}{update}{stand_in}")),
        };
    }
    let mut by_dates = state(&row.compliance);
    let why = match &row.patch_level {
        PatchLevel::Unknown { reason } => {
            format!("by dates: the evidence could not be judged ({reason})")
        }
        _ => "by dates: no patch evidence".to_string(),
    };
    by_dates.detail = match by_dates.detail {
        Detail::Text(text) => Detail::Text(format!("{text}; {why}")),
        Detail::Released(run, text) => Detail::Released(run, format!("{text} ({why})")),
        Detail::Unchanged(run, text) => Detail::Unchanged(run, format!("{text} ({why})")),
    };
    by_dates
}

fn row(row: &FleetRow) -> RowView<'_> {
    RowView {
        image: &row.image,
        paused: row.paused.as_ref().map(|p| PausedView {
            since: when(p.since),
            count: p.failures.len(),
            runs: p
                .failures
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            paused_by: p.paused_by.as_str(),
            reason: &p.last_reason,
            short: short(&p.last_reason, 160),
        }),
        release: row.current_release.as_ref().map(release),
        state: patch_state(row),
        in_flight: row.in_flight.iter().map(in_flight).collect(),
        failure: row.last_failure.as_ref().map(failure),
        outdated_children: row
            .outdated_children
            .iter()
            .map(|c| (c.image.as_str(), c.reason.as_str()))
            .collect(),
    }
}

/// The fleet page showing `page`, with a link to the next one.
pub fn fleet_page(page: &FleetPage) -> String {
    let h = &page.headline;
    let w = &h.window;
    render(&FleetView {
        frame: Frame::with(
            "Fleet",
            Layout {
                wide: true,
                refresh_seconds: None,
                nav: true,
            },
        ),
        headline: HeadlineView {
            patched: h.patched,
            total: h.total,
            month: &w.month,
            build: when(w.build_time),
            due: h.due,
            overdue: h.overdue,
            deadline: when(w.deadline),
            grace: days(i64::from(w.grace_days)),
        },
        children: page.images.iter().any(|r| !r.outdated_children.is_empty()),
        rows: page.images.iter().map(row).collect(),
        next: page.continuation.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::fleet::{FailureFacts, Headline, PatchWindow};

    #[test]
    fn recorded_text_is_shown_as_text_and_long_reasons_are_cut() {
        let at = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
        let deadline = Utc.with_ymd_and_hms(2026, 11, 18, 6, 0, 0).unwrap();
        let reason = format!("<script>alert('x')</script> {}", "x".repeat(300));
        let page = FleetPage {
            headline: Headline {
                window: PatchWindow {
                    month: "2026-11".into(),
                    build_time: deadline - chrono::Duration::days(7),
                    deadline,
                    grace_days: 7,
                },
                patched: 0,
                total: 1,
                due: 0,
                overdue: 1,
            },
            images: vec![FleetRow {
                image: "web".into(),
                current_release: None,
                compliance: Compliance::Overdue {
                    days_overdue: 2,
                    deadline,
                },
                patch_level: PatchLevel::Dates,
                in_flight: vec![],
                last_failure: Some(FailureFacts {
                    run_id: "push-web-1".into(),
                    at,
                    stage: None,
                    reason,
                    diagnosis: None,
                }),
                outdated_children: vec![],
                paused: None,
            }],
            continuation: Some("d2Vi".into()),
        };
        let html = fleet_page(&page);
        assert!(!html.contains("<script>alert"), "markup reached the page");
        assert!(html.contains("&#60;script&#62;alert(&#39;x&#39;)"));
        assert!(html.contains("x…</small>"), "the reason is cut short");
        assert!(html.contains("2 days past 2026-11-18 06:00 UTC"));
        assert!(html.contains(r#"href="/api/dashboard/fleet?continuation=d2Vi""#));
        assert!(
            !html.contains("Outdated children"),
            "no layered images, no column"
        );
    }

    #[test]
    fn a_current_release_published_below_another_says_so_and_a_rollback_says_who_and_why() {
        let at = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
        let page = FleetPage {
            headline: Headline {
                window: PatchWindow {
                    month: "2026-11".into(),
                    build_time: at,
                    deadline: at,
                    grace_days: 0,
                },
                patched: 1,
                total: 1,
                due: 0,
                overdue: 0,
            },
            images: vec![FleetRow {
                image: "web".into(),
                current_release: Some(ReleaseFacts {
                    version: "2026.1120.0".into(),
                    run_id: "push-web-0".into(),
                    released_at: at,
                    base_image_version: None,
                    below_latest: Some("2026.1120.1".into()),
                    current_since: at,
                    rolled_back: Some(crate::domain::run::Rollback {
                        id: "e".into(),
                        to: "2026.1120.0".into(),
                        to_run: "push-web-0".into(),
                        from: Some("2026.1120.1".into()),
                        withdrawn: vec!["2026.1120.1".into()],
                        actor: "alice@contoso.com".into(),
                        via: "sign-in".into(),
                        reason: "<b>IIS</b> down".into(),
                        at,
                    }),
                }),
                compliance: Compliance::Patched {
                    run_id: "push-web-0".into(),
                    how: PatchedBy::Released,
                    at,
                },
                patch_level: PatchLevel::Dates,
                in_flight: vec![],
                last_failure: None,
                outdated_children: vec![],
                paused: None,
            }],
            continuation: None,
        };
        let html = fleet_page(&page);
        assert!(
            html.contains("published below the latest 2026.1120.1, not promoted"),
            "{html}"
        );
        assert!(
            html.contains(
                "rolled back from 2026.1120.1 by alice@contoso.com: &#60;b&#62;IIS&#60;/b&#62; down"
            ),
            "{html}"
        );
        assert!(
            html.contains("current since 2026-11-20 09:00 UTC"),
            "{html}"
        );
    }

    #[test]
    fn an_image_whose_scheduled_runs_are_paused_says_since_when_why_and_how_to_resume() {
        let at = Utc.with_ymd_and_hms(2027, 2, 10, 6, 30, 0).unwrap();
        let runs: Vec<crate::domain::run::RunId> =
            ["pt-web-2026-12", "pt-web-2027-01", "pt-web-2027-02"]
                .iter()
                .map(|r| r.parse().expect("a run id"))
                .collect();
        let page = FleetPage {
            headline: Headline {
                window: PatchWindow {
                    month: "2027-02".into(),
                    build_time: at,
                    deadline: at,
                    grace_days: 0,
                },
                patched: 0,
                total: 1,
                due: 0,
                overdue: 1,
            },
            images: vec![FleetRow {
                image: "web".into(),
                current_release: None,
                patch_level: PatchLevel::Dates,
                compliance: Compliance::Overdue {
                    days_overdue: 0,
                    deadline: at,
                },
                in_flight: vec![],
                last_failure: None,
                outdated_children: vec![],
                paused: Some(crate::domain::pause::Pause {
                    failures: runs.clone(),
                    pause_after: 3,
                    paused_by: runs[2].clone(),
                    since: at,
                    last_reason: "<b>build.pkr.hcl:9</b> undeclared variable".into(),
                }),
            }],
            continuation: None,
        };
        let html = fleet_page(&page);
        assert!(html.contains("scheduled runs paused"), "{html}");
        assert!(html.contains("since 2027-02-10 06:30 UTC after 3 failed scheduled runs"));
        assert!(html.contains("pt-web-2026-12, pt-web-2027-01, pt-web-2027-02"));
        assert!(html.contains("image-factory images resume web"));
        assert!(
            html.contains("&#60;b&#62;build.pkr.hcl:9"),
            "the reason is text"
        );
    }
}
