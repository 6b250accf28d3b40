//! The git tag of a release: after a run that built a commit is released,
//! its commit is tagged `<image>/<version>` where its push came from. Called
//! once the release is recorded, and again by the sweeper for a failed tag
//! that is due; a failure never fails the release, it is recorded on the run.

use chrono::{DateTime, Utc};

use crate::domain::git_tag;
use crate::domain::run::{GitTagRecord, Run};
use crate::ports::git::GitTags;

/// Tries the git tag of `run` at `now`, if it has one to try (released,
/// built a commit, not tagged yet, or failed and due again): the record to
/// store as `run.git_tag`. `None` when there is nothing to try; the run's
/// record is then unchanged.
pub async fn tag_release(
    tags: &dyn GitTags,
    run: &Run,
    now: DateTime<Utc>,
) -> Option<GitTagRecord> {
    let plan = match git_tag::plan(run, now)? {
        Ok(plan) => plan,
        Err(record) => return Some(record),
    };
    let result = tags
        .tag(run.trigger.repository.as_ref(), &plan.tag, &plan.commit)
        .await
        .map_err(|e| (e.message, e.transient));
    if let Err((message, _)) = &result {
        tracing::warn!(run = %run.id, tag = %plan.tag, "git tag failed: {message}");
    }
    Some(GitTagRecord::after(
        run.git_tag.as_ref(),
        &plan,
        result,
        now,
    ))
}
