//! Release notes: what a released version says about itself. What started
//! its run, the release before it and what changed since (input files,
//! packer variables, baseline, base image version), its patch level (the OS
//! build, the cumulative update, and the CVEs newly fixed since the previous
//! release, by severity, each linked to its Security Update Guide page),
//! the smoke test's checks, the declaration checks (each declared check,
//! what it expected and found), who approved with what comment, and how
//! long each stage took.
//!
//! A run records its inputs file by file ([`InputManifest`]) when it is
//! created; the release stage composes the notes from the run and the
//! previous release's run ([`ReleaseNotes::compose`]) and publishes them as
//! `notes` in `image-version.json` and as `release-notes.md`
//! ([`ReleaseNotes::markdown`]). The notes and the manifest are part of the
//! run document (in `run`); this module composes and writes them. Pure: no
//! I/O, the time is given.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::controls::{Lines, escape_controls};
use super::cvrf::Severity;
use super::human_duration;
use super::patch_gate::{SecurityNote, update_guide_url};
use super::run::{
    ApprovalNote, InputChanges, InputManifest, PreviousRelease, ReleaseNotes, Run, Stage,
    StageDuration, TriggerKind, TriggerNote, ValueChange,
};

/// File name of the notes beside `image-version.json`.
pub const NOTES_FILE: &str = "release-notes.md";

/// Changed files the notes name before they summarise the rest.
const FILES_LISTED: usize = 50;
/// Bytes of a commit message's first line (or a comment) the notes show.
const LINE_SHOWN: usize = 200;

impl InputManifest {
    /// What changed from `earlier` to `self`; every list sorted by name.
    pub fn changes_since(&self, earlier: &InputManifest) -> InputChanges {
        let mut changes = InputChanges::default();
        for (path, hash) in &self.files {
            match earlier.files.get(path) {
                None => changes.added.push(path.clone()),
                Some(old) if old != hash => changes.modified.push(path.clone()),
                Some(_) => {}
            }
        }
        changes.removed = earlier
            .files
            .keys()
            .filter(|path| !self.files.contains_key(*path))
            .cloned()
            .collect();
        let names: std::collections::BTreeSet<&String> = self
            .variables
            .keys()
            .chain(earlier.variables.keys())
            .collect();
        for name in names {
            let (before, after) = (earlier.variables.get(name), self.variables.get(name));
            if before != after {
                changes.variables.push(ValueChange {
                    name: name.clone(),
                    before: before.cloned(),
                    after: after.cloned(),
                });
            }
        }
        let change = |name: &str, before: Option<&String>, after: Option<&String>| {
            (before != after).then(|| ValueChange {
                name: name.to_string(),
                before: before.cloned(),
                after: after.cloned(),
            })
        };
        changes.baseline = change(
            "baseline",
            non_empty(&earlier.baseline),
            non_empty(&self.baseline),
        );
        changes.base_image = change(
            "base image",
            earlier.base_image_version.as_ref(),
            self.base_image_version.as_ref(),
        );
        changes
    }
}

fn non_empty(s: &String) -> Option<&String> {
    (!s.is_empty()).then_some(s)
}

impl ReleaseNotes {
    /// The notes of `run`, released at `now` after `previous` (the image's
    /// release before it, if any).
    pub fn compose(run: &Run, previous: Option<&Run>, now: DateTime<Utc>) -> ReleaseNotes {
        let changes =
            previous.and_then(|p| Some(run.inputs.as_ref()?.changes_since(p.inputs.as_ref()?)));
        ReleaseNotes {
            trigger: trigger_note(run),
            previous: previous.map(|p| PreviousRelease {
                version: p.version.to_string(),
                run_id: p.id.to_string(),
                commit: p.trigger.commit.clone(),
                released_at: released_at(p),
            }),
            changes,
            security: SecurityNote::of(
                run.patch.as_deref(),
                run.build
                    .as_ref()
                    .and_then(|b| b.evidence.as_deref())
                    .and_then(|e| e.evidence()),
            )
            .map(Box::new),
            smoke: run.checks.clone(),
            declaration: run.declaration.clone(),
            approvals: run
                .decisions
                .iter()
                .map(|d| ApprovalNote {
                    approver: d.approver.clone(),
                    verdict: d.verdict,
                    at: d.at,
                    comment: d.comment.clone(),
                })
                .collect(),
            durations: run
                .stages
                .iter()
                .filter_map(|s| {
                    let start = s.started_at?;
                    let end = s.finished_at.unwrap_or(now);
                    Some(StageDuration {
                        stage: s.stage,
                        seconds: seconds(start, end),
                    })
                })
                .collect(),
            total_seconds: seconds(run.created_at, now),
        }
    }

