//! What people are told: the messages every notification channel sends (an
//! Adaptive Card for Teams, an email with HTML and plain-text bodies), built
//! from the same facts and the same link. Approvers are asked for a
//! decision (and reminded); an image's approvers and the operators are told
//! when its scheduled runs paused after failing. A request's facts include
//! the run's patch level (`domain::patch_view`), and "patch level not
//! verified" or a failed gate comes first, as an alert; and its declaration
//! checks (how many passed, by which checker). The channels that
//! carry them are adapters of the notification port ([`crate::ports::notifier`]).

use serde_json::{Value, json};

use crate::domain::approval::NoticeKind;
use crate::domain::patch_view;
use crate::domain::run::Run;
use crate::pages::render;
use crate::ports::notifier::Notice;

/// The facts every message shows, in order.
fn facts(run: &Run) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("Image", run.image.clone()),
        ("Version", run.version.to_string()),
        (
            "Commit",
            run.trigger.commit.clone().unwrap_or_else(|| "none".into()),
        ),
        (
            "Trigger",
            format!("{:?} from {}", run.trigger.kind, run.trigger.source),
        ),
        ("Run", run.id.to_string()),
    ];
    if let Some(reason) = &run.trigger.reason {
        facts.push(("Reason", reason.clone()));
    }
    if let Some(build) = &run.build {
        facts.push((
            "Build",
            format!("{} s, log {}", build.duration_seconds, build.log),
        ));
    }
    if !run.checks.is_empty() {
        facts.push(("Tests", run.checks.join("; ")));
    }
    facts.extend(patch_view::facts(run));
    facts.extend(run.declaration.iter().flat_map(|d| d.facts()));
    facts
}

/// The facts of a pause notice, in order: the image, since when, the
/// failed scheduled runs, the last failure and how to resume.
fn pause_facts(notice: &Notice<'_>) -> Vec<(&'static str, String)> {
    let run = notice.run;
    let failures = run
        .schedule_check
        .as_ref()
        .map(|c| {
            c.failures
                .iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| run.id.to_string());
    vec![
        ("Image", run.image.clone()),
        (
            "Paused since",
            notice.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        ),
        ("Failed scheduled runs", failures),
        (
            "Last failure",
            run.failure
                .as_ref()
                .map_or_else(|| "no reason recorded".into(), |f| f.reason.clone()),
        ),
        (
            "Resume",
            format!(
                "release the image (a push or an out-of-band run), or `image-factory images resume {}`",
                run.image
            ),
        ),
    ]
}

fn headline(notice: &Notice<'_>) -> String {
    let run = notice.run;
    match notice.kind {
        NoticeKind::Request => format!("Approve {} {}?", run.image, run.version),
        NoticeKind::Reminder => format!(
            "Reminder: {} {} still waits for you",
            run.image, run.version
        ),
        NoticeKind::Paused => format!("Scheduled runs of {} are paused", run.image),
    }
}

/// What a pause notice says to its recipient, in one paragraph.
fn pause_text(notice: &Notice<'_>) -> String {
    let failed = notice
        .run
        .schedule_check
        .as_ref()
        .map_or(1, |c| c.failures.len());
    format!(
        "{}, the scheduled runs of {} (Patch Tuesday and base image updates) failed {failed} times in a row and are paused: none starts until the image is released again or an operator resumes them. Pushes and out-of-band runs still build it.",
        notice.approver, notice.run.image
    )
}

/// The Teams message: an Adaptive Card (1.5). A request or reminder has
/// buttons that open the approver's link; a pause notice one that opens
/// the image's page.
pub fn teams_card(notice: &Notice<'_>) -> Value {
    let card = |facts: Vec<(&'static str, String)>, text: String, actions: Value| {
        let facts: Vec<Value> = facts
            .into_iter()
            .map(|(title, value)| json!({ "title": title, "value": value }))
            .collect();
        let mut body = vec![
            json!({ "type": "TextBlock", "text": headline(notice), "weight": "Bolder", "size": "Medium", "wrap": true }),
        ];
        // "Patch level not verified" or a failed gate comes first.
        if notice.kind != NoticeKind::Paused
            && let Some(alert) = patch_view::alert(notice.run)
        {
            body.push(json!({ "type": "TextBlock", "text": alert, "color": "Attention", "weight": "Bolder", "wrap": true }));
        }
        body.push(json!({ "type": "TextBlock", "text": text, "wrap": true }));
        body.push(json!({ "type": "FactSet", "facts": facts }));
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.5",
                    "body": body,
                    "actions": actions
                }
            }]
        })
    };
    match notice.kind {
        NoticeKind::Paused => card(
            pause_facts(notice),
            pause_text(notice),
            json!([
                { "type": "Action.OpenUrl", "title": "Open the image", "url": notice.url }
            ]),
        ),
        NoticeKind::Request | NoticeKind::Reminder => {
            let deadline = notice.expires_at.format("%Y-%m-%d %H:%M UTC");
            card(
                facts(notice.run),
                format!(
                    "{}, your decision is needed before {deadline}.",
                    notice.approver
                ),
                json!([
                    { "type": "Action.OpenUrl", "title": "Approve", "url": format!("{}?decision=approve", notice.url), "style": "positive" },
                    { "type": "Action.OpenUrl", "title": "Reject", "url": format!("{}?decision=reject", notice.url), "style": "destructive" }
                ]),
            )
        }
    }
}

