//! The run record: one image definition built once, with the history of every
//! stage it went through, and everything else a run document holds: its
//! inputs, its release notes, its git tag and what it still owes the outside
//! world. Plain data, no I/O.
//!
//! The rules over runs live above this module and import it, never the other
//! way: `machine` owns how a run changes, `followup` how its follow-ups are
//! delivered, `git_tag` how its commit is tagged, `release_notes` how its
//! notes are composed and written.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::approval::{ApprovalRequest, Decision, Verdict};
use super::controls::{Lines, escape_option};
use super::declaration::DeclarationRecord;
use super::diagnosis::Diagnosis;
use super::evidence::EvidenceRecord;
use super::patch_gate::{PatchRecord, SecurityNote};
use super::version::ImageVersion;

/// Longest run id accepted: `push-<64-character image>-<64 hex>` fits with room to spare.
pub const MAX_RUN_ID: usize = 200;

/// A run's id, checked against the grammar of the ids the factory makes
/// (`push-<image>-<commit>`, `pt-<image>-<YYYY-MM>`, `oob-<image>-<hex>`,
/// `base-<image>-<version>`): 1 to [`MAX_RUN_ID`] characters of `a-z`, `0-9`,
/// `-` and `.`, starting with a letter or digit, with no `..`. An id that
/// parses is safe as one path segment (it names the run's folder) and in a URL.
///
/// Every edge parses ids once (HTTP routes, the CLI, queue messages, stored
/// records); serde reads and writes it as a plain string, refusing one that
/// does not parse, so records and messages keep their JSON shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

/// Why a text is not a run id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{shown}` is not a run id: run ids are 1-{MAX_RUN_ID} characters of a-z, 0-9, `-` and `.`, starting with a letter or digit, with no `..` (e.g. push-example-0123456789ab)"
)]
pub struct RunIdError {
    /// The refused text, cut short and with control characters escaped.
    shown: String,
}

impl RunId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RunId {
    type Err = RunIdError;

    fn from_str(s: &str) -> Result<RunId, RunIdError> {
        let allowed =
            |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
        let ok = !s.is_empty()
            && s.len() <= MAX_RUN_ID
            && s.bytes().all(allowed)
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && !s.contains("..");
        if !ok {
            let shown: String = s.chars().take(80).flat_map(char::escape_debug).collect();
            return Err(RunIdError { shown });
        }
        Ok(RunId(s.to_string()))
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for RunId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RunId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for RunId {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

impl PartialEq<str> for RunId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RunId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for RunId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<RunId> for String {
    fn eq(&self, other: &RunId) -> bool {
        self == &other.0
    }
}

impl PartialEq<RunId> for &str {
    fn eq(&self, other: &RunId) -> bool {
        *self == other.0
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RunId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The five stages of a run, in the order they execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Template checks that fail in seconds.
    Validate,
    /// `packer build`.
    Build,
    /// Smoke test of the built image.
    Test,
    /// Human approval.
    Approve,
    /// Metadata, promotion and pruning.
    Release,
}

impl Stage {
    /// Every stage, in execution order.
    pub const ALL: [Stage; 5] = [
        Stage::Validate,
        Stage::Build,
        Stage::Test,
        Stage::Approve,
        Stage::Release,
    ];

    /// The stage's short name (`validate`, `build`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Validate => "validate",
            Stage::Build => "build",
            Stage::Test => "test",
            Stage::Approve => "approve",
            Stage::Release => "release",
        }
    }

    /// Position in [`Stage::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stage that follows this one, if any.
    pub fn next(self) -> Option<Stage> {
        Stage::ALL.get(self.index() + 1).copied()
    }

    /// The function (and queue) that runs this stage: `stage-validate`, ...
    pub fn function_name(self) -> &'static str {
        match self {
            Stage::Validate => "stage-validate",
            Stage::Build => "stage-build",
            Stage::Test => "stage-test",
            Stage::Approve => "stage-approve",
            Stage::Release => "stage-release",
        }
    }

    /// Parses a short stage name.
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a stage is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    /// Not started yet.
    Pending,
    /// Started; its side effects may be under way.
    Running,
    /// The approve stage has sent its requests and waits for decisions.
    Waiting,
    /// Finished well.
    Succeeded,
    /// Finished badly; the run stopped here.
    Failed,
    /// An operator cancelled the run while it was at this stage.
    Cancelled,
}

/// Where a run is. From `released` on, terminal; `cancelling` is the one
/// step between a recorded cancel and its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Created; its first stage has not started.
    Queued,
    /// A stage is running or about to.
    Running,
    /// Built and tested; waiting for approvers.
    WaitingForApproval,
    /// Released: the run's image version is published.
    Released,
    /// An approver rejected it.
    Rejected,
    /// A stage failed; `Run::failure` says why.
    Failed,
    /// Nobody decided before the approval deadline.
    ApprovalExpired,
    /// Its inputs were identical to an image already released; nothing was built.
    Skipped,
    /// An operator cancelled it; what it had started is being freed
    /// (`Run::cancellation`). Nothing moves it forward any more: it ends
    /// `cancelled` once the freeing is done.
    Cancelling,
    /// An operator cancelled it, and what it had started was freed.
    Cancelled,
}

