//! Git tags on released commits: when a run that built a commit is released,
//! that commit is tagged `<image>/<version>` in the repository the push came
//! from. This module owns the rules, with no I/O: the tag's name (checked
//! against git's ref-name rules), what is recorded on the run after a try,
//! and when a failed tag is tried again. The records themselves are part of
//! the run document ([`GitTagRecord`], and the trigger's `RepositoryRef`, in
//! `run`).
//!
//! A tag that already exists on the same commit is success; one on another
//! commit is a conflict, recorded and never moved; a failure never fails the
//! release: it is recorded and tried again later.

use std::fmt;

use chrono::{DateTime, Duration, Utc};

use super::run::{GitTagRecord, GitTagState, Run, RunStatus};

/// A tag's name, `<image>/<version>`, valid as a git ref name under `refs/tags/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagName(String);

/// Why a text cannot name a git tag.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` cannot be a git tag: {rule}")]
pub struct TagNameError {
    /// The refused name, cut short and with control characters escaped.
    name: String,
    /// The rule of `git check-ref-format` it breaks.
    rule: &'static str,
}

impl TagName {
    /// The tag of `image` at `version`: `<image>/<version>`.
    pub fn new(image: &str, version: &impl fmt::Display) -> Result<TagName, TagNameError> {
        TagName::parse(&format!("{image}/{version}"))
    }

    /// A tag name given whole, checked against git's rules.
    pub fn parse(name: &str) -> Result<TagName, TagNameError> {
        match ref_name_rule_broken(name) {
            None => Ok(TagName(name.to_string())),
            Some(rule) => Err(TagNameError {
                name: name.chars().take(80).flat_map(char::escape_debug).collect(),
                rule,
            }),
        }
    }

    /// The name as given (`example/1.2.3`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full ref name (`refs/tags/example/1.2.3`).
    pub fn ref_name(&self) -> String {
        format!("refs/tags/{}", self.0)
    }
}

impl fmt::Display for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The first of git's ref-name rules (`git check-ref-format`, for a name
/// under `refs/tags/`, without `--allow-onelevel` being needed) that `name`
/// breaks, if any.
pub fn ref_name_rule_broken(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name == "@" {
        return Some("it is the single character `@`");
    }
    if name.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Some("it contains a control character");
    }
    if let Some(c) = name.chars().find(|c| " ~^:?*[\\".contains(*c)) {
        return Some(match c {
            ' ' => "it contains a space",
            '~' => "it contains `~`",
            '^' => "it contains `^`",
            ':' => "it contains `:`",
            '?' => "it contains `?`",
            '*' => "it contains `*`",
            '[' => "it contains `[`",
            _ => "it contains `\\`",
        });
    }
    if name.contains("..") {
        return Some("it contains `..`");
    }
    if name.contains("@{") {
        return Some("it contains `@{`");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Some("it begins or ends with `/` or has an empty component");
    }
    if name.ends_with('.') {
        return Some("it ends with `.`");
    }
    if name.starts_with('-') {
        // Not a ref-name rule: `git tag` refuses such names (and would read one as an option).
        return Some("it begins with `-`");
    }
    for component in name.split('/') {
        if component.starts_with('.') {
            return Some("a component begins with `.`");
        }
        if component.ends_with(".lock") {
            return Some("a component ends with `.lock`");
        }
    }
    None
}

/// How one try at tagging ended, as a git host answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagOutcome {
    /// The tag was made.
    Tagged,
    /// The tag was already there, on the same commit.
    AlreadyThere,
    /// The tag is there on another commit; it was left alone.
    Conflict {
        /// The commit (or object) the existing tag points at.
        existing: String,
    },
    /// There is nowhere to tag (no repository); nothing was done.
    NothingToTag {
        /// Why, in words an operator can act on.
        reason: String,
    },
}

/// Tries made before the factory gives up on a tag.
pub const MAX_ATTEMPTS: u32 = 10;