    /// The notes as Markdown (`release-notes.md`) of `image`'s `version`.
    /// Text that people wrote (commit messages, comments, reasons, file
    /// names) is escaped, so it reads as text wherever the file is rendered
    /// or printed: no control character passes (`domain::controls`).
    pub fn markdown(&self, image: &str, version: &str) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {} {}\n", text(image), text(version));
        let t = &self.trigger;
        let _ = writeln!(md, "## Trigger\n\n{}.", text(&t.summary));
        if let Some(commit) = &t.commit {
            let _ = write!(md, "\n- Commit: {}", code(commit));
            match &t.message {
                Some(message) => {
                    let _ = writeln!(md, " — {}", text(message));
                }
                None => md.push('\n'),
            }
        }
        if let Some(source) = &t.source {
            let _ = writeln!(md, "- Source: {}", text(source));
        }
        if let Some(reason) = &t.reason {
            let _ = writeln!(md, "- Reason: {}", text(reason));
        }
        if let Some(base) = &t.base_image_version {
            let _ = writeln!(md, "- Base image version: {}", text(base));
        }
        md.push_str("\n## Since the previous release\n\n");
        match &self.previous {
            None => md.push_str("This is the image's first release.\n"),
            Some(p) => {
                let _ = write!(
                    md,
                    "The previous release is {} (run {}",
                    text(&p.version),
                    text(&p.run_id)
                );
                if let Some(commit) = &p.commit {
                    let _ = write!(md, ", commit {}", code(commit));
                }
                if let Some(at) = p.released_at {
                    let _ = write!(md, ", released {}", at.format("%Y-%m-%d %H:%M UTC"));
                }
                md.push_str(").\n\n");
                match &self.changes {
                    None => md.push_str(
                        "This release or the previous one did not record its inputs file by file (a run from before release notes, or an image folder of over a thousand files), so what changed cannot be named.\n",
                    ),
                    Some(c) if c.is_empty() => md.push_str(
                        "No input changed (the run was forced, or the base image changed under the same version).\n",
                    ),
                    Some(c) => changes_markdown(&mut md, c),
                }
            }
        }
        if let Some(security) = &self.security {
            security_markdown(&mut md, security);
        }
        md.push_str("\n## Smoke test\n\n");
        if self.smoke.is_empty() {
            md.push_str("No checks were reported.\n");
        }
        for check in &self.smoke {
            let _ = writeln!(md, "- {}", text(check));
        }
        if let Some(declaration) = &self.declaration {
            let _ = writeln!(
                md,
                "\n## Declared contents\n\n{}, checked by {}.\n",
                text(&declaration.summary()),
                text(&declaration.checker)
            );
            md.push_str("| Check | Expected | Found | Result |\n| --- | --- | --- | --- |\n");
            for c in &declaration.checks {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    cell(&c.name),
                    cell(&c.expected),
                    cell(&c.actual),
                    if c.ok { "passed" } else { "FAILED" }
                );
            }
        }
        md.push_str("\n## Approval\n\n");
        if self.approvals.is_empty() {
            md.push_str("No decision was recorded.\n");
        }
        for a in &self.approvals {
            let _ = write!(
                md,
                "- {} {} at {}",
                text(&a.approver),
                a.verdict.past_tense(),
                a.at.format("%Y-%m-%d %H:%M UTC")
            );
            match &a.comment {
                Some(comment) => {
                    let _ = writeln!(md, ": {}", text(comment));
                }
                None => md.push('\n'),
            }
        }
        md.push_str("\n## Durations\n\n| Stage | Took |\n| --- | --- |\n");
        for d in &self.durations {
            let _ = writeln!(md, "| {} | {} |", d.stage.name(), human_duration(d.seconds));
        }
        let _ = writeln!(md, "| whole run | {} |", human_duration(self.total_seconds));
        while md.contains("\n\n\n") {
            md = md.replace("\n\n\n", "\n\n");
        }
        md
    }
}

