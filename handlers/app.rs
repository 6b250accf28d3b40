//! The handler's shared state, and the one way runs come into existence.
//!
//! Every trigger (push, Patch Tuesday, an operator) ends in [`App::create_run`],
//! with the source snapshot the trigger took ([`crate::sources`]): the image
//! and its `image.toml` come from that snapshot, not from what the factory
//! read at start, and the run records it. It decides whether the run builds
//! at all (build avoidance, on the image folder's files in the snapshot), allocates the
//! version of a run that builds from the store's per-image counter, computes
//! its tags, and stores it under an id that the trigger chose. Triggers choose
//! deterministic ids (`push-<image>-<commit>`, `pt-<image>-<month>`), so a
//! redelivered webhook or a timer that fires twice finds the run it already
//! created instead of starting a second one.
//!
//! Versions are never wasted: the counter hands a number to a run id, and
//! the same id asking again (a concurrent duplicate of the trigger, a
//! redelivery after a crash) gets the same number, so twenty identical pushes
//! at once move the counter by one. A run whose inputs are identical to the
//! image's last release is skipped here, before any number is allocated: it
//! carries the released version it is identical to.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::approval::{IssuedLink, KeyRing};
use crate::domain::image::{ImageConfig, ImageSettings, children_of};
use crate::domain::machine::{Command, Event, decide, follow_up};
use crate::domain::run::{Run, RunId, RunStatus, Stage, Trigger, TriggerKind};
use crate::domain::tags::{TagInputs, computed_tags};
use crate::domain::version::VersionError;
use crate::ports::clock::{Clock, Ids};
use crate::ports::executor::Executor;
use crate::ports::gallery::Gallery;
use crate::ports::git::GitTags;
use crate::ports::leftovers::Leftovers;
use crate::ports::logs::LogStore;
use crate::ports::marketplace::MarketplaceImages;
use crate::ports::notifier::Notifier;
use crate::ports::security_updates::SecurityUpdates;
use crate::ports::store::{RunQuery, RunStore, StoreError};
use crate::ports::test_env::TestEnvironment;
use crate::ports::workers::Workers;
use crate::protocol::InvocationResponse;
use crate::sources::{Snapshot, SourceError, Sources};
use crate::stages::{ApprovalLinks, Ports, StageResult};

/// Secrets that authenticate incoming triggers.
#[derive(Clone, Default)]
pub struct TriggerSecrets {
    /// GitHub's webhook secret (`IMAGE_FACTORY_GITHUB_SECRET`).
    pub github: Option<String>,
    /// The bearer token of out-of-band triggers (`IMAGE_FACTORY_OPERATOR_TOKEN`).
    pub operator: Option<String>,
    /// The Azure DevOps service hook's secret (`IMAGE_FACTORY_AZURE_DEVOPS_SECRET`).
    pub azure_devops: Option<String>,
}

impl std::fmt::Debug for TriggerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("TriggerSecrets")
            .field("github", &redact(&self.github))
            .field("operator", &redact(&self.operator))
            .field("azure_devops", &redact(&self.azure_devops))
            .finish()
    }
}

/// Compares a presented secret with the expected one in constant time.
pub fn secret_matches(expected: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (
        Sha256::digest(expected.as_bytes()),
        Sha256::digest(presented.as_bytes()),
    );
    bool::from(a.ct_eq(&b))
}

/// The credentials of an `Authorization` header that uses `scheme`
/// (`Bearer`, `Basic`). The scheme is matched without regard to case, as
/// RFC 9110 (section 11.1) says; `None` when the header uses another scheme
/// or carries no credentials.
pub fn authorization<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (name, credentials) = header.trim_start().split_once([' ', '\t'])?;
    let credentials = credentials.trim();
    (name.eq_ignore_ascii_case(scheme) && !credentials.is_empty()).then_some(credentials)
}

/// How long the views keep the images of the built branch's head before
/// reading the head again ([`App::current_images`]).
pub const HEAD_FRESH: chrono::Duration = chrono::Duration::seconds(60);