/// An email's subject and bodies.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Email {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body (every value escaped).
    pub html: String,
}

/// The HTML body of an approval email (`email.html`).
#[derive(askama::Template)]
#[template(path = "email.html")]
struct EmailHtml<'a> {
    headline: String,
    alert: Option<String>,
    approver: &'a str,
    deadline: String,
    facts: Vec<(&'static str, String)>,
    url: &'a str,
}

/// The HTML body of a pause notice email (`paused_email.html`).
#[derive(askama::Template)]
#[template(path = "paused_email.html")]
struct PausedEmailHtml<'a> {
    headline: String,
    text: String,
    facts: Vec<(&'static str, String)>,
    url: &'a str,
}

/// The email for `notice`.
pub fn email(notice: &Notice<'_>) -> Email {
    if notice.kind == NoticeKind::Paused {
        let facts = pause_facts(notice);
        let mut text = format!("{}\n\n{}\n\n", headline(notice), pause_text(notice));
        for (k, v) in &facts {
            text.push_str(&format!("{k}: {v}\n"));
        }
        text.push_str(&format!("\nThe image's page: {}\n", notice.url));
        let html = render(&PausedEmailHtml {
            headline: headline(notice),
            text: pause_text(notice),
            facts,
            url: &notice.url,
        });
        return Email {
            subject: headline(notice),
            text,
            html,
        };
    }
    let deadline = notice.expires_at.format("%Y-%m-%d %H:%M UTC");
    let facts = facts(notice.run);
    let alert = patch_view::alert(notice.run);
    let mut text = format!("{}\n\n", headline(notice));
    if let Some(alert) = &alert {
        text.push_str(&format!("{alert}\n\n"));
    }
    text.push_str(&format!(
        "{}, your decision is needed before {deadline}.\n\n",
        notice.approver
    ));
    for (k, v) in &facts {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text.push_str(&format!(
        "\nOpen this link to approve or reject (opening it decides nothing):\n{}\n",
        notice.url
    ));
    let html = render(&EmailHtml {
        headline: headline(notice),
        alert,
        approver: notice.approver,
        deadline: deadline.to_string(),
        facts,
        url: &notice.url,
    });
    Email {
        subject: headline(notice),
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::run::{Trigger, TriggerKind};
    use crate::domain::version::ImageVersion;

    fn run() -> Run {
        Run::new(
            "push-web-abc".parse().unwrap(),
            "web".into(),
            ImageVersion::new(2026, 1125, 0).unwrap(),
            Trigger {
                commit: Some("<script>alert(1)</script>".into()),
                ..Trigger::new(TriggerKind::Push, "github")
            },
            Default::default(),
            Utc::now(),
        )
    }

    #[test]
    fn the_email_escapes_every_value_and_carries_the_link_in_both_bodies() {
        let run = run();
        let notice = Notice {
            kind: NoticeKind::Request,
            run: &run,
            approver: "alice@contoso.com",
            url: "https://f.example/api/approvals/t0k3n".into(),
            expires_at: Utc::now(),
        };
        let mail = email(&notice);
        assert!(!mail.html.contains("<script>"));
        assert!(mail.html.contains("&#60;script&#62;"));
        assert!(mail.text.contains("https://f.example/api/approvals/t0k3n"));
        assert!(
            mail.html
                .contains("https://f.example/api/approvals/t0k3n?decision=approve")
        );
        assert_eq!(mail.subject, "Approve web 2026.1125.0?");
    }
}
