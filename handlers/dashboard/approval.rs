//! The approval page (`approval.html`): what an approver decides on, told
//! whole, on a phone as well as on a desk. The image and version; why the
//! run exists (the commit with its message and who pushed it, the Patch
//! Tuesday month, the base image, the out-of-band reason and who asked);
//! what changed since the previous release, file by file; the smoke test's
//! checks, the declaration checks and the patch level; who decided so far and the time left; and a
//! link to the run's page.
//!
//! What changed is what the release notes will say: the run's inputs and
//! the previous release's (the image's highest released version below the
//! run's that no rollback withdrew), compared file by file by the SHA-256
//! of each file of the image folder in each run's source snapshot, with the
//! packer variables, baseline and base image version
//! ([`crate::domain::release_notes`]). `image.toml` is not a build input
//! and is not compared file by file; the snapshot's hash of the whole image
//! folder says when it alone changed. Pure: given records, returns HTML.

use askama::Template;
use chrono::{DateTime, Utc};

use super::changelog::{NotesView, notes_view};
use crate::domain::run::{ReleaseNotes, Run, TriggerKind};
use crate::pages::{Frame, filters, render};

/// What the page is made from.
pub struct ApprovalStory<'a> {
    /// The run that waits.
    pub run: &'a Run,
    /// The approver the link was issued to.
    pub approver: &'a str,
    /// Whom the decision is recorded for (the approver, and who that is
    /// when the deployment's directory says).
    pub recorded_for: &'a str,
    /// The image's release before this run's version, when it has one.
    pub previous: Option<&'a Run>,
    /// The image's latest version in the gallery, when it is above the run's.
    pub latest_above: Option<String>,
    /// The longest comment kept.
    pub max_comment: usize,
    /// Now (for the time left).
    pub now: DateTime<Utc>,
}

/// One approver and where their decision stands.
struct ApproverRow<'a> {
    name: &'a str,
    /// "approved 2026-11-25 14:03 UTC", "not decided yet".
    state: String,
    comment: &'a str,
}

#[derive(Template)]
#[template(path = "approval.html")]
struct ApprovalPage<'a> {
    frame: Frame,
    approver: &'a str,
    recorded_for: &'a str,
    run_id: &'a str,
    image: &'a str,
    version: String,
    /// "71 h 59 min", or "none: the request has expired".
    left: String,
    expires: String,
    /// The run's trigger, as (name, value) facts.
    trigger: Vec<(&'static str, String)>,
    /// The release notes as they would be published: the commit message,
    /// what changed since the previous release, the security updates.
    notes: NotesView<'a>,
    /// When only `image.toml` changed, or nothing in the image folder at
    /// all: said, from the snapshots' image hashes.
    folder: Option<&'static str>,
    /// The test stage's checks.
    checks: &'a [String],
    /// The declaration checks, each with what it expected and found.
    declaration: Option<&'a crate::domain::declaration::DeclarationRecord>,
    /// The patch level (`domain::patch_view`).
    patch: Vec<(&'static str, String)>,
    /// "Patch level not verified", or a failed gate, shown first.
    patch_alert: Option<String>,
    required: u32,
    approvers: Vec<ApproverRow<'a>>,
    latest_above: Option<String>,
    max_comment: usize,
}

/// The approval page of `story`'s run.
pub fn approval_page(story: &ApprovalStory<'_>) -> String {
    let run = story.run;
    let request = run.approval.as_ref();
    let expires_at = request.map(|r| r.expires_at);
    let left = match expires_at {
        Some(at) if at > story.now => crate::domain::human_duration(
            u64::try_from((at - story.now).num_seconds()).unwrap_or(0),
        ),
        _ => "none: the request has expired".to_string(),
    };
    let approvers = request
        .map(|r| {
            r.approvers
                .iter()
                .map(|name| {
                    let decision = run.decisions.iter().find(|d| &d.approver == name);
                    ApproverRow {
                        name,
                        state: decision.map_or_else(
                            || "not decided yet".to_string(),
                            |d| format!("{} {}", d.verdict.past_tense(), super::page::minute(d.at)),
                        ),
                        comment: decision.and_then(|d| d.comment.as_deref()).unwrap_or(""),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let notes = ReleaseNotes::compose(run, story.previous, story.now);
    render(&ApprovalPage {
        frame: Frame::new(format!("Approve {} {}?", run.image, run.version)),
        approver: story.approver,
        recorded_for: story.recorded_for,
        run_id: &run.id,
        image: &run.image,
        version: run.version.to_string(),
        left,
        expires: expires_at
            .map(super::page::minute)
            .unwrap_or_else(|| "—".into()),
        trigger: trigger_facts(run),
        notes: notes_view(&notes),
        folder: folder_change(run, story.previous),
        checks: &run.checks,
        declaration: run.declaration.as_deref(),
        patch: crate::domain::patch_view::facts(run),
        patch_alert: crate::domain::patch_view::alert(run),
        required: request.map_or(1, |r| r.required),
        approvers,
        latest_above: story.latest_above.clone(),
        max_comment: story.max_comment,
    })
}

/// Why the run exists, as facts: what started it, the commit and who
/// pushed it, the branch, the base image version, the reason (the Patch
/// Tuesday month, the out-of-band reason), who asked.
fn trigger_facts(run: &Run) -> Vec<(&'static str, String)> {
    let t = &run.trigger;
    let kind = match t.kind {
        TriggerKind::Push => "a push",
        TriggerKind::PatchTuesday => "the Patch Tuesday rebuild",
        TriggerKind::OutOfBand => "an out-of-band run",
        TriggerKind::BaseImageUpdate => "a new base image",
    };
    let mut facts = vec![("Started by", format!("{kind} ({})", t.source))];
    if let Some(commit) = &t.commit {
        facts.push(("Commit", commit.clone()));
    }
    if let Some(actor) = &t.actor {
        let who = match t.kind {
            TriggerKind::Push => "Pushed by",
            _ => "Asked by",
        };
        facts.push((who, actor.clone()));
    }
    if let Some(branch) = &t.branch {
        facts.push(("Branch", branch.clone()));
    }
    if let Some(reason) = &t.reason {
        facts.push(("Reason", reason.clone()));
    }
    if let Some(base) = &t.base_image_version {
        facts.push(("Base image version", base.clone()));
    }
    if let Some(source) = &run.source {
        facts.push(("Source", source.describe()));
    }
    facts
}

/// What the snapshots' hashes of the whole image folder add to the file
/// by file comparison (which leaves `image.toml` out).
fn folder_change(run: &Run, previous: Option<&Run>) -> Option<&'static str> {
    let (now, before) = (run.source.as_ref()?, previous?.source.as_ref()?);
    let files_changed = match (&run.inputs, &previous?.inputs) {
        (Some(a), Some(b)) => !a.changes_since(b).is_empty(),
        _ => return None,
    };
    match (now.image_hash == before.image_hash, files_changed) {
        (true, _) => Some("The image folder is byte for byte the one the previous release built."),
        (false, false) => Some(
            "Only image.toml changed: its approval and test settings, which are not build inputs.",
        ),
        (false, true) => None,
    }
}