impl RunStatus {
    /// Every status, in the order a run may reach them.
    pub const ALL: [RunStatus; 10] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::WaitingForApproval,
        RunStatus::Cancelling,
        RunStatus::Released,
        RunStatus::Rejected,
        RunStatus::Failed,
        RunStatus::ApprovalExpired,
        RunStatus::Skipped,
        RunStatus::Cancelled,
    ];

    /// True when nothing can change the run any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Released
                | RunStatus::Rejected
                | RunStatus::Failed
                | RunStatus::ApprovalExpired
                | RunStatus::Skipped
                | RunStatus::Cancelled
        )
    }

    /// True when nothing moves the run forward any more: it ended, or a
    /// cancel is being carried out (no stage starts or records a result).
    pub fn is_stopped(self) -> bool {
        self.is_terminal() || self == RunStatus::Cancelling
    }

    /// The status's wire name (`waiting-for-approval`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::WaitingForApproval => "waiting-for-approval",
            RunStatus::Released => "released",
            RunStatus::Rejected => "rejected",
            RunStatus::Failed => "failed",
            RunStatus::ApprovalExpired => "approval-expired",
            RunStatus::Skipped => "skipped",
            RunStatus::Cancelling => "cancelling",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerKind {
    /// A push to the image's template.
    Push,
    /// The monthly Patch Tuesday rebuild.
    PatchTuesday,
    /// An operator's ad-hoc run (out-of-band security fix, experiment).
    OutOfBand,
    /// A new version of the image's Marketplace base image.
    BaseImageUpdate,
}

/// The trigger of a run, as recorded for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// What kind of event started the run.
    pub kind: TriggerKind,
    /// Where it came from: `github`, `azure-devops`, `timer`, `cli`, ...
    pub source: String,
    /// The commit the run builds, when known.
    pub commit: Option<String>,
    /// The branch pushed to, for pushes.
    pub branch: Option<String>,
    /// Who caused it (pusher, operator), when known.
    pub actor: Option<String>,
    /// Free text: why the run exists (required for out-of-band runs).
    pub reason: Option<String>,
    /// Build even if the inputs are identical to a released image.
    #[serde(default)]
    pub force: bool,
    /// The Marketplace base image version the run builds from, when known.
    #[serde(default)]
    pub base_image_version: Option<String>,
    /// The repository pushed to, for pushes: where the released commit is tagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryRef>,
    /// The pushed commit's message, when the push carried it (cut to
    /// [`MESSAGE_KEPT`] bytes): the release notes quote its first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Bytes of a commit message a run keeps.
pub const MESSAGE_KEPT: usize = 2048;

/// The repository a push came from, as its webhook named it: where the
/// built commit is tagged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "kebab-case")]
pub enum RepositoryRef {
    /// A GitHub repository, `owner/repo`.
    #[serde(rename = "github", rename_all = "camelCase")]
    GitHub {
        /// The owner (user or organization).
        owner: String,
        /// The repository's name.
        repo: String,
    },
    /// An Azure DevOps Git repository.
    #[serde(rename = "azure-devops", rename_all = "camelCase")]
    AzureDevOps {
        /// The organization's (or collection's) URL:
        /// `https://dev.azure.com/<organization>`.
        organization_url: String,
        /// The project's id or name.
        project: String,
        /// The repository's id.
        repository_id: String,
    },
}

impl fmt::Display for RepositoryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepositoryRef::GitHub { owner, repo } => write!(f, "GitHub repository {owner}/{repo}"),
            RepositoryRef::AzureDevOps {
                organization_url,
                project,
                repository_id,
            } => write!(
                f,
                "Azure DevOps repository {repository_id} of project {project} at {organization_url}"
            ),
        }
    }
}

/// Which delivery of which message runs a stage.
///
/// Service Bus hands a message to one receiver at a time, so a higher delivery
/// count of the same message means the earlier delivery lost its lock (its
/// process died): the new delivery supersedes it. A different message for a
/// stage that is already running is a duplicate and changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// The message's id.
    pub message_id: String,
    /// Its delivery count (1 on first delivery).
    pub delivery: u32,
}

impl fmt::Display for Execution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.message_id, self.delivery)
    }
}

impl Trigger {
    /// A trigger of `kind` from `source` with nothing else known; set the
    /// other fields with struct update syntax.
    pub fn new(kind: TriggerKind, source: &str) -> Trigger {
        Trigger {
            kind,
            source: source.to_string(),
            commit: None,
            branch: None,
            actor: None,
            reason: None,
            force: false,
            base_image_version: None,
            repository: None,
            message: None,
        }
    }

