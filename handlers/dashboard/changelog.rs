//! Release notes on the pages: the notes of one release as the run and image
//! pages show them (`notes.html`), and an image's changelog
//! (`/api/dashboard/changelog/{image}`, `changelog.html`): its releases,
//! newest first, each with its notes. Pure: given runs, works out the text.

use askama::Template;

use super::page::{layout, minute, rollback_lines};
use crate::domain::cvrf::Severity;
use crate::domain::declaration::DeclarationRecord;
use crate::domain::patch_gate::{SecurityNote, update_guide_url};
use crate::domain::release_notes::{Span, released_at, spans};
use crate::domain::rollback::{current, current_since};
use crate::domain::run::{ReleaseNotes, Run};
use crate::pages::{Frame, filters, render};

/// Changed files a page lists under each heading before it counts the rest.
const FILES_SHOWN: usize = 50;

/// The previous release, as the notes name it.
pub(super) struct PreviousView<'a> {
    pub(super) version: &'a str,
    pub(super) run_id: &'a str,
    pub(super) released: Option<String>,
}

/// One release's notes, as text for `notes.html`.
pub(super) struct NotesView<'a> {
    pub(super) summary: &'a str,
    pub(super) commit: Option<&'a str>,
    /// The commit message's first line: (is it a code span, its text),
    /// code spans shown in `<code>`.
    pub(super) message: Option<Vec<(bool, String)>>,
    pub(super) reason: Option<&'a str>,
    pub(super) base: Option<&'a str>,
    pub(super) previous: Option<PreviousView<'a>>,
    /// What to say instead of (or before) the lists of changes.
    pub(super) changes_state: Option<&'static str>,
    /// ("Added files", paths), ("Changed files", ...), ("Removed files", ...).
    pub(super) files: Vec<(&'static str, Vec<&'a str>)>,
    pub(super) more_files: usize,
    /// Setting, before, after.
    pub(super) settings: Vec<(String, &'a str, &'a str)>,
    /// The patch level and the CVEs newly fixed, when the build collected evidence.
    pub(super) security: Option<SecurityView<'a>>,
    pub(super) smoke: &'a [String],
    /// The declaration checks, for an image with `[declare]`.
    pub(super) declaration: Option<&'a DeclarationRecord>,
    /// Approver, verdict, when, comment.
    pub(super) approvals: Vec<(&'a str, &'static str, String, &'a str)>,
    pub(super) durations: Vec<(&'static str, String)>,
    pub(super) total: String,
}

/// One CVE newly fixed: its id, its Security Update Guide page, its title, its KB.
pub(super) struct CveView<'a> {
    pub(super) cve: &'a str,
    pub(super) url: Option<String>,
    pub(super) title: &'a str,
    pub(super) kb: &'a str,
}

/// A release's patch level, as the notes show it.
pub(super) struct SecurityView<'a> {
    /// The OS build, the cumulative update and the patch level, in lines.
    pub(super) lines: Vec<String>,
    /// "27 CVEs newly fixed since 2026.1101.0 (build …): 1 Critical, 26 Important".
    pub(super) fixed: Option<String>,
    /// Severity, and its CVEs.
    pub(super) by_severity: Vec<(&'static str, Vec<CveView<'a>>)>,
}

fn security_view(note: &SecurityNote) -> SecurityView<'_> {
    let mut lines = vec![format!(
        "OS build {}{}",
        note.os_build,
        if note.stand_in {
            " (stand-in evidence, not read from Windows)"
        } else {
            ""
        }
    )];
    if let Some(update) = &note.cumulative_update {
        let month = note.month.map_or(String::new(), |m| format!(" of {m}"));
        lines.push(format!(
            "Cumulative update{month}: {} (build {})",
            update.kb, update.fixed_build
        ));
    }
    lines.push(format!("Patch level: {}", note.level));
    let fixed = note.newly_fixed.as_ref();
    SecurityView {
        lines,
        fixed: Some(fixed.map_or_else(
            || "The CVEs fixed since the previous release cannot be listed: this is the first release, or the previous one recorded no patch evidence.".to_string(),
            |f| {
                format!(
                    "{} CVE{} newly fixed since {} (build {}): {}.{}",
                    f.cves.len(),
                    if f.cves.len() == 1 { "" } else { "s" },
                    f.since_version,
                    f.since_build,
                    f.by_severity,
                    if f.unread.is_empty() {
                        String::new()
                    } else {
                        format!(" Months not read: {}.", f.unread.join("; "))
                    }
                )
            },
        )),
        by_severity: Severity::MOST_SEVERE_FIRST
            .iter()
            .map(|severity| {
                let cves = fixed
                    .iter()
                    .flat_map(|f| &f.cves)
                    .filter(|c| c.severity == *severity)
                    .map(|c| CveView {
                        cve: &c.cve,
                        url: update_guide_url(&c.cve),
                        title: &c.title,
                        kb: &c.kb,
                    })
                    .collect::<Vec<_>>();
                (severity.name(), cves)
            })
            .filter(|(_, cves)| !cves.is_empty())
            .collect(),
    }
}