/// Everything a function needs.
#[derive(Clone)]
pub struct App {
    /// Where runs live.
    pub store: Arc<dyn RunStore>,
    /// Where builds run on this machine.
    pub executor: Arc<dyn Executor>,
    /// Build workers off the host, when builds run there (Azure); `None`:
    /// the build stage runs packer through `executor`.
    pub workers: Option<Arc<dyn Workers>>,
    /// Where the logs of builds off the host are kept.
    pub logs: Arc<dyn LogStore>,
    /// Where released versions live.
    pub gallery: Arc<dyn Gallery>,
    /// Where smoke tests run, in order of preference: the first that accepts a test runs it.
    pub test_environments: Vec<Arc<dyn TestEnvironment>>,
    /// Where base image versions are listed.
    pub marketplace: Arc<dyn MarketplaceImages>,
    /// What the reaper works with, when runs create cloud resources (Azure);
    /// `None`: nothing outlives a run, the reaper has nothing to do.
    pub reaper: Option<ReaperPorts>,
    /// Microsoft's security data: the patch gate's and the fleet view's.
    pub security_updates: Arc<dyn SecurityUpdates>,
    /// Where released commits are tagged `<image>/<version>`.
    pub git_tags: Arc<dyn GitTags>,
    /// The image definitions read at start, by name: what the views fall
    /// back on when the built branch's head cannot be read
    /// ([`App::current_images`]), and the images of runs made before
    /// snapshots. Runs never use them: each run's image and settings come
    /// from its own source snapshot.
    pub images: Arc<BTreeMap<String, ImageConfig>>,
    /// Where runs' sources come from and their snapshots are kept.
    pub sources: Arc<Sources>,
    /// The factory's settings.
    pub settings: Arc<Settings>,
    /// Approval link signing keys.
    pub keys: Arc<KeyRing>,
    /// Secrets of incoming triggers.
    pub secrets: Arc<TriggerSecrets>,
    /// Tells approvers about runs waiting for them.
    pub notifier: Notifier,
    /// Where release events go (Event Grid, webhooks).
    pub follow_ups: crate::followups::FollowUps,
    /// The clock.
    pub clock: Clock,
    /// Where worker ids and approval token ids come from.
    pub ids: Ids,
    /// Cancelled when the handler shuts down: long work stops and its message is retried.
    pub shutdown: CancellationToken,
}

/// The reaper's port and settings (docs/reaper.md).
#[derive(Clone)]
pub struct ReaperPorts {
    /// What runs left behind.
    pub leftovers: Arc<dyn Leftovers>,
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
    /// A resource of a run the store does not know is deleted once older than this.
    pub max_age: chrono::Duration,
}

/// The body of every stage message: which run, which stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageMessage {
    /// The run.
    pub run_id: RunId,
    /// The stage to run.
    pub stage: Stage,
}

/// What [`App::create_run`] did.
#[derive(Debug)]
pub enum Created {
    /// A new run.
    New(Run),
    /// The trigger had already created this run; nothing new was stored.
    Existing(Run),
}

impl Created {
    /// The run, new or existing.
    pub fn run(&self) -> &Run {
        match self {
            Created::New(run) | Created::Existing(run) => run,
        }
    }
}

/// Why a run could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// No image of that name in the run's source.
    #[error(
        "there is no image named {0} in the source snapshot; images are the folders of the images directory with an image.toml"
    )]
    UnknownImage(String),
    /// The source snapshot could not be taken or read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The id the trigger composed is not a run id.
    #[error("{0}; the trigger sent something the factory cannot name a run after")]
    Id(#[from] crate::domain::run::RunIdError),
    /// The version could not be allocated.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state machine refused to skip the new run (a defect: nothing has started it).
    #[error("the new run could not be marked skipped: {0}")]
    Skip(crate::domain::machine::TransitionError),
    /// The image's template folder could not be read.
    #[error("cannot read the image's template folder: {0}")]
    Inputs(String),
    /// The run is scheduled and the image's scheduled runs are paused.
    #[error("{}", .pause.describe(.image))]
    Paused {
        /// The image.
        image: String,
        /// Since when, after which runs.
        pause: crate::domain::pause::Pause,
    },
    /// The image is built on a factory image that was never released.
    #[error(
        "image {image} is built on {parent}, which has no release yet; release {parent} first: its release starts {image}"
    )]
    ParentNotReleased {
        /// The image.
        image: String,
        /// Its parent.
        parent: String,
    },
}