/// The patch level, and the CVEs newly fixed by severity, each linked to
/// its Security Update Guide page.
fn security_markdown(md: &mut String, note: &SecurityNote) {
    md.push_str("\n## Security updates\n\n");
    let _ = write!(md, "- OS build: {}", note.os_build);
    if note.stand_in {
        md.push_str(" (stand-in evidence, not read from Windows)");
    }
    md.push('\n');
    if let Some(update) = &note.cumulative_update {
        let month = note.month.map_or(String::new(), |m| format!(" of {m}"));
        let _ = writeln!(
            md,
            "- Cumulative update{month}: {} (build {})",
            text(&update.kb),
            update.fixed_build
        );
    }
    let _ = writeln!(md, "- Patch level: {}", text(&note.level));
    let Some(fixed) = &note.newly_fixed else {
        md.push_str("\nThe CVEs fixed since the previous release cannot be listed: this is the first release, or the previous one recorded no patch evidence.\n");
        return;
    };
    let _ = writeln!(
        md,
        "\n{} CVE{} newly fixed since {} (build {}): {}.",
        fixed.cves.len(),
        if fixed.cves.len() == 1 { "" } else { "s" },
        text(&fixed.since_version),
        fixed.since_build,
        fixed.by_severity
    );
    for severity in Severity::MOST_SEVERE_FIRST {
        let of: Vec<_> = fixed
            .cves
            .iter()
            .filter(|f| f.severity == severity)
            .collect();
        if of.is_empty() {
            continue;
        }
        let _ = writeln!(md, "\n### {severity}\n");
        for fix in of {
            let cve = match update_guide_url(&fix.cve) {
                Some(url) => format!("[{}]({url})", text(&fix.cve)),
                None => text(&fix.cve),
            };
            let score = fix.cvss.map_or(String::new(), |s| format!("CVSS {s:.1}, "));
            let _ = writeln!(
                md,
                "- {cve} — {} ({score}{})",
                text(&fix.title),
                text(&fix.kb)
            );
        }
    }
    if !fixed.unread.is_empty() {
        let _ = writeln!(
            md,
            "\nMonths not read (their CVEs may be missing above): {}.",
            text(&fixed.unread.join("; "))
        );
    }
}

fn changes_markdown(md: &mut String, c: &InputChanges) {
    let lists = [
        ("Added", &c.added),
        ("Changed", &c.modified),
        ("Removed", &c.removed),
    ];
    for (label, files) in lists {
        if files.is_empty() {
            continue;
        }
        let _ = writeln!(md, "{label} files:\n");
        for path in files.iter().take(FILES_LISTED) {
            let _ = writeln!(md, "- {}", code(path));
        }
        if files.len() > FILES_LISTED {
            let _ = writeln!(md, "- and {} more", files.len() - FILES_LISTED);
        }
        md.push('\n');
    }
    let value = |v: &Option<String>| v.as_deref().map_or("(not set)".to_string(), cell);
    let rows: Vec<(String, &ValueChange)> = c
        .variables
        .iter()
        .map(|v| (format!("variable {}", cell_code(&v.name)), v))
        .chain(
            c.baseline
                .iter()
                .chain(&c.base_image)
                .map(|v| (cell(&v.name), v)),
        )
        .collect();
    if !rows.is_empty() {
        md.push_str("| Setting | Before | After |\n| --- | --- | --- |\n");
    }
    for (name, change) in rows {
        let _ = writeln!(
            md,
            "| {name} | {} | {} |",
            value(&change.before),
            value(&change.after)
        );
    }
}

/// The trigger told in one sentence, and its facts.
fn trigger_note(run: &Run) -> TriggerNote {
    let t = &run.trigger;
    let short = |c: &str| c.chars().take(12).collect::<String>();
    let mut summary = match t.kind {
        TriggerKind::Push => match (&t.commit, &t.branch) {
            (Some(c), Some(b)) => format!("push of {} to {b}", short(c)),
            (Some(c), None) => format!("push of {}", short(c)),
            _ => "push".to_string(),
        },
        TriggerKind::PatchTuesday => "Patch Tuesday rebuild".to_string(),
        TriggerKind::OutOfBand => "out-of-band run".to_string(),
        TriggerKind::BaseImageUpdate => match &t.base_image_version {
            Some(v) => format!("base image update to {v}"),
            None => "base image update".to_string(),
        },
    };
    if let Some(actor) = &t.actor {
        let _ = write!(summary, " by {actor}");
    }
    TriggerNote {
        kind: t.kind,
        summary,
        commit: t.commit.clone(),
        message: t
            .message
            .as_deref()
            .and_then(|m| m.lines().next())
            .map(|line| super::truncate(line.trim(), LINE_SHOWN)),
        source: run.source.as_ref().map(|s| s.describe()),
        reason: t.reason.clone(),
        base_image_version: t.base_image_version.clone(),
    }
}