/// When to try again after `attempts` tries, the last of which failed
/// (`transient`: trying again may help by itself, as after a 503; otherwise
/// someone must act first, as after a missing permission, so tries are
/// rarer). `None` once [`MAX_ATTEMPTS`] have been made.
///
/// Transient: 1, 2, 4 ... minutes, at most an hour apart. Otherwise: 1, 2,
/// 4 ... hours, at most a day apart.
pub fn next_attempt(attempts: u32, transient: bool, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let (base, cap) = if transient {
        (Duration::minutes(1), Duration::hours(1))
    } else {
        (Duration::hours(1), Duration::hours(24))
    };
    let factor = 1i32 << attempts.saturating_sub(1).min(16);
    Some(now + (base * factor).min(cap))
}

/// What to tag for a run: the tag and the commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagPlan {
    /// The tag's name.
    pub tag: TagName,
    /// The built commit.
    pub commit: String,
}

/// Whether there is a tag to try for `run` at `now`: a released run that
/// built a commit, not tagged already (tagged, already there, in conflict,
/// nothing to tag, or given up), and not waiting for a later try. Runs
/// without a commit (timer and operator runs) are never tagged. `Err` is
/// the record to keep when the image's name cannot start a tag (`-web`:
/// `git tag` refuses names starting with `-`).
pub fn plan(run: &Run, now: DateTime<Utc>) -> Option<Result<TagPlan, GitTagRecord>> {
    if run.status != RunStatus::Released {
        return None;
    }
    // The tag names the commit whose snapshot was built, never another.
    let uncommitted = run.source.as_ref().is_some_and(|s| s.uncommitted);
    let commit = match &run.source {
        Some(source) if !uncommitted => source.commit.as_deref()?,
        _ => run.trigger.commit.as_deref()?,
    };
    if run.git_tag.as_ref().is_some_and(|record| !record.due(now)) {
        return None;
    }
    let nothing = |reason: String| {
        Some(Err(GitTagRecord {
            tag: format!("{}/{}", run.image, run.version),
            commit: commit.to_string(),
            state: GitTagState::NothingToTag { reason },
            attempts: 0,
            at: now,
        }))
    };
    if uncommitted {
        return nothing(format!(
            "the run built an {} (the images folder is in no git repository): no commit holds what was built, so none is tagged",
            super::source::UNCOMMITTED
        ));
    }
    let tag = match TagName::new(&run.image, &run.version) {
        Ok(tag) => tag,
        Err(e) => return nothing(e.to_string()),
    };
    Some(Ok(TagPlan {
        tag,
        commit: commit.to_string(),
    }))
}

impl GitTagRecord {
    /// The record after one try at `plan` ended with `result` at `now`
    /// (`previous` is the run's record before the try, if any).
    pub fn after(
        previous: Option<&GitTagRecord>,
        plan: &TagPlan,
        result: Result<TagOutcome, (String, bool)>,
        now: DateTime<Utc>,
    ) -> GitTagRecord {
        let attempts = previous.map_or(0, |p| p.attempts) + 1;
        let state = match result {
            Ok(TagOutcome::Tagged) => GitTagState::Tagged,
            Ok(TagOutcome::AlreadyThere) => GitTagState::AlreadyThere,
            Ok(TagOutcome::Conflict { existing }) => GitTagState::Conflict {
                existing_commit: existing,
            },
            Ok(TagOutcome::NothingToTag { reason }) => GitTagState::NothingToTag { reason },
            Err((message, transient)) => GitTagState::Failed {
                message,
                next_attempt: next_attempt(attempts, transient, now),
            },
        };
        GitTagRecord {
            tag: plan.tag.to_string(),
            commit: plan.commit.clone(),
            state,
            attempts,
            at: now,
        }
    }