    /// The trigger with the text people chose (the pusher's or operator's
    /// name, the branch, the reason, the commit message) shown safely: every
    /// terminal or bidi control character escaped visibly
    /// ([`super::controls::escape_controls`]). Identifiers the factory acts on (the commit,
    /// the repository, the base image version) are checked where they
    /// arrive and are left as they are.
    pub fn escaped(self) -> Trigger {
        Trigger {
            actor: escape_option(self.actor, Lines::Escape),
            branch: escape_option(self.branch, Lines::Escape),
            reason: escape_option(self.reason, Lines::Keep),
            message: escape_option(self.message, Lines::Keep),
            ..self
        }
    }
}

/// One try at a stage. A redelivered message after a crash starts a new attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The message delivery that runs it.
    pub execution: Execution,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended, if it did.
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended, in words.
    pub outcome: Option<String>,
    /// The worker that runs it off the host (builds on Azure), once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerRef>,
}

/// How a build worker's build ended, as its report says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum BuildOutcome {
    /// Packer built the image.
    Succeeded(BuildResult),
    /// It failed; the run stops with this reason.
    Failed {
        /// Why, in words an operator can act on.
        reason: String,
    },
}

/// A build worker started off the host for one attempt: a Container Apps job
/// execution that runs packer and reports back on the `build-completed` queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerRef {
    /// The factory's id for the worker, carried by its order and its report.
    pub id: String,
    /// The job execution's name (Azure's id for it).
    pub execution: String,
    /// When it was started.
    pub started_at: DateTime<Utc>,
    /// Where its log is uploaded.
    pub log_url: String,
}

/// A stage's history within a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageRecord {
    /// Which stage.
    pub stage: Stage,
    /// Where it is.
    pub status: StageStatus,
    /// When the first attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished (succeeded or failed).
    pub finished_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// One line on the outcome ("packer build produced 1 artifact", ...).
    pub summary: Option<String>,
}

/// How the outcome of an attempt whose build worker was lost begins.
pub const WORKER_LOST: &str = "worker lost";

impl StageRecord {
    /// Attempts whose build worker was lost (the watchdog closed them).
    pub fn lost_workers(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| {
                a.outcome
                    .as_deref()
                    .is_some_and(|o| o.starts_with(WORKER_LOST))
            })
            .count()
    }

    /// The ids of the build workers the watchdog gave up on: a redelivery
    /// must never adopt one of them again.
    pub fn lost_worker_ids(&self) -> Vec<String> {
        self.attempts
            .iter()
            .filter(|a| {
                a.outcome
                    .as_deref()
                    .is_some_and(|o| o.starts_with(WORKER_LOST))
            })
            .filter_map(|a| a.worker.as_ref().map(|w| w.id.clone()))
            .collect()
    }

    fn new(stage: Stage) -> StageRecord {
        StageRecord {
            stage,
            status: StageStatus::Pending,
            started_at: None,
            finished_at: None,
            attempts: Vec::new(),
            summary: None,
        }
    }

    /// The attempt under way or last made.
    pub fn current_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }
}

/// A problem found in a template by the validate stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingRecord {
    /// File, relative to the template folder.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// Kind of finding (`undeclared-variable`, ...).
    pub kind: String,
    /// Whether it fails the stage.
    pub error: bool,
    /// What is wrong and what to do.
    pub message: String,
}

/// An artifact produced by `packer build`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRecord {
    /// Packer's build name (`source.null.image`, ...).
    pub builder: String,
    /// The builder's artifact id.
    pub id: String,
    /// Packer's one-line description.
    pub description: String,
    /// Files the artifact consists of.
    pub files: Vec<String>,
}

/// What a stage produced, carried by [`super::machine::Event::StageSucceeded`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StageOutput {
    /// The validate stage's findings (warnings only, or it would have failed).
    Validated {
        /// Warnings found.
        findings: Vec<FindingRecord>,
        /// The packer version used for `fmt`/`validate`, if any.
        packer_version: Option<String>,
    },
    /// The build stage's artifacts and log.
    Built(BuildResult),
    /// The smoke test's result, the patch gate's for an image with
    /// `[patch]`, and the declaration checks' for one with `[declare]`.
    Tested {
        /// What was checked and what answered.
        checks: Vec<String>,
        /// The patch gate's record (passed, or not verified).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        patch: Option<Box<PatchRecord>>,
        /// The declaration checks' record (every check passed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        declaration: Option<Box<DeclarationRecord>>,
    },
    /// The released image's metadata.
    Released(Box<ReleaseRecord>),
}