/// When `run` was released: the end of its release stage.
pub fn released_at(run: &Run) -> Option<DateTime<Utc>> {
    run.stage(Stage::Release).finished_at
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    u64::try_from((to - from).num_seconds()).unwrap_or(0)
}

/// Text people wrote, on one line, as Markdown that renders to it: every
/// control character shown as `<U+XXXX>`, cut to [`LINE_SHOWN`] bytes, its
/// code spans (`` `like this` ``, as CommonMark reads them) kept as code
/// spans, and every other character Markdown or HTML would act on escaped.
fn text(s: &str) -> String {
    let line = one_line(s);
    let mut out = String::with_capacity(line.len() + 8);
    for (i, span) in spans(&line).into_iter().enumerate() {
        match span {
            Span::Text(t) => out.push_str(&escape_inline(&t, i == 0)),
            Span::Code(c) => out.push_str(&code(&c)),
        }
    }
    out
}

/// Text people wrote, for a table cell: as [`text`], but backticks are
/// escaped too (a `|` in a code span would end the cell).
fn cell(s: &str) -> String {
    escape_inline(&one_line(s), true)
}

/// `s` on one line, control characters escaped, cut to [`LINE_SHOWN`].
fn one_line(s: &str) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    super::truncate(&escape_controls(&line, Lines::Escape), LINE_SHOWN)
}