    /// Where the tag is, in one line for operators (the run's page,
    /// `runs show`): made, already there, on another commit, nowhere to
    /// tag, or failed with when it is tried again.
    pub fn describe(&self) -> String {
        let commit: String = self.commit.chars().take(12).collect();
        let when = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
        let tries = match self.attempts {
            1 => "1 try".to_string(),
            n => format!("{n} tries"),
        };
        match &self.state {
            GitTagState::Tagged => format!("{} tagged on {commit} {}", self.tag, when(self.at)),
            GitTagState::AlreadyThere => {
                format!("{} was already on {commit} ({})", self.tag, when(self.at))
            }
            GitTagState::Conflict { existing_commit } => format!(
                "not tagged: {} is on another commit, {}, and is never moved (found {})",
                self.tag,
                existing_commit.chars().take(12).collect::<String>(),
                when(self.at)
            ),
            GitTagState::NothingToTag { reason } => format!("not tagged: {reason}"),
            GitTagState::Failed {
                message,
                next_attempt: Some(next),
            } => format!(
                "{} not tagged yet after {tries}: {message}; next try {}",
                self.tag,
                when(*next)
            ),
            GitTagState::Failed {
                message,
                next_attempt: None,
            } => format!("{} not tagged: gave up after {tries}: {message}", self.tag),
        }
    }