/// What a build produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildResult {
    /// Artifacts, as packer reported them.
    pub artifacts: Vec<ArtifactRecord>,
    /// Managed image resource id, for azure-arm builds.
    pub managed_image_id: Option<String>,
    /// Gallery image version resource id, for azure-arm builds with a gallery destination.
    pub gallery_version_id: Option<String>,
    /// Where the build log is kept.
    pub log: String,
    /// Seconds the build took.
    pub duration_seconds: u64,
    /// The patch evidence the build collected (`image-evidence.json`), for
    /// a template that declares `evidence_path`; `None` for one that does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Box<EvidenceRecord>>,
}

/// The `image-version.json` document a release publishes (the seed's metadata file).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    /// The released version.
    pub image_version: String,
    /// Gallery image version id, when the image went to a gallery.
    pub sig_version_id: Option<String>,
    /// The commit built.
    pub git_commit: Option<String>,
    /// The source built: repository, commit and snapshot (and whether it
    /// was an uncommitted working tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<super::source::SourceRecord>>,
    /// The run that built it.
    pub run_id: String,
    /// Where the build log is kept.
    pub build_log: String,
    /// Where the metadata file was written.
    pub location: String,
    /// The gallery version made latest by this release; `None` when it was
    /// released below the latest ([`ReleaseRecord::below_latest`]) or the
    /// build published to no gallery (a managed image only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<String>,
    /// The higher version that was latest when this one was released, and
    /// stayed latest: this version is published (usable by its version)
    /// but not promoted. Only a rollback moves latest back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_latest: Option<String>,
    /// Versions excluded from latest so that the promoted one is latest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
    /// Versions the pruning policy deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
    /// Regions the released version is replicated to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// The OS build the image's evidence reads (`10.0.20348.4648`), when
    /// the build collected evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_build: Option<String>,
    /// The month's cumulative update the patch gate judged the build
    /// against (`KB5073457`), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cumulative_update: Option<String>,
    /// The release notes (also published as `release-notes.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<Box<ReleaseNotes>>,
    /// The rollbacks that made this version current again, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollbacks: Vec<Rollback>,
    /// The rollback that withdrew this version: it is excluded from latest,
    /// an earlier version is current. `None` while it was never withdrawn,
    /// or since a rollback made it current again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<Box<Rollback>>,
}

/// A rollback: an operator made an earlier released version of an image
/// current again (latest in the gallery), every higher version withdrawn
/// (excluded from latest, kept). Recorded on the run that released the
/// version made current ([`ReleaseRecord::rollbacks`]) and on the runs of
/// the versions it withdrew ([`ReleaseRecord::withdrawn`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    /// Its id: also the id of its `image-factory.image.rolled-back` event.
    pub id: String,
    /// The version made current.
    pub to: String,
    /// The run that released it.
    pub to_run: String,
    /// The version that was current before, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The released versions it withdrew (every one above `to`), lowest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdrawn: Vec<String>,
    /// Who asked for it: the signed-in principal's name (or object id),
    /// or the name an operator-token holder gave.
    pub actor: String,
    /// How the actor was known: `sign-in`, `operator-token`, or `direct`
    /// (the command line acting for a factory that was down).
    pub via: String,
    /// Why, in the operator's words.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// What started the run, as the notes tell it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerNote {
    /// What kind of event.
    pub kind: TriggerKind,
    /// One sentence: "push of 3f2a… to main by alice".
    pub summary: String,
    /// The commit built, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The commit message's first line, when the push carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the source built came from: repository, commit and snapshot
    /// (see [`super::source::SourceRecord::describe`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Why the run exists (the Patch Tuesday month, an out-of-band reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The base image version built on, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image_version: Option<String>,
}

/// The release before this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousRelease {
    /// Its version.
    pub version: String,
    /// Its run.
    pub run_id: String,
    /// The commit it built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When it was released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<DateTime<Utc>>,
}

/// One approver's decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalNote {
    /// Who.
    pub approver: String,
    /// `approve` or `reject`.
    pub verdict: Verdict,
    /// When.
    pub at: DateTime<Utc>,
    /// Their comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// How long a stage took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageDuration {
    /// The stage.
    pub stage: Stage,
    /// Seconds from its first start to its end (to the notes' time for the
    /// release stage, which is running when they are written).
    pub seconds: u64,
}

/// The notes of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseNotes {
    /// What started the run.
    pub trigger: TriggerNote,
    /// The release before this one; `None` for the image's first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousRelease>,
    /// What changed in the inputs since the previous release; `None` when
    /// there is no previous release or it did not record its inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<InputChanges>,
    /// The patch level and the CVEs newly fixed since the previous
    /// release, for a build that collected patch evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Box<SecurityNote>>,
    /// The smoke test's checks.
    pub smoke: Vec<String>,
    /// The declaration checks, for an image with `[declare]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declaration: Option<Box<DeclarationRecord>>,
    /// The approvers' decisions, in order.
    pub approvals: Vec<ApprovalNote>,
    /// Each stage's duration, in pipeline order.
    pub durations: Vec<StageDuration>,
    /// Seconds from the run's creation to the notes.
    pub total_seconds: u64,
}

