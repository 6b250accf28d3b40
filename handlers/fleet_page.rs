//! The fleet page (`/api/dashboard/fleet`): the headline count of images
//! patched since this month's Patch Tuesday build, then one row per image with
//! its latest release, its patch state, its runs in flight and what they wait
//! on, and its last failure with the diagnosis. Pure: given a page of the
//! fleet view, returns HTML; every recorded string goes through [`escape`].

use chrono::{DateTime, Utc};

use crate::dashboard::BASE;
use crate::domain::fleet::{Compliance, FleetPage, FleetRow, InFlight, PatchedBy};
use crate::pages::{Layout, page_with};

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A link to run `id` reading `text` (run ids are long: the table stays narrow).
fn run_link(id: &str, text: &str) -> String {
    format!(
        r#"<a href="{BASE}/runs/{}" title="{0}">{}</a>"#,
        escape(id),
        escape(text)
    )
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

fn release_cell(row: &FleetRow) -> String {
    match &row.latest_release {
        None => "never released".into(),
        Some(r) => format!(
            "<strong>{}</strong><br><small>{} · base {}</small>",
            run_link(&r.run_id, &r.version),
            when(r.released_at),
            escape(r.base_image_version.as_deref().unwrap_or("not recorded"))
        ),
    }
}

fn state_cell(compliance: &Compliance) -> String {
    // The badge reuses the run status colours: green, yellow, red.
    let (class, detail) = match compliance {
        Compliance::Patched { run_id, how, at } => (
            "released",
            match how {
                PatchedBy::Released => run_link(run_id, &format!("released {}", when(*at))),
                PatchedBy::Unchanged => format!(
                    "inputs unchanged since the last release ({})",
                    run_link(run_id, &format!("checked {}", when(*at)))
                ),
            },
        ),
        Compliance::Due {
            days_since_build,
            days_left,
            deadline,
        } => (
            "waiting-for-approval",
            format!(
                "{} since the build, {} left (until {})",
                days(*days_since_build),
                days(*days_left),
                when(*deadline)
            ),
        ),
        Compliance::Overdue {
            days_overdue,
            deadline,
        } => (
            "failed",
            format!("{} past {}", days(*days_overdue), when(*deadline)),
        ),
    };
    format!(
        r#"<span class="status {class} compliance">{}</span><br><small>{detail}</small>"#,
        compliance.name()
    )
}

fn in_flight_item(run: &InFlight) -> String {
    let stage = run.stage.map_or("—", |s| s.name());
    let waits = match &run.approval {
        Some(a) => format!(
            "waits for approval since {} ({} of {} needed; waiting on {})",
            when(run.since),
            a.required,
            a.approvers.len(),
            escape(&a.waiting_on.join(", "))
        ),
        None => format!("{} at {stage} since {}", run.status, when(run.since)),
    };
    format!("<li>{}: {waits}</li>", run_link(&run.run_id, &run.version))
}

fn failure_cell(row: &FleetRow) -> String {
    let Some(f) = &row.last_failure else {
        return "—".into();
    };
    let stage = f
        .stage
        .map_or(String::new(), |s| format!(" at {}", s.name()));
    let what = format!("failed{stage}, {}", when(f.at));
    let diagnosis = f
        .diagnosis
        .as_ref()
        .map(|d| {
            format!(
                "<br><small><strong>{}</strong>. Likely: {}. Fix: {}.</small>",
                escape(&d.symptom),
                escape(&d.cause),
                escape(&d.fix)
            )
        })
        .unwrap_or_default();
    format!(
        "{}<br><small title=\"{}\">{}</small>{diagnosis}",
        run_link(&f.run_id, &what),
        escape(&f.reason),
        escape(&short(&f.reason, 160))
    )
}

/// The fleet page showing `page`, with a link to the next one.
pub fn fleet_page(page: &FleetPage) -> String {
    let h = &page.headline;
    let w = &h.window;
    let late = if h.overdue > 0 {
        format!(
            "; <strong>{} overdue</strong> since {}",
            h.overdue,
            when(w.deadline)
        )
    } else if h.due > 0 {
        format!("; {} due by {}", h.due, when(w.deadline))
    } else {
        String::new()
    };
    let headline = format!(
        r#"<p class="notice headline"><strong>{} of {}</strong> images patched since the {} Patch Tuesday build ({}){late}. Grace period: {}.</p>"#,
        h.patched,
        h.total,
        escape(&w.month),
        when(w.build_time),
        days(i64::from(w.grace_days))
    );
    let children = page.images.iter().any(|r| !r.outdated_children.is_empty());
    let rows: String = page
        .images
        .iter()
        .map(|row| {
            let flying = if row.in_flight.is_empty() {
                "—".to_string()
            } else {
                format!(
                    "<ul>{}</ul>",
                    row.in_flight.iter().map(in_flight_item).collect::<String>()
                )
            };
            let children_cell = if children {
                format!(
                    "<td>{}</td>",
                    escape(&row.outdated_children.join(", "))
                )
            } else {
                String::new()
            };
            format!(
                r#"<tr id="image-{id}"><td><a href="{BASE}/images/{id}">{id}</a></td><td>{}</td><td>{}</td><td>{flying}</td><td>{}</td>{children_cell}</tr>"#,
                release_cell(row),
                state_cell(&row.compliance),
                failure_cell(row),
                id = escape(&row.image),
            )
        })
        .collect();
    let children_head = if children {
        "<th>Outdated children</th>"
    } else {
        ""
    };
    let empty = if page.images.is_empty() {
        "<p>No images are configured.</p>"
    } else {
        ""
    };
    let more = page
        .continuation
        .as_deref()
        .map(|c| {
            format!(
                r#"<p><a href="{BASE}/fleet?continuation={}">More images →</a></p>"#,
                escape(c)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"{headline}
<div class="scroll"><table class="fleet">
<thead><tr><th>Image</th><th>Latest release</th><th>Patch state</th><th>In flight</th><th>Last failure</th>{children_head}</tr></thead>
<tbody>{rows}</tbody></table></div>{empty}{more}"#
    );
    page_with(
        "Fleet",
        &body,
        Layout {
            wide: true,
            refresh_seconds: None,
            nav: true,
        },
    )
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
                latest_release: None,
                compliance: Compliance::Overdue {
                    days_overdue: 2,
                    deadline,
                },
                in_flight: vec![],
                last_failure: Some(FailureFacts {
                    run_id: "push-web-1".into(),
                    at,
                    stage: None,
                    reason,
                    diagnosis: None,
                }),
                outdated_children: vec![],
            }],
            continuation: Some("d2Vi".into()),
        };
        let html = fleet_page(&page);
        assert!(!html.contains("<script>alert"), "markup reached the page");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)"));
        assert!(html.contains("x…</small>"), "the reason is cut short");
        assert!(html.contains("2 days past 2026-11-18 06:00 UTC"));
        assert!(html.contains(r#"href="/api/dashboard/fleet?continuation=d2Vi""#));
        assert!(
            !html.contains("Outdated children"),
            "no layered images, no column"
        );
    }
}