impl CreateError {
    /// The HTTP status that answers a trigger this error stopped: 422 for a
    /// request that names what does not exist, 503 for a failure worth retrying.
    pub fn http_status(&self) -> u16 {
        match self {
            CreateError::UnknownImage(_) | CreateError::Id(_) | CreateError::Version(_) => 422,
            CreateError::ParentNotReleased { .. } | CreateError::Paused { .. } => 409,
            CreateError::Source(e) if !e.is_transient() => 422,
            CreateError::Store(_)
            | CreateError::Inputs(_)
            | CreateError::Skip(_)
            | CreateError::Source(_) => 503,
        }
    }
}

impl App {
    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// What signs approval links.
    pub fn links(&self) -> ApprovalLinks<'_> {
        ApprovalLinks {
            keys: &self.keys,
            public_url: &self.settings.public_url,
        }
    }

    /// The link of an issued approval token (see [`ApprovalLinks::url`]).
    pub fn approval_url(
        &self,
        run_id: &str,
        link: &IssuedLink,
        expires_at: DateTime<Utc>,
    ) -> String {
        self.links().url(run_id, link, expires_at)
    }

    /// The ports a stage body of `run` may use, at the current time.
    pub fn stage_ports(&self, run: &Run) -> Ports<'_> {
        Ports {
            executor: self.executor.as_ref(),
            workers: self.workers.as_deref(),
            logs: self.logs.as_ref(),
            test_environments: &self.test_environments,
            gallery: self.gallery.as_ref(),
            store: self.store.as_ref(),
            security_updates: self.security_updates.as_ref(),
            notifier: &self.notifier,
            links: self.links(),
            ids: &self.ids,
            packer: self.settings.packer.clone(),
            run_dir: self.settings.run_dir(&run.id),
            now: self.now(),
            cancel: self.shutdown.child_token(),
        }
    }

    /// Runs the body of `stage` for `run` with this app's ports, on the
    /// run's own source: its snapshot, unpacked into the run's folder for
    /// the stages that read files (validate, build, test).
    pub async fn execute_stage(&self, run: &Run, stage: Stage) -> StageResult {
        // A build off the host unpacks the snapshot on its worker, not here.
        let files = match stage {
            Stage::Validate | Stage::Test => true,
            Stage::Build => self.workers.is_none(),
            _ => false,
        };
        match self.run_image(run, files).await {
            Ok(image) => crate::stages::execute(&self.stage_ports(run), run, &image, stage).await,
            Err(e) if e.transient => StageResult::Retry(e.message),
            Err(e) => StageResult::Failed(e.message),
        }
    }

    /// An image read at start, by name (see [`App::images`]).
    pub fn image(&self, name: &str) -> Option<&ImageConfig> {
        self.images.get(name)
    }

    /// Where a run's snapshot is unpacked: `<run folder>/source`.
    pub fn source_dir(&self, run: &Run) -> std::path::PathBuf {
        self.settings.run_dir(&run.id).join("source")
    }

    /// The image of `run` as its source snapshot holds it, unpacked into the
    /// run's folder when `files`. A run made before snapshots has none: it
    /// uses the image read at start.
    pub async fn run_image(
        &self,
        run: &Run,
        files: bool,
    ) -> Result<ImageConfig, crate::ports::PortError> {
        use crate::ports::PortError;
        let Some(source) = &run.source else {
            return self.image(&run.image).cloned().ok_or_else(|| {
                PortError::permanent(format!(
                    "image {} is no longer configured and the run has no source snapshot; start a new run",
                    run.image
                ))
            });
        };
        let failed = |e: SourceError| {
            let message = format!("run {}: {e}", run.id);
            if e.is_transient() {
                PortError::transient(message)
            } else {
                PortError::permanent(message)
            }
        };
        let tree = self.sources.open(&source.snapshot).await.map_err(failed)?;
        let dir = self.source_dir(run);
        let image =
            crate::sources::image_config(&tree, &run.image, &self.settings.repo_images_path, &dir)
                .map_err(PortError::permanent)?;
        if files {
            crate::sources::unpack(tree, &dir).await.map_err(failed)?;
        }
        Ok(image)
    }

    /// The settings of `run`'s image from its snapshot, if they can be read.
    pub async fn run_settings(&self, run: &Run) -> Option<ImageSettings> {
        self.run_image(run, false)
            .await
            .ok()
            .map(|image| image.settings)
    }

    /// The images of the head of the first built branch, by name: what the
    /// fleet page, the dashboard and the sweeper's search for parents list.
    /// The head is read at most once every [`HEAD_FRESH`] (a snapshot is
    /// taken only when it moved), so a page view costs no snapshot; an image
    /// whose `image.toml` is refused there is left out (its runs fail on
    /// their own). When no head was ever read and none can be, the images
    /// read at start. Runs never use these: each run's images come from its
    /// own snapshot.
    pub async fn current_images(&self) -> Arc<BTreeMap<String, ImageConfig>> {
        let branch = self
            .settings
            .branches
            .first()
            .map_or("main", String::as_str);
        match self
            .sources
            .head_cached(branch, self.now(), HEAD_FRESH)
            .await
        {
            Ok(head) => Arc::new(
                head.images(&self.settings.repo_images_path)
                    .into_iter()
                    .filter_map(|(name, settings)| {
                        let settings = settings.ok()?;
                        Some((
                            name.clone(),
                            ImageConfig {
                                dir: self.settings.images_dir.join(&name),
                                name,
                                settings,
                            },
                        ))
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(%branch, error = %e, "the built branch's images cannot be read; listing the images read at start");
                Arc::clone(&self.images)
            }
        }
    }

    /// The snapshot of the head of the first built branch now: the source
    /// of runs no push started (Patch Tuesday, out-of-band, base images).
    pub async fn head_snapshot(
        &self,
        repository: Option<&crate::domain::run::RepositoryRef>,
    ) -> Result<Snapshot, SourceError> {
        let branch = self
            .settings
            .branches
            .first()
            .map_or("main", String::as_str);
        self.sources.take_head(repository, branch).await
    }

    /// Creates the run `id` for `image`, or finds the one created earlier under that id.
    /// Triggers compose ids from what they were sent (an image name, a
    /// commit, a base image version); the id is parsed here, once.
    /// The image and its settings come from `source`; settings that do not
    /// parse still make a run (versioned by date), which its validate stage
    /// fails with the file and line, so one broken image stops only its own run.
    pub async fn create_run(
        &self,
        id: String,
        image: &str,
        mut trigger: Trigger,
        source: &Snapshot,
    ) -> Result<Created, CreateError> {
        let settings = source
            .images(&self.settings.repo_images_path)
            .remove(image)
            .ok_or_else(|| CreateError::UnknownImage(image.to_string()))?;
        let id: RunId = id.parse()?;
        match self.store.get(&id).await {
            Ok(existing) => return Ok(Created::Existing(existing.value)),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // An image built on another of the factory's images builds on its
        // parent's current release (its newest release no rollback
        // withdrew): that version is its base, passed to the template and
        // part of its inputs.
        if trigger.commit.is_none() {
            trigger.commit = source.commit.clone();
        }
        // A scheduled run of an image whose scheduled runs are paused is
        // not made (pushes and out-of-band runs always are).
        if crate::domain::pause::is_scheduled(trigger.kind) {
            let pause_after = settings
                .as_ref()
                .map_or(crate::domain::pause::DEFAULT_PAUSE_AFTER, |s| {
                    s.schedule.pause_after_failures
                });
            let state = crate::schedules::state(self.store.as_ref(), image, pause_after).await?;
            if let crate::domain::pause::ScheduleState::Paused(pause) = state {
                return Err(CreateError::Paused {
                    image: image.to_string(),
                    pause,
                });
            }
        }
        let record = source.record(image);
        let Ok(settings) = settings else {
            return self.create_unreadable(id, image, trigger, record).await;
        };
        if let Some(parent) = settings.parent()
            && trigger.base_image_version.is_none()
        {
            let Some(release) = self.current_release(parent).await? else {
                return Err(CreateError::ParentNotReleased {
                    image: image.to_string(),
                    parent: parent.to_string(),
                });
            };
            trigger.base_image_version = Some(release.version.to_string());
        }
        let now = self.now();
        let today = now.date_naive();
        let inputs = {
            let (source, image) = (source.clone(), image.to_string());
            let (settings, base) = (settings.clone(), trigger.base_image_version.clone());
            tokio::task::spawn_blocking(move || source.inputs(&image, &settings, base.as_deref()))
                .await
                .map_err(|e| CreateError::Inputs(e.to_string()))?
        };
        let identical = if trigger.force {
            None
        } else {
            self.identical_release(image, &inputs.hash).await?
        };
        let (version, skipped) = match identical {
            Some(release) => {
                let reason = format!(
                    "unchanged since run {}: its inputs (template files, variables, baseline, base image version) are identical to version {}'s; trigger with force to build anyway",
                    release.id, release.version
                );
                (release.version, Some(reason))
            }
            None => {
                let strategy = settings.version;
                let sequence = self
                    .store
                    .next_sequence(image, &strategy.scope(today), &id)
                    .await?;
                (strategy.version(today, sequence)?, None)
            }
        };
        let tags = computed_tags(&TagInputs {
            common: &settings.tags,
            git_ref: trigger.commit.as_deref(),
            version,
            gallery_image_name: settings.gallery_image_name.as_deref(),
            image_name: image,
            build_date: today,
            baseline_version: &settings.baseline_version,
        });
        let mut run = Run::new(id, image.to_string(), version, trigger, tags, now);
        run.inputs_hash = Some(inputs.hash);
        run.inputs = inputs.manifest;
        run.source = Some(record);
        if let Some(reason) = skipped {
            run = decide(&run, &Event::Skipped { at: now, reason })
                .map_err(CreateError::Skip)?
                .run;
        }
        self.store_new(run).await
    }

    /// A run of an image whose `image.toml` does not parse at its source:
    /// versioned by date (the default strategy), with nothing else known;
    /// its validate stage fails it, naming the file and line.
    async fn create_unreadable(
        &self,
        id: RunId,
        image: &str,
        trigger: Trigger,
        record: crate::domain::source::SourceRecord,
    ) -> Result<Created, CreateError> {
        let now = self.now();
        let strategy = crate::domain::version::VersionStrategy::Date;
        let sequence = self
            .store
            .next_sequence(image, &strategy.scope(now.date_naive()), &id)
            .await?;
        let version = strategy.version(now.date_naive(), sequence)?;
        let mut run = Run::new(
            id,
            image.to_string(),
            version,
            trigger,
            BTreeMap::new(),
            now,
        );
        run.source = Some(record);
        self.store_new(run).await
    }

    /// Stores a new run, or finds the one stored under its id meanwhile.
    async fn store_new(&self, run: Run) -> Result<Created, CreateError> {
        let image = run.image.as_str();
        match self.store.create(&run).await {
            Ok(_) => {
                match &run.skipped {
                    Some(reason) => tracing::info!(run_id = %run.id, image, %reason, "run skipped"),
                    None => {
                        tracing::info!(run_id = %run.id, image, version = %run.version, "run created")
                    }
                }
                Ok(Created::New(run))
            }
            Err(StoreError::Conflict { .. }) => {
                Ok(Created::Existing(self.store.get(&run.id).await?.value))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The image's current release, when its inputs hash is `inputs`: a
    /// withdrawn version is never a reason to build nothing.
    async fn identical_release(
        &self,
        image: &str,
        inputs: &str,
    ) -> Result<Option<Run>, StoreError> {
        Ok(self
            .current_release(image)
            .await?
            .filter(|last| last.inputs_hash.as_deref() == Some(inputs)))
    }

    /// Tags the commit `run` built, released, as `<image>/<version>` where
    /// its push came from, and records the outcome on the run. Nothing to
    /// try (no commit, already tagged, a failure not due again) changes
    /// nothing; a failure is recorded with its next attempt, never fails
    /// anything, and the sweeper tries again.
    ///
    /// The outcome is recorded at `now`, the time the try was decided (the
    /// release's time for the try beside it), however late the task runs.
    pub async fn tag_release(&self, run: &Run, now: DateTime<Utc>) {
        let Some(record) =
            crate::stages::git_tag::tag_release(self.git_tags.as_ref(), run, now).await
        else {
            return;
        };
        let event = Event::GitTagged(record);
        if let Err(e) =
            crate::ports::store::update_run(self.store.as_ref(), &run.id, |run| decide(run, &event))
                .await
        {
            tracing::warn!(run_id = %run.id, error = %e, "the git tag's outcome was not recorded; the sweeper tries again");
        }
    }

    /// What holds the resources of run `id` when it is cancelled.
    pub fn cancel_resources(&self, id: &RunId) -> crate::cancel::Resources<'_> {
        crate::cancel::Resources {
            workers: self.workers.as_deref(),
            executor: self.executor.as_ref(),
            packer: self.settings.packer.as_deref(),
            test_environments: &self.test_environments,
            run_dir: self.settings.run_dir(id),
        }
    }

    /// Carries out the cancel of run `id` ([`crate::cancel::finish`]): frees
    /// what it holds and records it; a run that ends `cancelled` here has
    /// its event delivered beside, never holding up the answer.
    pub async fn finish_cancel(
        &self,
        id: &RunId,
    ) -> Result<crate::domain::machine::Transition, crate::ports::store::UpdateError> {
        let clock = self.clock.clone();
        let t = crate::cancel::finish(
            self.store.as_ref(),
            &self.cancel_resources(id),
            id,
            move || clock(),
        )
        .await?;
        if t.changed && t.run.follow_ups_due.is_some() {
            crate::followups::spawn_delivery(
                self.follow_ups.clone(),
                self.store.clone(),
                id.clone(),
                self.now(),
            );
        }
        Ok(t)
    }

    /// The `[schedule] pause_after_failures` of `image` as read at start (the
    /// default for an image not known then).
    pub fn pause_after(&self, image: &str) -> u32 {
        self.image(image)
            .map_or(crate::domain::pause::DEFAULT_PAUSE_AFTER, |i| {
                i.settings.schedule.pause_after_failures
            })
    }

    /// The page of `image` on the factory's dashboard.
    pub fn image_url(&self, image: &str) -> String {
        format!(
            "{}/api/dashboard/images/{image}",
            self.settings.public_url.trim_end_matches('/')
        )
    }

    /// The check after the scheduled run `run` failed
    /// ([`crate::schedules::check`]), with the image's approvers and
    /// `pause_after_failures` from the run's own source and the configured
    /// operators. A failure is logged: the sweeper checks again.
    pub async fn check_schedule(&self, run: &Run) {
        let settings = self.run_settings(run).await;
        let (pause_after, approvers) = match settings
            .as_ref()
            .or_else(|| self.image(&run.image).map(|i| &i.settings))
        {
            Some(s) => (
                s.schedule.pause_after_failures,
                s.approval.approvers.clone(),
            ),
            None => (crate::domain::pause::DEFAULT_PAUSE_AFTER, Vec::new()),
        };
        let mut recipients = approvers;
        for operator in &self.settings.operators {
            if !recipients.contains(operator) {
                recipients.push(operator.clone());
            }
        }
        let telling = crate::schedules::Telling {
            notifier: &self.notifier,
            recipients,
            url: self.image_url(&run.image),
        };
        if let Err(e) =
            crate::schedules::check(self.store.as_ref(), run, pause_after, &telling, self.now())
                .await
        {
            tracing::warn!(run_id = %run.id, error = %e, "the schedule check was not recorded; the sweeper checks again");
        }
    }

    /// The image's current release: its newest released run that no
    /// rollback withdrew ([`crate::domain::rollback`]). Children build on
    /// it, and build avoidance compares with it.
    pub async fn current_release(&self, image: &str) -> Result<Option<Run>, StoreError> {
        let query = RunQuery {
            image: Some(image.to_string()),
            statuses: vec![RunStatus::Released],
            limit: 1,
            continuation: None,
            without_withdrawn: true,
        };
        Ok(self.store.list(&query).await?.runs.into_iter().next())
    }

    /// Starts the runs of the images built on `parent`'s released run
    /// (`base-<child>-<version>`, the version as their base): created once
    /// however often this is called, and skipped by build avoidance when a
    /// child's inputs did not change. Answers what was created or found.
    /// The children are the images of the parent's own snapshot built on
    /// it; their runs' source is the head of the built branch now (taken
    /// once, and only when a child's run is missing).
    pub async fn start_children(&self, parent: &Run) -> Vec<Result<Created, CreateError>> {
        let mut started = Vec::new();
        let Some(parent_source) = &parent.source else {
            return self.start_children_of(parent, &self.images).await;
        };
        let parent_tree = match self.sources.open(&parent_source.snapshot).await {
            Ok(tree) => tree,
            Err(e) => return vec![Err(e.into())],
        };
        let mut snapshot: Option<Snapshot> = None;
        let known = crate::sources::images(&parent_tree, &self.settings.repo_images_path);
        for (child, settings) in &known {
            let is_child = settings
                .as_ref()
                .is_ok_and(|s| s.parent() == Some(parent.image.as_str()));
            if !is_child {
                continue;
            }
            let id = format!("base-{child}-{}", parent.version);
            if let Some(run) = self.existing(&id).await {
                started.push(Ok(Created::Existing(run)));
                continue;
            }
            if snapshot.is_none() {
                match self.head_snapshot(parent.trigger.repository.as_ref()).await {
                    Ok(taken) => snapshot = Some(taken),
                    Err(e) => return vec![Err(e.into())],
                }
            }
            let Some(source) = &snapshot else { continue };
            started.push(
                self.create_run(id, child, self.child_trigger(parent), source)
                    .await,
            );
        }
        started
    }

    /// A run stored under `id`, if any.
    async fn existing(&self, id: &str) -> Option<Run> {
        let id: RunId = id.parse().ok()?;
        self.store.get(&id).await.ok().map(|stored| stored.value)
    }

    /// The trigger of a child's run on `parent`'s release.
    fn child_trigger(&self, parent: &Run) -> Trigger {
        Trigger {
            reason: Some(format!(
                "base image {} {} released (run {})",
                parent.image, parent.version, parent.id
            )),
            base_image_version: Some(parent.version.to_string()),
            ..Trigger::new(TriggerKind::BaseImageUpdate, "factory")
        }
    }

    /// [`App::start_children`] of a parent run made before snapshots: the
    /// children the factory read at start, on the head's snapshot.
    async fn start_children_of(
        &self,
        parent: &Run,
        images: &BTreeMap<String, ImageConfig>,
    ) -> Vec<Result<Created, CreateError>> {
        let children = children_of(images, &parent.image);
        if children.is_empty() {
            return Vec::new();
        }
        let source = match self.head_snapshot(parent.trigger.repository.as_ref()).await {
            Ok(source) => source,
            Err(e) => return vec![Err(e.into())],
        };
        let mut started = Vec::new();
        for child in children {
            let trigger = Trigger {
                reason: Some(format!(
                    "base image {} {} released (run {})",
                    parent.image, parent.version, parent.id
                )),
                base_image_version: Some(parent.version.to_string()),
                ..Trigger::new(TriggerKind::BaseImageUpdate, "factory")
            };
            let id = format!("base-{child}-{}", parent.version);
            started.push(self.create_run(id, child, trigger, &source).await);
        }
        started
    }
}

/// Adds the messages for `commands` to the response's Service Bus outputs.
/// Each output binding is named after the stage it feeds (`build` → queue `stage-build`).
pub fn dispatch(response: &mut InvocationResponse, run_id: &str, commands: &[Command]) {
    for Command::Dispatch(stage) in commands {
        let message = serde_json::json!({ "runId": run_id, "stage": stage });
        match response.outputs.get_mut(stage.name()) {
            Some(serde_json::Value::Array(items)) => items.push(message),
            _ => {
                response.outputs.insert(
                    stage.name().to_string(),
                    serde_json::Value::Array(vec![message]),
                );
            }
        }
        response.log(format!("dispatched {stage} for run {run_id}"));
    }
}

/// Dispatches whatever the run's state says comes next (used after a run is found or created).
pub fn dispatch_follow_up(response: &mut InvocationResponse, run: &Run) {
    dispatch(response, &run.id, &follow_up(run));
}

#[cfg(test)]
mod tests {
    use super::authorization;

    #[test]
    fn the_authorization_scheme_is_matched_without_regard_to_case() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER  t0k ", "BeArEr\tt0k"] {
            assert_eq!(authorization(header, "Bearer"), Some("t0k"), "{header:?}");
        }
        for header in [
            "Bearer",
            "Bearer ",
            "Basic t0k",
            "Bearert0k",
            "",
            "Bearer-x t0k",
        ] {
            assert_eq!(authorization(header, "Bearer"), None, "{header:?}");
        }
    }
}