/// One setting before and after (`None`: not set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueChange {
    /// What changed: a variable's name, `baseline`, `base image`.
    pub name: String,
    /// Its value in the previous release.
    pub before: Option<String>,
    /// Its value now.
    pub after: Option<String>,
}

/// What changed in the inputs between two runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputChanges {
    /// Files that are new, by path.
    pub added: Vec<String>,
    /// Files that are gone.
    pub removed: Vec<String>,
    /// Files whose content changed.
    pub modified: Vec<String>,
    /// Packer variables added, removed or changed.
    pub variables: Vec<ValueChange>,
    /// The baseline, when it changed.
    pub baseline: Option<ValueChange>,
    /// The base image version, when it changed.
    pub base_image: Option<ValueChange>,
}

impl InputChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self == &InputChanges::default()
    }
}

/// What a packer command line of a run is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildSpec {
    /// The run (names its folder).
    pub run_id: RunId,
    /// The version being built.
    pub version: String,
    /// The commit being built (empty when none).
    pub commit: String,
    /// The version of the base image it is built on, when known (a factory
    /// parent's release, a Marketplace version).
    pub base_image_version: Option<String>,
}

impl BuildSpec {
    /// The spec of `run`.
    pub fn of(run: &Run) -> BuildSpec {
        BuildSpec {
            run_id: run.id.clone(),
            version: run.version.to_string(),
            commit: run.trigger.commit.clone().unwrap_or_default(),
            base_image_version: run.trigger.base_image_version.clone(),
        }
    }
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The stage that failed, if the failure belongs to one.
    pub stage: Option<Stage>,
    /// What happened, in words an operator can act on.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The likely cause and fix, for a build, test or release failure the
    /// troubleshooting table recognises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
}

/// A run's build inputs, one entry per thing that can change: the content
/// hash (SHA-256, hex) of each file of the image's template folder by its
/// path there, the packer variables, the baseline and the base image version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputManifest {
    /// `path` (with `/`, relative to the image folder) → content hash.
    pub files: BTreeMap<String, String>,
    /// The image's packer variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The image's baseline version.
    #[serde(default)]
    pub baseline: String,
    /// The base image version built on, when known.
    #[serde(default)]
    pub base_image_version: Option<String>,
}

/// Where a run's git tag is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum GitTagState {
    /// Made by the factory.
    Tagged,
    /// It was already there, on the built commit.
    AlreadyThere,
    /// A tag of that name is on another commit; it is never moved.
    #[serde(rename_all = "camelCase")]
    Conflict {
        /// What the existing tag points at.
        existing_commit: String,
    },
    /// There was nowhere to tag.
    NothingToTag {
        /// Why.
        reason: String,
    },
    /// The last try failed.
    #[serde(rename_all = "camelCase")]
    Failed {
        /// What went wrong, in words an operator can act on.
        message: String,
        /// When to try again; none when the factory has given up.
        next_attempt: Option<DateTime<Utc>>,
    },
}

/// A run's git tag, as recorded on the run (`Run::git_tag`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitTagRecord {
    /// The tag's name (`<image>/<version>`).
    pub tag: String,
    /// The commit it is meant for.
    pub commit: String,
    /// Where it is.
    #[serde(flatten)]
    pub state: GitTagState,
    /// Tries made so far.
    pub attempts: u32,
    /// When the last try ended.
    pub at: DateTime<Utc>,
}

/// What is owed. New kinds (git tags, ...) are added here; the delivery
/// record, the retries and the sweeper's query serve every kind alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FollowUpKind {
    /// A release event to every configured event target.
    Event {
        /// The event's type.
        event: EventType,
    },
}

/// The release events the factory emits (CloudEvents `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// The run's image version was released: it is the image's latest.
    #[serde(rename = "image-factory.image.released")]
    Released,
    /// The run was released below the image's latest version: its version
    /// is published (usable by its version) but not promoted, and the
    /// latest stays. A type of its own, so that what deploys on
    /// `released` never deploys an older version.
    #[serde(rename = "image-factory.image.published")]
    Published,
    /// An image was rolled back to the run's version (it is latest again).
    #[serde(rename = "image-factory.image.rolled-back")]
    RolledBack,
    /// The run failed.
    #[serde(rename = "image-factory.run.failed")]
    Failed,
    /// An operator cancelled the run, and what it had started was freed.
    #[serde(rename = "image-factory.run.cancelled")]
    Cancelled,
}