    /// True when the sweeper should try this tag again at `now`.
    pub fn due(&self, now: DateTime<Utc>) -> bool {
        matches!(
            self.state,
            GitTagState::Failed { next_attempt: Some(at), .. } if at <= now
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::run::{RepositoryRef, RunId, Trigger, TriggerKind};
    use crate::domain::version::ImageVersion;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn now() -> DateTime<Utc> {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    fn released(commit: Option<&str>) -> Run {
        let trigger = Trigger {
            commit: commit.map(str::to_string),
            ..Trigger::new(TriggerKind::Push, "github")
        };
        let mut run = Run::new(
            "push-example-0123".parse::<RunId>().unwrap(),
            "example".into(),
            ImageVersion {
                major: 1,
                minor: 2,
                patch: 3,
            },
            trigger,
            BTreeMap::new(),
            now(),
        );
        run.status = RunStatus::Released;
        run
    }

    #[test]
    fn the_tag_is_image_slash_version_under_refs_tags() {
        let tag = TagName::new("example", &"1.2.3").unwrap();
        assert_eq!(tag.as_str(), "example/1.2.3");
        assert_eq!(tag.ref_name(), "refs/tags/example/1.2.3");
    }

    #[test]
    fn names_breaking_gits_rules_are_refused_with_the_rule() {
        for (name, rule) in [
            ("", "empty"),
            ("@", "`@`"),
            ("a b/1", "space"),
            ("a/1..2", "`..`"),
            ("a/.hidden", "begins with `.`"),
            ("a.lock/1", "`.lock`"),
            ("a/1.", "ends with `.`"),
            ("a//1", "empty component"),
            ("/a", "begins or ends"),
            ("a@{1}", "`@{`"),
            ("a~1", "`~`"),
            ("a\u{7}", "control"),
            ("-a/1", "begins with `-`"),
        ] {
            let err = TagName::parse(name).unwrap_err().to_string();
            assert!(err.contains(rule), "{name:?}: {err}");
        }
        assert!(TagName::parse("web-server/2026.11.0").is_ok());
    }

    #[test]
    fn the_tag_names_the_commit_whose_snapshot_was_built_and_never_a_working_tree() {
        let other = "ffff56789abcdef0123456789abcdef01234567f";
        let mut run = released(Some(other));
        run.source = Some(crate::domain::source::SourceRecord {
            repository: None,
            commit: Some(COMMIT.into()),
            snapshot: "ab".repeat(32).parse().unwrap(),
            size: 1,
            image_hash: "cd".repeat(32),
            uncommitted: false,
        });
        assert_eq!(plan(&run, now()).unwrap().unwrap().commit, COMMIT);
        if let Some(source) = run.source.as_mut() {
            source.uncommitted = true;
        }
        let Some(Err(record)) = plan(&run, now()) else {
            panic!("a record saying why nothing is tagged");
        };
        let GitTagState::NothingToTag { reason } = &record.state else {
            panic!("{record:?}");
        };
        assert!(reason.contains("uncommitted working tree"), "{reason}");
        assert!(
            !record.due(now() + chrono::Duration::days(30)),
            "never tried again"
        );
    }

    #[test]
    fn only_a_released_run_that_built_a_commit_is_tagged() {
        let run = released(Some(COMMIT));
        let plan = plan(&run, now()).unwrap().unwrap();
        assert_eq!(plan.tag.as_str(), "example/1.2.3");
        assert_eq!(plan.commit, COMMIT);
        assert_eq!(super::plan(&released(None), now()), None);
        let mut waiting = released(Some(COMMIT));
        waiting.status = RunStatus::WaitingForApproval;
        assert_eq!(super::plan(&waiting, now()), None);
        let mut dashed = released(Some(COMMIT));
        dashed.image = "-web".into();
        let Some(Err(record)) = super::plan(&dashed, now()) else {
            panic!("a record saying why");
        };
        assert!(
            matches!(&record.state, GitTagState::NothingToTag { reason } if reason.contains("begins with `-`")),
            "{record:?}"
        );
    }

    #[test]
    fn a_settled_tag_is_never_tried_again_and_a_failed_one_only_when_due() {
        let mut run = released(Some(COMMIT));
        let p = plan(&run, now()).unwrap().unwrap();
        for outcome in [
            TagOutcome::Tagged,
            TagOutcome::AlreadyThere,
            TagOutcome::Conflict {
                existing: "f".repeat(40),
            },
            TagOutcome::NothingToTag {
                reason: "no repository".into(),
            },
        ] {
            run.git_tag = Some(GitTagRecord::after(None, &p, Ok(outcome), now()));
            assert_eq!(plan(&run, now() + Duration::days(30)), None);
        }
        let failed = GitTagRecord::after(None, &p, Err(("503".into(), true)), now());
        assert_eq!(failed.attempts, 1);
        assert!(!failed.due(now()));
        assert!(failed.due(now() + Duration::minutes(1)));
        run.git_tag = Some(failed.clone());
        assert_eq!(plan(&run, now()), None);
        assert_eq!(
            plan(&run, now() + Duration::minutes(1)),
            Some(Ok(p.clone()))
        );
        let again = GitTagRecord::after(
            Some(&failed),
            &p,
            Ok(TagOutcome::Tagged),
            now() + Duration::minutes(1),
        );
        assert_eq!(again.attempts, 2);
        assert_eq!(again.state, GitTagState::Tagged);
    }

    #[test]
    fn failures_back_off_transient_ones_in_minutes_others_in_hours_and_give_up() {
        let at = |n, transient| next_attempt(n, transient, now()).map(|t| t - now());
        assert_eq!(at(1, true), Some(Duration::minutes(1)));
        assert_eq!(at(2, true), Some(Duration::minutes(2)));
        assert_eq!(at(3, true), Some(Duration::minutes(4)));
        assert_eq!(at(9, true), Some(Duration::hours(1)));
        assert_eq!(at(1, false), Some(Duration::hours(1)));
        assert_eq!(at(4, false), Some(Duration::hours(8)));
        assert_eq!(at(9, false), Some(Duration::hours(24)));
        assert_eq!(at(MAX_ATTEMPTS, true), None);
        assert_eq!(at(MAX_ATTEMPTS + 5, false), None);
        let p = plan(&released(Some(COMMIT)), now()).unwrap().unwrap();
        let mut record = None;
        for _ in 0..MAX_ATTEMPTS {
            record = Some(GitTagRecord::after(
                record.as_ref(),
                &p,
                Err(("down".into(), true)),
                now(),
            ));
        }
        let last = record.unwrap();
        assert_eq!(
            last.state,
            GitTagState::Failed {
                message: "down".into(),
                next_attempt: None
            }
        );
        assert!(!last.due(now() + Duration::days(365)));
    }

    #[test]
    fn the_record_reads_as_camel_case_json_with_its_state() {
        let p = plan(&released(Some(COMMIT)), now()).unwrap().unwrap();
        let record = GitTagRecord::after(
            None,
            &p,
            Ok(TagOutcome::Conflict {
                existing: "f".repeat(40),
            }),
            now(),
        );
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["state"], "conflict");
        assert_eq!(json["existingCommit"], "f".repeat(40));
        assert_eq!(json["tag"], "example/1.2.3");
        let back: GitTagRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
        let repo = RepositoryRef::AzureDevOps {
            organization_url: "https://dev.azure.com/fabrikam".into(),
            project: "p".into(),
            repository_id: "r".into(),
        };
        let json = serde_json::to_value(&repo).unwrap();
        assert_eq!(json["provider"], "azure-devops");
        assert_eq!(json["organizationUrl"], "https://dev.azure.com/fabrikam");
        assert_eq!(serde_json::from_value::<RepositoryRef>(json).unwrap(), repo);
        let github = RepositoryRef::GitHub {
            owner: "octo".into(),
            repo: "images".into(),
        };
        assert_eq!(
            serde_json::to_value(&github).unwrap(),
            serde_json::json!({ "provider": "github", "owner": "octo", "repo": "images" })
        );
    }

    #[test]
    fn each_tag_state_is_told_in_one_line_with_the_tag_and_what_to_expect() {
        let p = plan(&released(Some(COMMIT)), now()).unwrap().unwrap();
        let told = |result| GitTagRecord::after(None, &p, result, now()).describe();
        let short: String = COMMIT.chars().take(12).collect();
        assert!(
            told(Ok(TagOutcome::Tagged)).starts_with(&format!("example/1.2.3 tagged on {short}"))
        );
        assert!(told(Ok(TagOutcome::AlreadyThere)).contains("was already on"));
        let conflict = told(Ok(TagOutcome::Conflict {
            existing: "f".repeat(40),
        }));
        assert!(
            conflict.contains("on another commit, ffffffffffff, and is never moved"),
            "{conflict}"
        );
        let nothing = told(Ok(TagOutcome::NothingToTag {
            reason: "the push named no repository".into(),
        }));
        assert_eq!(nothing, "not tagged: the push named no repository");
        let failed = told(Err(("GitHub answered 503".into(), true)));
        assert!(
            failed.contains("not tagged yet after 1 try: GitHub answered 503; next try "),
            "{failed}"
        );
        let mut record = None;
        for _ in 0..MAX_ATTEMPTS {
            record = Some(GitTagRecord::after(
                record.as_ref(),
                &p,
                Err(("down".into(), true)),
                now(),
            ));
        }
        let given_up = record.unwrap().describe();
        assert!(
            given_up.contains(&format!("gave up after {MAX_ATTEMPTS} tries: down")),
            "{given_up}"
        );
    }

    /// Whether `git check-ref-format` (the real one) accepts `refs/tags/<name>`.
    fn git_accepts(name: &str) -> bool {
        std::process::Command::new("git")
            .args(["check-ref-format", &format!("refs/tags/{name}")])
            .status()
            .expect("run git check-ref-format")
            .success()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The rules agree with git itself on names made of the characters
        /// that matter (separators, dots, the forbidden ones, `@{`, `.lock`).
        #[test]
        fn the_rules_agree_with_git_check_ref_format(
            name in "[a-z0-9./@{}~^:?*\\[\\\\ -]{0,12}(\\.lock)?"
        ) {
            // git's ref-name rules, and `git tag`'s own: no leading `-`. A
            // tag named `@` alone is refused here though `refs/tags/@` is a
            // valid ref: `@` names HEAD wherever a revision is read.
            prop_assume!(name != "@");
            prop_assert_eq!(
                ref_name_rule_broken(&name).is_none(),
                git_accepts(&name) && !name.starts_with('-'),
                "{:?}", name
            );
        }

        /// Every image folder name the factory accepts, at every version,
        /// makes a valid tag.
        #[test]
        fn image_names_and_versions_make_valid_tags(
            image in "[a-z0-9-]{1,64}",
            major in 0u32..=i32::MAX as u32,
            minor in 0u32..=i32::MAX as u32,
            patch in 0u32..=i32::MAX as u32,
        ) {
            prop_assume!(crate::domain::image::is_valid_image_name(&image));
            let version = ImageVersion { major, minor, patch };
            let tag = TagName::new(&image, &version);
            prop_assert!(tag.is_ok(), "{:?}", tag);
            prop_assert!(git_accepts(tag.unwrap().as_str()));
        }
    }
}