/// The notes of a release as the pages show them.
pub(super) fn notes_view(notes: &ReleaseNotes) -> NotesView<'_> {
    let t = &notes.trigger;
    let changes = notes.changes.as_ref();
    let changes_state = match (&notes.previous, changes) {
        (None, _) => None,
        (Some(_), None) => Some("what changed was not recorded file by file."),
        (Some(_), Some(c)) if c.is_empty() => Some("no input changed."),
        (Some(_), Some(_)) => Some("these inputs changed."),
    };
    let mut shown = 0;
    let mut more_files = 0;
    let files = changes
        .map(|c| {
            [
                ("Added files", &c.added),
                ("Changed files", &c.modified),
                ("Removed files", &c.removed),
            ]
            .into_iter()
            .map(|(label, paths)| {
                let take = FILES_SHOWN.saturating_sub(shown).min(paths.len());
                shown += take;
                more_files += paths.len() - take;
                (label, paths[..take].iter().map(String::as_str).collect())
            })
            .collect()
        })
        .unwrap_or_default();
    let settings = changes
        .map(|c| {
            c.variables
                .iter()
                .map(|v| (format!("variable {}", v.name), v))
                .chain(
                    c.baseline
                        .iter()
                        .chain(&c.base_image)
                        .map(|v| (v.name.clone(), v)),
                )
                .map(|(name, v)| (name, or_not_set(&v.before), or_not_set(&v.after)))
                .collect()
        })
        .unwrap_or_default();
    NotesView {
        summary: &t.summary,
        commit: t.commit.as_deref(),
        message: t.message.as_deref().map(|m| {
            spans(m)
                .into_iter()
                .map(|span| match span {
                    Span::Text(text) => (false, text),
                    Span::Code(code) => (true, code),
                })
                .collect()
        }),
        reason: t.reason.as_deref(),
        base: t.base_image_version.as_deref(),
        previous: notes.previous.as_ref().map(|p| PreviousView {
            version: &p.version,
            run_id: &p.run_id,
            released: p.released_at.map(minute),
        }),
        changes_state,
        files,
        more_files,
        settings,
        security: notes.security.as_deref().map(security_view),
        smoke: &notes.smoke,
        declaration: notes.declaration.as_deref(),
        approvals: notes
            .approvals
            .iter()
            .map(|a| {
                (
                    a.approver.as_str(),
                    a.verdict.past_tense(),
                    minute(a.at),
                    a.comment.as_deref().unwrap_or(""),
                )
            })
            .collect(),
        durations: notes
            .durations
            .iter()
            .map(|d| (d.stage.name(), crate::domain::human_duration(d.seconds)))
            .collect(),
        total: crate::domain::human_duration(notes.total_seconds),
    }
}

fn or_not_set(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(not set)")
}

/// One release of the changelog.
struct Entry<'a> {
    version: String,
    run_id: &'a str,
    /// The latest it was released below (published, not promoted).
    below_latest: Option<&'a str>,
    released: String,
    /// Whether it is the image's current version.
    current: bool,
    /// The rollback that withdrew it, told.
    withdrawn: Option<String>,
    /// The rollbacks that made it current again, told, oldest first.
    made_current: Vec<String>,
    notes: Option<NotesView<'a>>,
}

#[derive(Template)]
#[template(path = "changelog.html")]
struct ChangelogPage<'a> {
    frame: Frame,
    image: &'a str,
    /// The current version and since when, on the page that lists it.
    current: Option<(String, String)>,
    entries: Vec<Entry<'a>>,
    /// The continuation of the next (older) page.
    next: Option<&'a str>,
}

/// `image`'s changelog: `released` (its released runs, one page of them),
/// newest release first, and a link to older ones when `next` is given.
pub fn changelog_page(image: &str, released: &[Run], next: Option<&str>) -> String {
    let mut runs: Vec<&Run> = released.iter().collect();
    runs.sort_by_key(|r| std::cmp::Reverse((released_at(r), r.created_at)));
    let now = current(released);
    let entries = runs
        .into_iter()
        .map(|run| {
            let (withdrawn, made_current) = rollback_lines(run);
            Entry {
                version: run.version.to_string(),
                run_id: &run.id,
                below_latest: run.release.as_ref().and_then(|r| r.below_latest.as_deref()),
                released: minute(released_at(run).unwrap_or(run.updated_at)),
                current: now.is_some_and(|c| c.id == run.id),
                withdrawn,
                made_current,
                notes: run
                    .release
                    .as_ref()
                    .and_then(|r| r.notes.as_ref())
                    .map(|n| notes_view(n)),
            }
        })
        .collect();
    render(&ChangelogPage {
        frame: Frame::with(format!("Changelog of {image}"), layout(false)),
        image,
        current: now.map(|run| (run.version.to_string(), minute(current_since(run).0))),
        entries,
        next,
    })
}