impl EventType {
    /// The CloudEvents `type` attribute.
    pub fn name(self) -> &'static str {
        match self {
            EventType::Released => "image-factory.image.released",
            EventType::Published => "image-factory.image.published",
            EventType::RolledBack => "image-factory.image.rolled-back",
            EventType::Failed => "image-factory.run.failed",
            EventType::Cancelled => "image-factory.run.cancelled",
        }
    }
}

/// One thing a run owes, and its deliveries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUp {
    /// What is owed.
    #[serde(flatten)]
    pub kind: FollowUpKind,
    /// Its id, the same on every attempt and every target (the CloudEvent
    /// `id` and the `webhook-id`), so receivers can drop duplicates.
    pub id: String,
    /// When it was recorded (the event's `time`).
    pub created_at: DateTime<Utc>,
    /// When it was first matched with the targets of a deliverer that has
    /// some; `None` until then (it stays owed). Targets configured after
    /// that do not receive it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// One record per target.
    #[serde(default)]
    pub deliveries: Vec<Delivery>,
}

/// Where one delivery of a follow-up stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The target's name as shown to operators (`event-grid <host>`,
    /// `webhook https://host/path`): never credentials, query strings or
    /// user information.
    pub target: String,
    /// Attempts made (claimed) so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When to try next; `None` once delivered or given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the target accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the factory stopped trying (after [`super::followup::MAX_ATTEMPTS`], or an error
    /// that retrying cannot mend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gave_up_at: Option<DateTime<Utc>>,
}

impl Delivery {
    /// Whether it waits for an attempt due at or before `now`.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.next_attempt_at.is_some_and(|t| t <= now)
    }

    /// Where it stands, in one line for operators (`runs show`, the run page).
    pub fn describe(&self) -> String {
        let time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        let error = self.last_error.as_deref().unwrap_or("no error recorded");
        match (self.delivered_at, self.gave_up_at, self.next_attempt_at) {
            (Some(at), _, _) => format!("delivered {} (attempt {})", time(at), self.attempts),
            (None, Some(at), _) => format!(
                "given up {} after {} attempt(s): {error}",
                time(at),
                self.attempts
            ),
            (None, None, Some(next)) if self.attempts > 0 => format!(
                "attempt {} failed: {error}; next attempt {}",
                self.attempts,
                time(next)
            ),
            _ => "pending".to_string(),
        }
    }
}

/// An operator's cancel of a run, and the freeing of what the run had
/// started (`Run::cancellation`). Recorded in the write that stops the run
/// (`cancelling`), before anything is freed; the run ends `cancelled` in the
/// write that records the freeing done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cancellation {
    /// When the cancel was recorded.
    pub at: DateTime<Utc>,
    /// Who cancelled (the operator as the factory identified them).
    pub by: String,
    /// Why, when they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The stage the run was at (the first that had not succeeded); `None`
    /// for a run whose first stage had not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// The freeing of what the run had started.
    #[serde(default)]
    pub freeing: Freeing,
}

/// What freeing a cancelled run's resources did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Freeing {
    /// Attempts made.
    pub attempts: u32,
    /// What was freed, one line each (`build worker job-x stopped`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freed: Vec<String>,
    /// What the last attempt could not free, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_freed: Vec<String>,
    /// When the freeing ended (the run's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// What one attempt at freeing a cancelled run's resources did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeReport {
    /// What was freed (or found already gone), one line each.
    pub freed: Vec<String>,
    /// What could not be freed, with why.
    pub failed: Vec<String>,
    /// Whether another attempt may free what failed (a transient error).
    pub retry: bool,
}

/// What a failed scheduled run's failure meant for its image's scheduled
/// triggers, as the check after the failure found it (`Run::schedule_check`;
/// the rule is `super::pause`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleCheck {
    /// When the check ran.
    pub at: DateTime<Utc>,
    /// The image's `[schedule] pause_after_failures` it was checked with.
    pub pause_after: u32,
    /// The consecutive failed scheduled runs up to this one, oldest first.
    pub failures: Vec<RunId>,
    /// Whether this run's failure paused the image's scheduled triggers.
    pub paused: bool,
    /// What the image's approvers and the operators were told of the pause.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<super::approval::Notification>,
}