/// Markdown for literal text: the characters CommonMark (and GitHub's
/// tables and strikethrough) would act on escaped, the rest as it is. An
/// `_` between two letters or digits opens nothing and stays bare
/// (`base_image`, `1.2.3_rc`), and so do `.`, `-`, `(`, `)`; at the start
/// of a line (`line_start`) what would begin a list or a heading is escaped.
fn escape_inline(text: &str, line_start: bool) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    // A list item number: digits then `.` or `)` then a space or the end.
    let digits = chars.iter().take_while(|c| c.is_ascii_digit()).count();
    let numbered = line_start
        && (1..=9).contains(&digits)
        && matches!(chars.get(digits), Some('.' | ')'))
        && chars.get(digits + 1).is_none_or(|c| *c == ' ');
    for (i, &ch) in chars.iter().enumerate() {
        let word = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_some_and(|c| c.is_alphanumeric())
        };
        let escape = match ch {
            '\\' | '`' | '*' | '[' | ']' | '<' | '>' | '|' | '&' | '~' | '#' => true,
            '_' => !(word(i.checked_sub(1)) && word(Some(i + 1))),
            '-' | '+' | '=' => line_start && i == 0,
            '.' | ')' => numbered && i == digits,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Text inside a code span, on one line, every control character shown
/// as `<U+XXXX>`, fenced so that it renders exactly as it is: the fence is
/// one backtick longer than the longest run of backticks inside, and a
/// space pads text that starts or ends with a backtick (or with spaces at
/// both ends, which CommonMark would strip).
fn code(s: &str) -> String {
    let line = super::truncate(
        &escape_controls(&s.replace(['\n', '\r'], " "), Lines::Escape),
        LINE_SHOWN,
    );
    let mut longest = 0;
    let mut run = 0;
    for ch in line.chars() {
        run = if ch == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = line.starts_with('`')
        || line.ends_with('`')
        || (line.starts_with(' ') && line.ends_with(' ') && !line.trim().is_empty())
        || line.is_empty();
    let pad = if pad { " " } else { "" };
    format!("{fence}{pad}{line}{pad}{fence}")
}

/// A code span for a table cell: a name with no backtick or `|` (a packer
/// variable's), or the name as escaped text.
fn cell_code(s: &str) -> String {
    if s.contains(['`', '|']) {
        cell(s)
    } else {
        code(s)
    }
}

/// A piece of text people wrote: literal text, or the content of one of
/// its code spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Span {
    /// Literal text.
    Text(String),
    /// A code span's content, as CommonMark renders it.
    Code(String),
}

/// `text` cut into literal text and code spans, as CommonMark reads them:
/// a run of backticks opens a code span that the next run of as many
/// backticks closes (a run with no match is literal text), and a space is
/// stripped from both ends of a span that has one at each and is not all
/// spaces. The dashboard shows code spans in `<code>`; the Markdown keeps them.
pub fn spans(text: &str) -> Vec<Span> {
    let bytes = text.as_bytes();
    let run_at = |i: usize| bytes[i..].iter().take_while(|&&b| b == b'`').count();
    let mut out = Vec::new();
    let (mut literal_from, mut i) = (0, 0);
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let opening = run_at(i);
        let content_from = i + opening;
        let mut j = content_from;
        let mut closing = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let run = run_at(j);
                if run == opening {
                    closing = Some(j);
                    break;
                }
                j += run;
            } else {
                j += 1;
            }
        }
        let Some(close) = closing else {
            i = content_from;
            continue;
        };
        if literal_from < i {
            out.push(Span::Text(text[literal_from..i].to_string()));
        }
        let content = &text[content_from..close];
        let stripped = if content.len() >= 2
            && content.starts_with(' ')
            && content.ends_with(' ')
            && !content.trim().is_empty()
        {
            &content[1..content.len() - 1]
        } else {
            content
        };
        out.push(Span::Code(stripped.to_string()));
        i = close + opening;
        literal_from = i;
    }
    if literal_from < text.len() {
        out.push(Span::Text(text[literal_from..].to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::approval::{Decision, Verdict};
    use crate::domain::run::{RunId, Trigger};
    use crate::domain::version::ImageVersion;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 10, 12, minute, 0).unwrap()
    }

    fn manifest(
        files: &[(&str, &str)],
        vars: &[(&str, &str)],
        base: Option<&str>,
    ) -> InputManifest {
        InputManifest {
            files: files
                .iter()
                .map(|(p, h)| (p.to_string(), h.to_string()))
                .collect(),
            variables: vars
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            baseline: "2024.1".into(),
            base_image_version: base.map(String::from),
        }
    }

    fn run(id: &str, version: &str, inputs: Option<InputManifest>) -> Run {
        let trigger = Trigger {
            commit: Some("3f2a9c1d0e4b5a6978877665544332211ffeeddc".into()),
            branch: Some("main".into()),
            actor: Some("alice".into()),
            message: Some("Harden RDP <script>\n\nLonger body".into()),
            ..Trigger::new(TriggerKind::Push, "github")
        };
        let mut run = Run::new(
            id.parse::<RunId>().unwrap(),
            "example".into(),
            version.parse::<ImageVersion>().unwrap(),
            trigger,
            Default::default(),
            at(0),
        );
        run.inputs = inputs;
        run
    }

    #[test]
    fn changes_name_each_added_removed_and_modified_file_and_each_setting() {
        let before = manifest(
            &[
                ("build.pkr.hcl", "a"),
                ("scripts/old.ps1", "b"),
                ("scripts/same.ps1", "c"),
            ],
            &[("vm_size", "D2s"), ("gone", "x")],
            Some("20348.1"),
        );
        let mut after = manifest(
            &[
                ("build.pkr.hcl", "A"),
                ("scripts/new.ps1", "d"),
                ("scripts/same.ps1", "c"),
            ],
            &[("vm_size", "D4s"), ("added", "y")],
            Some("20348.2"),
        );
        after.baseline = "2025.1".into();
        let c = after.changes_since(&before);
        assert_eq!(c.added, ["scripts/new.ps1"]);
        assert_eq!(c.removed, ["scripts/old.ps1"]);
        assert_eq!(c.modified, ["build.pkr.hcl"]);
        let vars: Vec<(&str, Option<&str>, Option<&str>)> = c
            .variables
            .iter()
            .map(|v| (v.name.as_str(), v.before.as_deref(), v.after.as_deref()))
            .collect();
        assert_eq!(
            vars,
            [
                ("added", None, Some("y")),
                ("gone", Some("x"), None),
                ("vm_size", Some("D2s"), Some("D4s"))
            ]
        );
        assert_eq!(c.baseline.unwrap().after.as_deref(), Some("2025.1"));
        let base = c.base_image.unwrap();
        assert_eq!(
            (base.before.as_deref(), base.after.as_deref()),
            (Some("20348.1"), Some("20348.2"))
        );
    }

    #[test]
    fn notes_name_the_commit_the_previous_release_the_changed_file_the_approver_and_durations() {
        let mut previous = run(
            "push-old",
            "2026.1110.1",
            Some(manifest(&[("build.pkr.hcl", "a")], &[], None)),
        );
        previous.stages[Stage::Release.index()].finished_at = Some(at(5));
        let mut current = run(
            "push-new",
            "2026.1110.2",
            Some(manifest(&[("build.pkr.hcl", "b")], &[], None)),
        );
        current.checks = vec!["smoke: OK".into()];
        current.decisions.push(Decision {
            approver: "platform-lead".into(),
            verdict: Verdict::Approve,
            at: at(20),
            comment: Some("looks *good*".into()),
            via: "link".into(),
            token_id: Some("t-1".into()),
            recorded_by: None,
        });
        current.stages[Stage::Validate.index()].started_at = Some(at(1));
        current.stages[Stage::Validate.index()].finished_at = Some(at(2));
        current.stages[Stage::Release.index()].started_at = Some(at(21));

        let notes = ReleaseNotes::compose(&current, Some(&previous), at(22));
        assert_eq!(notes.previous.as_ref().unwrap().version, "2026.1110.1");
        assert_eq!(notes.previous.as_ref().unwrap().released_at, Some(at(5)));
        assert_eq!(notes.changes.as_ref().unwrap().modified, ["build.pkr.hcl"]);
        assert_eq!(
            notes.trigger.message.as_deref(),
            Some("Harden RDP <script>")
        );
        assert_eq!(notes.total_seconds, 22 * 60);
        assert_eq!(
            notes.durations,
            [
                StageDuration {
                    stage: Stage::Validate,
                    seconds: 60
                },
                StageDuration {
                    stage: Stage::Release,
                    seconds: 60
                },
            ]
        );

        let md = notes.markdown("example", "2026.1110.2");
        assert!(
            md.contains("`3f2a9c1d0e4b5a6978877665544332211ffeeddc`"),
            "{md}"
        );
        assert!(
            md.contains("Harden RDP \\<script\\>"),
            "user text is escaped: {md}"
        );
        assert!(md.contains("previous release is 2026.1110.1"), "{md}");
        assert!(md.contains("- `build.pkr.hcl`"), "{md}");
        assert!(
            md.contains("platform-lead approved at 2026-11-10 12:20 UTC: looks \\*good\\*"),
            "{md}"
        );
        assert!(md.contains("| validate | 1 min 0 s |"), "{md}");
        assert!(!md.contains("t-1"), "token ids stay out of the notes");
    }

    #[test]
    fn the_notes_list_each_declared_check_with_what_it_expected_and_found() {
        use crate::domain::declaration::{CheckResult, DeclarationRecord, DeclareSettings};
        let declare = DeclareSettings {
            features: vec!["Web-Server".into()],
            services: vec!["W3SVC".into()],
            ..DeclareSettings::default()
        };
        let mut current = run("push-new", "2026.1110.2", Some(InputManifest::default()));
        let without = ReleaseNotes::compose(&current, None, at(1));
        assert_eq!(without.declaration, None);
        assert!(
            !without
                .markdown("example", "v")
                .contains("Declared contents")
        );
        current.declaration = Some(Box::new(DeclarationRecord::judge(
            &declare,
            "scripts/check.sh on this machine".into(),
            vec![
                CheckResult {
                    name: "feature:Web-Server".into(),
                    expected: "Installed".into(),
                    actual: "Installed".into(),
                    ok: true,
                },
                CheckResult {
                    name: "service:W3SVC".into(),
                    expected: "Running".into(),
                    actual: "Running | pid 4".into(),
                    ok: true,
                },
            ],
            None,
        )));
        let notes = ReleaseNotes::compose(&current, None, at(1));
        assert_eq!(notes.declaration, current.declaration);
        let md = notes.markdown("example", "v");
        assert!(
            md.contains("## Declared contents\n\n2 of 2 declared checks passed, checked by scripts/check.sh on this machine."),
            "{md}"
        );
        assert!(
            md.contains("| feature:Web-Server | Installed | Installed | passed |"),
            "{md}"
        );
        assert!(
            md.contains("| service:W3SVC | Running | Running \\| pid 4 | passed |"),
            "a found value cannot break the table: {md}"
        );
    }

    #[test]
    fn a_first_release_and_a_previous_release_without_inputs_say_so() {
        let current = run("push-new", "2026.1110.2", Some(InputManifest::default()));
        let first = ReleaseNotes::compose(&current, None, at(1));
        assert!(first.markdown("example", "v").contains("first release"));
        let old = run("push-old", "2026.1110.1", None);
        let notes = ReleaseNotes::compose(&current, Some(&old), at(1));
        assert_eq!(notes.changes, None);
        assert!(notes.markdown("example", "v").contains("cannot be named"));
    }

    #[test]
    fn controls_in_a_record_written_before_runs_escaped_them_are_escaped_in_the_markdown() {
        // A record as a version that kept the push's text raw stored it.
        let mut current = run(
            "push-new",
            "2026.1110.2",
            Some(manifest(&[("rtl\u{202e}txt.exe", "h")], &[], None)),
        );
        current.trigger.message = Some("Fix \u{1b}[2J\u{7}".into());
        current.trigger.actor = Some("eve\u{202e}".into());
        let old = run("push-old", "2026.1110.1", Some(InputManifest::default()));
        let md = ReleaseNotes::compose(&current, Some(&old), at(1)).markdown("example", "v");
        assert!(
            !md.chars()
                .any(|c| super::super::controls::is_control(c) && c != '\n'),
            "{md:?}"
        );
        for expected in [
            "Fix \\<U+001B\\>\\[2J\\<U+0007\\>",
            "by eve\\<U+202E\\>",
            "- `rtl<U+202E>txt.exe`",
        ] {
            assert!(md.contains(expected), "{expected:?} missing from:\n{md}");
        }
    }

    #[test]
    fn a_long_list_of_files_is_cut_with_a_count() {
        let files: Vec<(String, String)> =
            (0..60).map(|i| (format!("f{i:02}"), "h".into())).collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let after = manifest(&refs, &[], None);
        let mut md = String::new();
        changes_markdown(&mut md, &after.changes_since(&InputManifest::default()));
        assert!(md.contains("- and 10 more"), "{md}");
        assert_eq!(md.matches("- `f").count(), FILES_LISTED);
    }

    /// What a CommonMark renderer (with GitHub's tables and
    /// strikethrough) makes of `md`: its text and code spans, in order,
    /// neighbouring text joined; `true` marks a code span.
    fn rendered(md: &str) -> Vec<(bool, String)> {
        use pulldown_cmark::{Event, Options, Parser};
        let mut out: Vec<(bool, String)> = Vec::new();
        let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
        for event in Parser::new_ext(md, options) {
            let (code, text) = match event {
                Event::Text(t) => (false, t.to_string()),
                Event::Code(c) => (true, c.to_string()),
                Event::SoftBreak | Event::HardBreak => (false, "\n".to_string()),
                Event::Start(_) | Event::End(_) => continue,
                other => panic!("{md:?} renders {other:?}, not text"),
            };
            match out.last_mut() {
                Some((false, last)) if !code => last.push_str(&text),
                _ => out.push((code, text)),
            }
        }
        out
    }

    /// The text a line of Markdown renders to, code spans included.
    fn plain(md: &str) -> String {
        rendered(md).into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn text_people_wrote_renders_as_written_with_its_code_spans_as_code() {
        for (written, expected) in [
            (
                "Bump `packer` to 1.6.6 (and *fix* 1_000 <b>x</b> | a_b)",
                vec![
                    (false, "Bump "),
                    (true, "packer"),
                    (false, " to 1.6.6 (and *fix* 1_000 <b>x</b> | a_b)"),
                ],
            ),
            (
                "use ``a`b`` here",
                vec![(false, "use "), (true, "a`b"), (false, " here")],
            ),
            ("`` `tick` ``", vec![(true, "`tick`")]),
            (
                "one ` stray backtick",
                vec![(false, "one ` stray backtick")],
            ),
            ("- not a list", vec![(false, "- not a list")]),
            (
                "1. not a list either",
                vec![(false, "1. not a list either")],
            ),
            ("# not a heading #", vec![(false, "# not a heading #")]),
            (
                "2026.1125.0 and 10.0.20348.4529",
                vec![(false, "2026.1125.0 and 10.0.20348.4529")],
            ),
            (
                "base_w2022_datacenter _em_ __strong__",
                vec![(false, "base_w2022_datacenter _em_ __strong__")],
            ),
            (
                "&amp; &#35; ~~gone~~ [x](y) ![i](j) <https://a>",
                vec![(false, "&amp; &#35; ~~gone~~ [x](y) ![i](j) <https://a>")],
            ),
            ("back\\slash\\", vec![(false, "back\\slash\\")]),
        ] {
            let md = format!("- {}", text(written));
            let expected: Vec<(bool, String)> = expected
                .into_iter()
                .map(|(c, t)| (c, t.to_string()))
                .collect();
            assert_eq!(rendered(&md), expected, "{written:?} as {md:?}");
        }
        // Prose, not only list items: at the start of a paragraph too.
        assert_eq!(plain(&text("+ 1) # x")), "+ 1) # x");
        // Identifiers are shown bare where nothing needs escaping.
        assert_eq!(text("2026.1125.0"), "2026.1125.0");
        assert_eq!(text("base_w2022"), "base_w2022");
        assert_eq!(text("KB5071547 (32 CVEs)"), "KB5071547 (32 CVEs)");
    }

    #[test]
    fn code_spans_and_table_cells_render_exactly_what_they_hold() {
        for name in [
            "build.pkr.hcl",
            "weird`name`.ps1",
            "``",
            "` x",
            " padded ",
            "a|b",
            "*_[]<>",
        ] {
            assert_eq!(
                rendered(&format!("- {}", code(name))),
                [(true, name.to_string())],
                "{name:?} as {}",
                code(name)
            );
        }
        for value in ["a|b", "`code|pipe`", "- x", "1. y", "<script>", "x_y_z"] {
            let table = format!(
                "| Setting | Before |\n| --- | --- |\n| {} | {} |",
                cell_code("vm_size"),
                cell(value)
            );
            assert_eq!(
                plain(&table),
                format!("SettingBeforevm_size{value}"),
                "{table}"
            );
        }
    }

    fn manifests() -> impl Strategy<Value = InputManifest> {
        (
            prop::collection::btree_map("[a-c]{1,2}", "[xy]", 0..6),
            prop::collection::btree_map("[a-c]", "[xy]", 0..3),
            prop::option::of("[12]"),
        )
            .prop_map(|(files, variables, base)| InputManifest {
                files,
                variables,
                baseline: String::new(),
                base_image_version: base,
            })
    }

    proptest! {
        /// Whatever a person writes (without backticks, on one line) renders
        /// as exactly that text; whatever a code span holds renders as that code.
        #[test]
        fn any_text_renders_as_written_and_any_code_as_itself(
            written in "[a-z0-9 _*\\\\\\[\\]<>|&~#+=.()!:;-]{1,40}",
            held in "[a-z `|*_<>]{1,20}",
        ) {
            let one = one_line(&written);
            prop_assume!(!one.is_empty());
            prop_assert_eq!(plain(&format!("- {}", text(&written))), one.clone());
            prop_assert_eq!(plain(&text(&written)), one);
            let spans: Vec<String> = rendered(&format!("x {} y", code(&held)))
                .into_iter()
                .filter(|(code, _)| *code)
                .map(|(_, t)| t)
                .collect();
            prop_assert_eq!(spans, vec![held]);
        }

        /// Added, removed and modified are disjoint and account for every
        /// path whose hash differs; nothing changes between a manifest and itself.
        #[test]
        fn the_file_diff_is_exact(a in manifests(), b in manifests()) {
            prop_assert!(b.changes_since(&b).is_empty());
            let c = b.changes_since(&a);
            let paths: std::collections::BTreeSet<&String> = a.files.keys().chain(b.files.keys()).collect();
            for path in paths {
                let differs = a.files.get(path) != b.files.get(path);
                let named = [&c.added, &c.removed, &c.modified]
                    .iter()
                    .filter(|list| list.contains(path))
                    .count();
                prop_assert_eq!(named, usize::from(differs), "{}", path);
            }
            prop_assert_eq!(c.is_empty(), a == b);
        }
    }
}