/// An operator's resume of an image's paused scheduled triggers, recorded
/// on the newest failed scheduled run of the image (`Run::schedule_resumed`):
/// failures up to that run no longer count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleResume {
    /// When.
    pub at: DateTime<Utc>,
    /// Who (the operator as the factory identified them).
    pub by: String,
    /// Why, when they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One run of the factory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Unique id.
    pub id: RunId,
    /// The image definition built.
    pub image: String,
    /// The version allocated at creation; every stage uses it.
    pub version: ImageVersion,
    /// What started it.
    pub trigger: Trigger,
    /// Where it is.
    pub status: RunStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// One record per stage, in [`Stage::ALL`] order.
    pub stages: Vec<StageRecord>,
    /// Tags stamped on every artifact (gitRef, imageVersion, ...).
    pub tags: BTreeMap<String, String>,
    /// Validate stage warnings.
    pub findings: Vec<FindingRecord>,
    /// Build stage output.
    pub build: Option<BuildResult>,
    /// Test stage checks.
    pub checks: Vec<String>,
    /// The test stage's declaration checks, for an image with `[declare]`:
    /// one result per declared check, passed or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declaration: Option<Box<DeclarationRecord>>,
    /// The test stage's patch gate, for an image with `[patch]`: the
    /// verdict, or why it failed, waits or went on unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Box<PatchRecord>>,
    /// Approval request and decisions.
    pub approval: Option<ApprovalRequest>,
    /// Every decision taken, in order (the audit trail).
    pub decisions: Vec<Decision>,
    /// The release metadata.
    pub release: Option<ReleaseRecord>,
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
    /// The content hash of its build inputs (template files, variables, base image version).
    #[serde(default)]
    pub inputs_hash: Option<String>,
    /// Its build inputs one by one, so the release notes can name what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<InputManifest>,
    /// Where its source comes from: the commit and the snapshot every
    /// stage reads (`None` for runs made before snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<super::source::SourceRecord>,
    /// Why nothing was built, for a skipped run.
    #[serde(default)]
    pub skipped: Option<String>,
    /// The git tag of the released commit (`<image>/<version>`), once tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_tag: Option<GitTagRecord>,
    /// What the run owes the outside world after it ended (release events),
    /// and each delivery's record ([`super::followup`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow_ups: Vec<FollowUp>,
    /// The earliest next delivery attempt of [`Run::follow_ups`], in Unix
    /// seconds; `None` when nothing is owed. The store indexes it.
    #[serde(
        default,
        with = "chrono::serde::ts_seconds_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub follow_ups_due: Option<DateTime<Utc>>,
    /// The operator's cancel and the freeing of what the run had started,
    /// for a run that is `cancelling` or `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation: Option<Cancellation>,
    /// For a failed scheduled run: whether its failure paused the image's
    /// scheduled triggers, and who was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_check: Option<ScheduleCheck>,
    /// For a failed scheduled run: the operator's resume of the image's
    /// scheduled triggers made after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_resumed: Option<ScheduleResume>,
    /// What the reaper deleted (or, in dry-run mode, would delete) of the
    /// cloud resources the run left behind ([`super::reaper`]), one record
    /// per resource, the latest outcome kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reaped: Vec<ReapRecord>,
    /// The boot diagnostics of the run's VMs kept after a failure, one
    /// record per VM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_diagnostics: Vec<BootDiagnosticsRecord>,
}

/// What the reaper did to one resource a run left behind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReapRecord {
    /// The resource's id (a resource group's for a group).
    pub resource: String,
    /// Its type (`Microsoft.Compute/virtualMachines`, ... ;
    /// `Microsoft.Resources/resourceGroups` for a group).
    pub resource_type: String,
    /// What happened.
    pub outcome: ReapOutcome,
    /// Why it was reaped, or why its deletion failed.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// How a reaping ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReapOutcome {
    /// Deleted (or already gone).
    Deleted,
    /// Dry-run mode: it would have been deleted.
    WouldDelete,
    /// The deletion failed; the next firing tries again.
    Failed,
}

impl ReapOutcome {
    /// The outcome's wire name (`would-delete`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ReapOutcome::Deleted => "deleted",
            ReapOutcome::WouldDelete => "would-delete",
            ReapOutcome::Failed => "failed",
        }
    }
}

/// The boot diagnostics of one VM a failed run kept: where its serial log
/// and screenshot are kept, or why they are not (yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootDiagnosticsRecord {
    /// The VM's resource id.
    pub vm: String,
    /// What the VM was for: `build` or `test` (its `image-factory` tag).
    pub role: String,
    /// The serial log's URL in the log store, once saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_log: Option<String>,
    /// The screenshot's URL in the log store, once saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screenshot: Option<String>,
    /// Tries made.
    pub attempts: u32,
    /// What the last try found, when nothing was saved (boot diagnostics
    /// just turned on, an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When the last try was made.
    pub at: DateTime<Utc>,
}

impl Run {
    /// A new run, queued, with every stage pending. The trigger's text from
    /// outside is kept with its control characters escaped
    /// ([`Trigger::escaped`]).
    pub fn new(
        id: RunId,
        image: String,
        version: ImageVersion,
        trigger: Trigger,
        tags: BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Run {
        Run {
            id,
            image,
            version,
            trigger: trigger.escaped(),
            status: RunStatus::Queued,
            created_at: now,
            updated_at: now,
            stages: Stage::ALL.into_iter().map(StageRecord::new).collect(),
            tags,
            findings: Vec::new(),
            build: None,
            checks: Vec::new(),
            declaration: None,
            patch: None,
            approval: None,
            decisions: Vec::new(),
            release: None,
            failure: None,
            inputs_hash: None,
            inputs: None,
            source: None,
            skipped: None,
            git_tag: None,
            follow_ups: Vec::new(),
            follow_ups_due: None,
            reaped: Vec::new(),
            boot_diagnostics: Vec::new(),
            cancellation: None,
            schedule_check: None,
            schedule_resumed: None,
        }
    }

    /// The record of one stage.
    pub fn stage(&self, stage: Stage) -> &StageRecord {
        &self.stages[stage.index()]
    }

    pub(crate) fn stage_mut(&mut self, stage: Stage) -> &mut StageRecord {
        &mut self.stages[stage.index()]
    }

    /// The first stage that has not succeeded, if any.
    pub fn current_stage(&self) -> Option<Stage> {
        self.stages
            .iter()
            .find(|s| s.status != StageStatus::Succeeded)
            .map(|s| s.stage)
    }

    /// The stage the run is at, or stopped at: the first that has not
    /// succeeded, the failed one for a run that failed, the one it was at
    /// for a cancelled run; `None` for a released or skipped run (and a
    /// cancelled one whose first stage had not started).
    pub fn stage_at(&self) -> Option<Stage> {
        match self.status {
            RunStatus::Released | RunStatus::Skipped => None,
            RunStatus::Cancelling | RunStatus::Cancelled => {
                self.cancellation.as_ref().and_then(|c| c.stage)
            }
            RunStatus::Failed | RunStatus::Rejected | RunStatus::ApprovalExpired => self
                .failure
                .as_ref()
                .and_then(|f| f.stage)
                .or_else(|| self.current_stage()),
            RunStatus::Queued | RunStatus::Running | RunStatus::WaitingForApproval => {
                self.current_stage()
            }
        }
    }

    /// The approvers a run waiting for approval waits on: those asked who
    /// have not decided yet, in the request's order. Empty for a run that
    /// does not wait for approval.
    pub fn waiting_on(&self) -> Vec<&str> {
        let Some(request) = self
            .approval
            .as_ref()
            .filter(|_| self.status == RunStatus::WaitingForApproval)
        else {
            return Vec::new();
        };
        request
            .approvers
            .iter()
            .filter(|a| !self.decisions.iter().any(|d| &d.approver == *a))
            .map(String::as_str)
            .collect()
    }

    /// When the run reached its end: the release stage's end for a
    /// released run, the failure's time for a run that failed, was
    /// rejected or expired, the freeing's end for a cancelled run, its last
    /// change otherwise.
    pub fn ended_at(&self) -> DateTime<Utc> {
        let ended = match self.status {
            RunStatus::Released => self.stage(Stage::Release).finished_at,
            RunStatus::Failed | RunStatus::Rejected | RunStatus::ApprovalExpired => {
                self.failure.as_ref().map(|f| f.at)
            }
            RunStatus::Cancelled => self
                .cancellation
                .as_ref()
                .and_then(|c| c.freeing.finished_at),
            _ => None,
        };
        ended.unwrap_or(self.updated_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_the_ids_the_factory_makes_and_nothing_else() {
        for id in [
            "push-example-0123456789ab",
            "push-example-0123456789abcdef0123456789abcdef01234567",
            "pt-example-2026-11",
            "oob-example-00ff00ff00ff00ff",
            "base-example-20348.2849.241109",
            "r1",
        ] {
            let parsed: RunId = id.parse().unwrap();
            assert_eq!(parsed.to_string(), id);
            assert_eq!(serde_json::to_string(&parsed).unwrap(), format!("\"{id}\""));
        }
        let longest = "a".repeat(MAX_RUN_ID);
        assert!(longest.parse::<RunId>().is_ok());
        for bad in [
            String::new(),
            "..".into(),
            "../../somewhere".into(),
            "/tmp/somewhere".into(),
            "a/b".into(),
            "a\\b".into(),
            "push-example-..-x".into(),
            ".hidden".into(),
            "-flag".into(),
            "Push-Example".into(),
            "a b".into(),
            "a%2Fb".into(),
            "a\0b".into(),
            format!("{longest}a"),
        ] {
            assert!(bad.parse::<RunId>().is_err(), "{bad:?}");
            assert!(serde_json::from_value::<RunId>(serde_json::json!(bad)).is_err());
        }
    }

    #[test]
    fn a_refused_id_is_shown_short_and_escaped() {
        let error = format!("{}\n", "x/".repeat(100))
            .parse::<RunId>()
            .unwrap_err();
        let message = error.to_string();
        assert!(!message.contains('\n'));
        assert!(message.len() < 400, "{message}");
    }
}
