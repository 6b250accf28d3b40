//! The run store contract: what every `RunStore` adapter must do, written
//! once and instantiated per backend by `store_contract!`.
//!
//! A backend supplies a fresh, empty store per case and one hook beyond the
//! port: `corrupt`, which stores an unreadable document for a run the way
//! another writer would (so the run's ETag changes, as any write changes it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use image_factory::azure::cosmos::CosmosStore;
use image_factory::domain::approval::{ApprovalRequest, Decision, Verdict};
use image_factory::domain::machine::{Event, TransitionError, decide};
use image_factory::domain::run::{
    BuildResult, Execution, Run, RunId, RunStatus, Stage, StageOutput, StageStatus, Trigger,
    TriggerKind,
};
use image_factory::domain::version::ImageVersion;
use image_factory::local::sqlite::SqliteStore;
use image_factory::ports::store::{
    ETag, RunQuery, RunStore, StoreError, UpdateError, update_run, update_run_from,
};
use tempfile::TempDir;

mod common;
use common::cosmos_server::CosmosServer;

/// A store under test.
#[async_trait]
trait Backend: Send + Sync {
    /// The store, shareable with spawned tasks.
    fn store(&self) -> Arc<dyn RunStore>;
    /// Replaces the stored document of run `id` with one that does not parse,
    /// as a write by another writer would (its ETag changes).
    async fn corrupt(&self, id: &str);
}

/// Instantiates every contract case for one backend, as `$module::$case`.
macro_rules! store_contract {
    ($module:ident, $open:expr) => {
        store_contract!(@cases $module, $open;
            a_created_run_reads_back_equal_with_the_etag_that_create_returned,
            creating_a_run_whose_id_exists_is_a_conflict_and_keeps_the_first,
            getting_a_run_that_does_not_exist_is_not_found,
            replacing_at_the_current_etag_stores_the_run_under_a_new_etag,
            replacing_at_a_stale_etag_is_refused_and_leaves_the_stored_run_unchanged,
            replacing_a_run_that_does_not_exist_is_not_found,
            listing_pages_newest_first_with_a_continuation_until_the_last_page,
            listing_pages_runs_created_at_the_same_instant_without_loss_or_duplicates,
            listing_filters_by_image_and_by_status,
            a_continuation_token_the_store_did_not_hand_out_is_refused,
            sequences_count_from_zero_per_image_and_scope,
            concurrent_sequence_requests_never_hand_out_the_same_number,
            a_holder_that_asks_again_gets_its_number_and_moves_the_counter_once,
            concurrent_updates_of_one_run_each_land_exactly_once,
            an_update_that_the_machine_refuses_or_that_changes_nothing_writes_nothing,
            an_update_from_a_held_version_lands_on_it_and_returns_the_version_it_left,
            an_update_from_a_stale_held_version_is_decided_again_on_the_stored_run,
            an_unreadable_document_is_reported_as_corrupt_and_never_overwritten,
            image_runs_gives_each_images_latest_released_skipped_and_failed_runs_and_its_runs_in_flight,
            image_runs_keeps_the_newest_runs_in_flight_of_an_image_up_to_the_cap,
            images_patched_since_are_those_with_a_released_or_skipped_run_created_since,
            runs_with_follow_ups_due_are_found_earliest_first_and_no_others,
            a_release_a_rollback_withdrew_is_left_out_wherever_the_current_release_is_asked_for,
        );
    };
    (@cases $module:ident, $open:expr; $($case:ident),* $(,)?) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    let backend = $open;
                    super::$case(&backend).await;
                }
            )*
        }
    };
}

store_contract!(sqlite, SqliteBackend::open());
store_contract!(cosmos, CosmosBackend::open().await);

/// The Cosmos DB adapter on a fresh container of the test server.
struct CosmosBackend {
    store: Arc<CosmosStore>,
}

impl CosmosBackend {
    async fn open() -> CosmosBackend {
        CosmosBackend {
            store: Arc::new(CosmosServer::shared().fresh_store().await),
        }
    }
}

#[async_trait]
impl Backend for CosmosBackend {
    fn store(&self) -> Arc<dyn RunStore> {
        Arc::clone(&self.store) as Arc<dyn RunStore>
    }

    /// Overwrites the run record inside the document with a truncated one,
    /// through the SDK as another writer would (the ETag changes).
    async fn corrupt(&self, id: &str) {
        corrupt_cosmos(&self.store, id).await;
    }
}

/// Replaces the run record of document `id` with [`GARBAGE`] through the SDK.
async fn corrupt_cosmos(store: &CosmosStore, id: &str) {
    let container = store.container();
    let mut doc: serde_json::Value = container
        .read_item(id.to_string(), id, None)
        .await
        .unwrap_or_else(|e| panic!("no run {id} to corrupt: {e}"))
        .into_model()
        .unwrap();
    doc["run"] = serde_json::Value::String(GARBAGE.into());
    container
        .upsert_item(id.to_string(), id, &doc, None)
        .await
        .unwrap();
}

/// The SQLite adapter on a fresh file.
struct SqliteBackend {
    store: Arc<SqliteStore>,
    path: PathBuf,
    _dir: TempDir,
}

impl SqliteBackend {
    fn open() -> SqliteBackend {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("runs.db");
        SqliteBackend {
            store: Arc::new(SqliteStore::open(&path).unwrap()),
            path,
            _dir: dir,
        }
    }

    /// A second connection to the file, as an operator's `sqlite3` shell would be.
    fn raw(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.path).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        c
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn store(&self) -> Arc<dyn RunStore> {
        Arc::clone(&self.store) as Arc<dyn RunStore>
    }

    async fn corrupt(&self, id: &str) {
        let changed = self
            .raw()
            .execute(
                "UPDATE runs SET doc = ?2, rev = rev + 1 WHERE id = ?1",
                [id, GARBAGE],
            )
            .unwrap();
        assert_eq!(changed, 1, "no run {id} to corrupt");
    }
}

/// What `corrupt` stores.
const GARBAGE: &str = "{\"id\": \"half a docu";

/// A run id from a literal.
fn rid(id: &str) -> RunId {
    id.parse().unwrap()
}

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 10, 9, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn new_run(id: &str, image: &str, created_at: DateTime<Utc>) -> Run {
    Run::new(
        id.parse().unwrap(),
        image.into(),
        ImageVersion::new(2026, 1110, 0).unwrap(),
        Trigger {
            commit: Some("0123abc".into()),
            branch: Some("main".into()),
            actor: Some("dev".into()),
            ..Trigger::new(TriggerKind::Push, "github")
        },
        BTreeMap::from([("gitRef".to_string(), "0123abc".to_string())]),
        created_at,
    )
}

fn execution(id: &str) -> Execution {
    Execution {
        message_id: id.into(),
        delivery: 1,
    }
}

fn apply(run: &Run, event: Event) -> Run {
    decide(run, &event)
        .unwrap_or_else(|e| panic!("{event:?} refused: {e}"))
        .run
}

/// A run whose validate, build and test stages succeeded and that now waits
/// for `required` of `approvers`.
fn waiting_for_approval(id: &str, approvers: &[String], required: u32) -> Run {
    let mut run = new_run(id, "web", at(0));
    let outputs = [
        (
            Stage::Validate,
            StageOutput::Validated {
                findings: vec![],
                packer_version: None,
            },
        ),
        (
            Stage::Build,
            StageOutput::Built(BuildResult {
                artifacts: vec![],
                managed_image_id: None,
                gallery_version_id: None,
                log: "build.log".into(),
                duration_seconds: 60,
                evidence: None,
            }),
        ),
        (
            Stage::Test,
            StageOutput::Tested {
                checks: vec!["boots".into()],
                patch: None,
                declaration: None,
            },
        ),
    ];
    for (stage, output) in outputs {
        let exec = execution(stage.name());
        run = apply(
            &run,
            Event::StageStarted {
                stage,
                execution: exec.clone(),
                at: at(1),
            },
        );
        run = apply(
            &run,
            Event::StageSucceeded {
                stage,
                execution: exec,
                at: at(2),
                output,
            },
        );
    }
    run = apply(
        &run,
        Event::StageStarted {
            stage: Stage::Approve,
            execution: execution("approve"),
            at: at(3),
        },
    );
    let run = apply(
        &run,
        Event::ApprovalRequested {
            execution: execution("approve"),
            at: at(3),
            request: ApprovalRequest {
                approvers: approvers.to_vec(),
                required,
                expires_at: at(7 * 24 * 60),
                links: vec![],
                remind_before_hours: 0,
                notifications: vec![],
            },
        },
    );
    assert_eq!(run.status, RunStatus::WaitingForApproval);
    run
}

fn approval(approver: &str, minute: i64) -> Event {
    Event::ApprovalDecided(Decision {
        approver: approver.into(),
        verdict: Verdict::Approve,
        at: at(minute),
        comment: None,
        via: "cli".into(),
        token_id: None,
        recorded_by: None,
    })
}

fn ids(runs: &[Run]) -> Vec<&str> {
    runs.iter().map(|r| r.id.as_str()).collect()
}

async fn a_created_run_reads_back_equal_with_the_etag_that_create_returned(b: &impl Backend) {
    let store = b.store();
    let run = new_run("run-1", "web", at(0));
    let etag = store.create(&run).await.unwrap();

    let stored = store.get(&rid("run-1")).await.unwrap();
    assert_eq!(stored.value, run);
    assert_eq!(stored.etag, etag);
}

async fn creating_a_run_whose_id_exists_is_a_conflict_and_keeps_the_first(b: &impl Backend) {
    let store = b.store();
    let first = new_run("run-1", "web", at(0));
    store.create(&first).await.unwrap();

    let second = new_run("run-1", "db", at(5));
    match store.create(&second).await {
        Err(StoreError::Conflict { id }) => assert_eq!(id, "run-1"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get(&rid("run-1")).await.unwrap().value, first);
}

async fn getting_a_run_that_does_not_exist_is_not_found(b: &impl Backend) {
    match b.store().get(&rid("nope")).await {
        Err(StoreError::NotFound { id }) => assert_eq!(id, "nope"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

async fn replacing_at_the_current_etag_stores_the_run_under_a_new_etag(b: &impl Backend) {
    let store = b.store();
    let mut run = new_run("run-1", "web", at(0));
    let created = store.create(&run).await.unwrap();

    run.status = RunStatus::Running;
    run.updated_at = at(1);
    let replaced = store.replace(&run, &created).await.unwrap();
    assert_ne!(replaced, created);

    let stored = store.get(&rid("run-1")).await.unwrap();
    assert_eq!(stored.value, run);
    assert_eq!(stored.etag, replaced);

    run.updated_at = at(2);
    let again = store.replace(&run, &replaced).await.unwrap();
    assert_ne!(again, replaced);
    assert_ne!(again, created);
}

async fn replacing_at_a_stale_etag_is_refused_and_leaves_the_stored_run_unchanged(
    b: &impl Backend,
) {
    let store = b.store();
    let run = new_run("run-1", "web", at(0));
    let stale = store.create(&run).await.unwrap();
    let mut winner = run.clone();
    winner.status = RunStatus::Running;
    let current = store.replace(&winner, &stale).await.unwrap();

    let mut loser = run.clone();
    loser.status = RunStatus::Failed;
    for etag in [stale, ETag("never-handed-out".into())] {
        match store.replace(&loser, &etag).await {
            Err(StoreError::PreconditionFailed { id }) => assert_eq!(id, "run-1"),
            other => panic!("expected PreconditionFailed at {etag:?}, got {other:?}"),
        }
    }

    let stored = store.get(&rid("run-1")).await.unwrap();
    assert_eq!(stored.value, winner);
    assert_eq!(stored.etag, current);
}

async fn replacing_a_run_that_does_not_exist_is_not_found(b: &impl Backend) {
    let store = b.store();
    let existing = store.create(&new_run("run-1", "web", at(0))).await.unwrap();
    match store
        .replace(&new_run("ghost", "web", at(0)), &existing)
        .await
    {
        Err(StoreError::NotFound { id }) => assert_eq!(id, "ghost"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        store.get(&rid("ghost")).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Follows continuations to the end; returns each page's ids.
async fn all_pages(store: &dyn RunStore, mut query: RunQuery) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    loop {
        let page = store.list(&query).await.unwrap();
        pages.push(page.runs.iter().map(|r| r.id.to_string()).collect());
        match page.continuation {
            Some(token) => query.continuation = Some(token),
            None => return pages,
        }
        assert!(pages.len() <= 100, "the continuation never ends");
    }
}

async fn listing_pages_newest_first_with_a_continuation_until_the_last_page(b: &impl Backend) {
    let store = b.store();
    // Created out of order so that insertion order is not the answer.
    for minute in [3, 0, 6, 1, 5, 2, 4] {
        let run = new_run(&format!("run-{minute}"), "web", at(minute));
        store.create(&run).await.unwrap();
    }

    let pages = all_pages(
        &*store,
        RunQuery {
            limit: 3,
            ..RunQuery::default()
        },
    )
    .await;
    assert_eq!(
        pages,
        [
            vec!["run-6", "run-5", "run-4"],
            vec!["run-3", "run-2", "run-1"],
            vec!["run-0"],
        ]
    );
}

async fn listing_pages_runs_created_at_the_same_instant_without_loss_or_duplicates(
    b: &impl Backend,
) {
    let store = b.store();
    for i in 0..5 {
        store
            .create(&new_run(&format!("run-{i}"), "web", at(0)))
            .await
            .unwrap();
    }
    store
        .create(&new_run("run-late", "web", at(1)))
        .await
        .unwrap();

    let pages = all_pages(
        &*store,
        RunQuery {
            limit: 2,
            ..RunQuery::default()
        },
    )
    .await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 2]);
    let listed: Vec<String> = pages.concat();
    assert_eq!(listed[0], "run-late");
    let distinct: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(distinct.len(), 6, "{listed:?}");
}

async fn listing_filters_by_image_and_by_status(b: &impl Backend) {
    let store = b.store();
    let specs = [
        ("web-queued", "web", RunStatus::Queued),
        ("web-running", "web", RunStatus::Running),
        ("web-released", "web", RunStatus::Released),
        ("db-queued", "db", RunStatus::Queued),
        ("db-failed", "db", RunStatus::Failed),
    ];
    for (minute, (id, image, status)) in (0..).zip(specs) {
        let mut run = new_run(id, image, at(minute));
        run.status = status;
        store.create(&run).await.unwrap();
    }
    // A status changed by a replace is what the filter sees.
    let stored = store.get(&rid("db-queued")).await.unwrap();
    let mut waiting = stored.value.clone();
    waiting.status = RunStatus::WaitingForApproval;
    store.replace(&waiting, &stored.etag).await.unwrap();

    let list = |image: Option<&str>, statuses: Vec<RunStatus>| {
        let store = Arc::clone(&store);
        let query = RunQuery {
            image: image.map(str::to_string),
            statuses,
            limit: 100,
            continuation: None,
            without_withdrawn: false,
        };
        async move { store.list(&query).await.unwrap() }
    };

    let web = list(Some("web"), vec![]).await;
    assert_eq!(
        ids(&web.runs),
        ["web-released", "web-running", "web-queued"]
    );
    assert!(web.continuation.is_none());
    assert!(list(Some("nginx"), vec![]).await.runs.is_empty());

    let active = store.list(&RunQuery::active()).await.unwrap();
    assert_eq!(
        ids(&active.runs),
        ["db-queued", "web-running", "web-queued"]
    );
    let queued = list(None, vec![RunStatus::Queued]).await;
    assert_eq!(ids(&queued.runs), ["web-queued"]);

    let web_ended = list(Some("web"), vec![RunStatus::Released, RunStatus::Failed]).await;
    assert_eq!(ids(&web_ended.runs), ["web-released"]);
}

async fn a_continuation_token_the_store_did_not_hand_out_is_refused(b: &impl Backend) {
    let store = b.store();
    store.create(&new_run("run-1", "web", at(0))).await.unwrap();
    for token in ["not a token!", "", "bm8tc2VwYXJhdG9y"] {
        let query = RunQuery {
            limit: 10,
            continuation: Some(token.into()),
            ..RunQuery::default()
        };
        match store.list(&query).await {
            Err(StoreError::BadContinuation) => {}
            other => panic!("expected BadContinuation for {token:?}, got {other:?}"),
        }
    }
}

/// A run id for counter requests: `r<n>`.
fn holder(n: usize) -> RunId {
    format!("r{n}").parse().unwrap()
}

async fn sequences_count_from_zero_per_image_and_scope(b: &impl Backend) {
    let store = b.store();
    let mut got = Vec::new();
    for n in 0..3 {
        got.push(
            store
                .next_sequence("web", "2026.1110", &holder(n))
                .await
                .unwrap(),
        );
    }
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(
        store
            .next_sequence("web", "2026.1111", &holder(10))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .next_sequence("db", "2026.1110", &holder(11))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .next_sequence("web", "2026.1110", &holder(12))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .next_sequence("web", "2026.1111", &holder(13))
            .await
            .unwrap(),
        1
    );
}

async fn concurrent_sequence_requests_never_hand_out_the_same_number(b: &impl Backend) {
    let store = b.store();
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .next_sequence("web", "2026.1110", &holder(n))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, (0..50).collect::<Vec<u32>>());
}

async fn a_holder_that_asks_again_gets_its_number_and_moves_the_counter_once(b: &impl Backend) {
    let store = b.store();
    assert_eq!(
        store
            .next_sequence("web", "2026.1110", &holder(0))
            .await
            .unwrap(),
        0
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .next_sequence("web", "2026.1110", &holder(1))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 1, "the same holder, the same number");
    }
    assert_eq!(
        store
            .next_sequence("web", "2026.1110", &holder(0))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .next_sequence("web", "2026.1110", &holder(2))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .next_sequence("web", "2026.1111", &holder(1))
            .await
            .unwrap(),
        0
    );
}

async fn concurrent_updates_of_one_run_each_land_exactly_once(b: &impl Backend) {
    let store = b.store();
    let approvers: Vec<String> = (0..21).map(|i| format!("approver-{i:02}")).collect();
    store
        .create(&waiting_for_approval("run-1", &approvers, 21))
        .await
        .unwrap();

    let tasks: Vec<_> = approvers[..20]
        .iter()
        .enumerate()
        .map(|(i, approver)| {
            let store = Arc::clone(&store);
            let event = approval(approver, 10 + i as i64);
            tokio::spawn(async move {
                update_run(&*store, &rid("run-1"), |run| decide(run, &event)).await
            })
        })
        .collect();
    for task in tasks {
        let transition = task.await.unwrap().unwrap();
        assert!(transition.changed);
    }

    let run = store.get(&rid("run-1")).await.unwrap().value;
    let mut decided: Vec<&str> = run.decisions.iter().map(|d| d.approver.as_str()).collect();
    decided.sort_unstable();
    assert_eq!(decided, approvers[..20]);
    assert_eq!(run.status, RunStatus::WaitingForApproval);

    // The last approval is the 21st of 21 required: the run goes on.
    let last = approval(&approvers[20], 40);
    let released = update_run(&*store, &rid("run-1"), |run| decide(run, &last))
        .await
        .unwrap();
    assert_eq!(released.run.status, RunStatus::Running);
    assert_eq!(
        released.run.stage(Stage::Approve).status,
        StageStatus::Succeeded
    );
    assert_eq!(
        store
            .get(&rid("run-1"))
            .await
            .unwrap()
            .value
            .decisions
            .len(),
        21
    );
}

async fn an_update_that_the_machine_refuses_or_that_changes_nothing_writes_nothing(
    b: &impl Backend,
) {
    let store = b.store();
    let approvers = vec!["alice".to_string(), "bob".to_string()];
    store
        .create(&waiting_for_approval("run-1", &approvers, 2))
        .await
        .unwrap();
    let alice = approval("alice", 10);
    update_run(&*store, &rid("run-1"), |run| decide(run, &alice))
        .await
        .unwrap();
    let before = store.get(&rid("run-1")).await.unwrap();

    match update_run(&*store, &rid("run-1"), |run| decide(run, &alice)).await {
        Err(UpdateError::Refused(TransitionError::AlreadyDecided { approver })) => {
            assert_eq!(approver, "alice");
        }
        other => panic!("expected the second decision to be refused, got {other:?}"),
    }
    // The approve stage already waits: requesting approval again is a no-op.
    let again = Event::ApprovalRequested {
        execution: execution("approve"),
        at: at(11),
        request: before.value.approval.clone().unwrap(),
    };
    let unchanged = update_run(&*store, &rid("run-1"), |run| decide(run, &again))
        .await
        .unwrap();
    assert!(!unchanged.changed);

    let after = store.get(&rid("run-1")).await.unwrap();
    assert_eq!(after.etag, before.etag);
    assert_eq!(after.value, before.value);
}

async fn runs_with_follow_ups_due_are_found_earliest_first_and_no_others(b: &impl Backend) {
    use image_factory::domain::run::{EventType, FollowUpKind};
    let store = b.store();
    let released = FollowUpKind::Event {
        event: EventType::Released,
    };
    for (id, due) in [
        ("due-late", Some(5)),
        ("due-early", Some(1)),
        ("later", Some(30)),
        ("owes-nothing", None),
    ] {
        let mut run = new_run(id, "example", at(0));
        if let Some(minutes) = due {
            run.owe(released.clone(), at(minutes));
        }
        store.create(&run).await.unwrap();
    }
    let due = store.follow_ups_due(at(10), 100).await.unwrap();
    assert_eq!(ids(&due), ["due-early", "due-late"]);
    assert_eq!(due[0].follow_ups_due, Some(at(1)));
    assert_eq!(
        ids(&store.follow_ups_due(at(10), 1).await.unwrap()),
        ["due-early"]
    );
    assert!(store.follow_ups_due(at(0), 100).await.unwrap().is_empty());

    // Settled (nothing due any more): no longer found.
    let stored = store.get(&rid("due-early")).await.unwrap();
    let mut settled = stored.value.clone();
    settled.follow_ups_due = None;
    store.replace(&settled, &stored.etag).await.unwrap();
    assert_eq!(
        ids(&store.follow_ups_due(at(60), 100).await.unwrap()),
        ["due-late", "later"]
    );
}

async fn an_update_from_a_held_version_lands_on_it_and_returns_the_version_it_left(
    b: &impl Backend,
) {
    let store = b.store();
    let approvers = vec!["alice".to_string(), "bob".to_string()];
    store
        .create(&waiting_for_approval("run-1", &approvers, 2))
        .await
        .unwrap();
    let alice = approval("alice", 10);
    let first = update_run_from(&*store, &rid("run-1"), None, |run| decide(run, &alice))
        .await
        .unwrap();
    assert_eq!(first.stored, store.get(&rid("run-1")).await.unwrap());

    let bob = approval("bob", 11);
    let second = update_run_from(&*store, &rid("run-1"), Some(first.stored), |run| {
        decide(run, &bob)
    })
    .await
    .unwrap();
    assert!(second.transition.changed);
    assert_eq!(second.transition.run, second.stored.value);
    let now = store.get(&rid("run-1")).await.unwrap();
    assert_eq!(second.stored, now);
    let decided: Vec<&str> = now
        .value
        .decisions
        .iter()
        .map(|d| d.approver.as_str())
        .collect();
    assert_eq!(decided, ["alice", "bob"]);
    assert_eq!(
        now.value.stage(Stage::Approve).status,
        StageStatus::Succeeded
    );
}

async fn an_update_from_a_stale_held_version_is_decided_again_on_the_stored_run(b: &impl Backend) {
    let store = b.store();
    let approvers: Vec<String> = ["alice", "bob", "carol"].map(String::from).to_vec();
    store
        .create(&waiting_for_approval("run-1", &approvers, 3))
        .await
        .unwrap();
    let alice = approval("alice", 10);
    let held = update_run_from(&*store, &rid("run-1"), None, |run| decide(run, &alice))
        .await
        .unwrap()
        .stored;

    // Another writer records bob after the version held.
    let bob = approval("bob", 11);
    update_run(&*store, &rid("run-1"), |run| decide(run, &bob))
        .await
        .unwrap();
    // Carol's approval decided on the held version would drop bob's: its
    // write is refused and it is decided again on the stored run.
    let carol = approval("carol", 12);
    let released = update_run_from(&*store, &rid("run-1"), Some(held.clone()), |run| {
        decide(run, &carol)
    })
    .await
    .unwrap();
    let decided: Vec<&str> = released
        .transition
        .run
        .decisions
        .iter()
        .map(|d| d.approver.as_str())
        .collect();
    assert_eq!(decided, ["alice", "bob", "carol"]);
    assert_eq!(released.stored, store.get(&rid("run-1")).await.unwrap());

    // Starting the release is refused on the held version (the approve stage
    // still waits there) but not on the stored run: a refusal is decided again.
    let release = Event::StageStarted {
        stage: Stage::Release,
        execution: execution("release"),
        at: at(13),
    };
    let started = update_run_from(&*store, &rid("run-1"), Some(held.clone()), |run| {
        decide(run, &release)
    })
    .await
    .unwrap();
    assert_eq!(
        started.transition.run.stage(Stage::Release).status,
        StageStatus::Running
    );

    // An event already applied is no change on the stored run, whatever the
    // held version says: nothing is written.
    let before = store.get(&rid("run-1")).await.unwrap();
    let again = update_run_from(&*store, &rid("run-1"), Some(held), |run| {
        decide(run, &release)
    })
    .await
    .unwrap();
    assert!(!again.transition.changed);
    assert_eq!(again.stored, before);
    assert_eq!(store.get(&rid("run-1")).await.unwrap(), before);
}

async fn an_unreadable_document_is_reported_as_corrupt_and_never_overwritten(b: &impl Backend) {
    let store = b.store();
    let run = waiting_for_approval("run-1", &["alice".to_string()], 1);
    let before = store.create(&run).await.unwrap();
    b.corrupt("run-1").await;

    let corrupt = |result: Result<_, StoreError>| match result {
        Err(StoreError::Corrupt { id, .. }) => assert_eq!(id, "run-1"),
        other => panic!("expected Corrupt naming run-1, got {other:?}"),
    };
    corrupt(store.get(&rid("run-1")).await.map(|s| s.value));

    // A writer still holding the ETag it read before the document changed is
    // refused like any stale writer.
    match store.replace(&run, &before).await {
        Err(StoreError::PreconditionFailed { id }) => assert_eq!(id, "run-1"),
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
    // The read-decide-write loop stops at the read: it never decides on, nor
    // writes over, a document it cannot read.
    let decisions = AtomicUsize::new(0);
    let event = approval("alice", 10);
    match update_run(&*store, &rid("run-1"), |r| {
        decisions.fetch_add(1, Ordering::SeqCst);
        decide(r, &event)
    })
    .await
    {
        Err(UpdateError::Store(StoreError::Corrupt { id, .. })) => assert_eq!(id, "run-1"),
        other => panic!("expected Store(Corrupt), got {other:?}"),
    }
    assert_eq!(decisions.load(Ordering::SeqCst), 0);
    corrupt(store.get(&rid("run-1")).await.map(|s| s.value));
}

/// The SQLite adapter's ETag is the row's revision, and a trigger bumps it on
/// an edit made beside the store (the `sqlite3` shell) that leaves it alone:
/// a writer holding the ETag read before the edit no longer matches, so the
/// edited document is never overwritten blindly.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_an_edit_beside_the_store_changes_the_etag_so_a_stale_replace_cannot_overwrite_it() {
    let backend = SqliteBackend::open();
    let store = backend.store();
    let run = new_run("run-1", "web", at(0));
    let etag = store.create(&run).await.unwrap();
    backend
        .raw()
        .execute("UPDATE runs SET doc = ?1 WHERE id = 'run-1'", [GARBAGE])
        .unwrap();

    assert!(matches!(
        store.get(&rid("run-1")).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.replace(&run, &etag).await,
        Err(StoreError::PreconditionFailed { .. })
    ));
    assert!(matches!(
        store.get(&rid("run-1")).await,
        Err(StoreError::Corrupt { .. })
    ));
}

/// A run that no longer parses is left out of listings (and reported), so it
/// cannot hide the runs around it from the sweeper or the runs API.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_an_unreadable_run_is_left_out_of_listings_without_hiding_the_others() {
    let backend = SqliteBackend::open();
    let store = backend.store();
    for (i, id) in ["run-1", "run-2", "run-3"].into_iter().enumerate() {
        store
            .create(&new_run(id, "web", at(i as i64)))
            .await
            .unwrap();
    }
    backend
        .raw()
        .execute("UPDATE runs SET doc = ?1 WHERE id = 'run-2'", [GARBAGE])
        .unwrap();
    let page = store
        .list(&image_factory::ports::store::RunQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = page.runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["run-3", "run-1"]);
}

/// Stores runs given as (id, image, status, minute).
async fn store_runs(store: &dyn RunStore, specs: &[(&str, &str, RunStatus, i64)]) {
    for (id, image, status, minute) in specs {
        let mut run = new_run(id, image, at(*minute));
        run.status = *status;
        store.create(&run).await.unwrap();
    }
}

fn id_of(run: &Option<Run>) -> Option<&str> {
    run.as_ref().map(|r| r.id.as_str())
}

async fn image_runs_gives_each_images_latest_released_skipped_and_failed_runs_and_its_runs_in_flight(
    b: &impl Backend,
) {
    let store = b.store();
    store_runs(
        store.as_ref(),
        &[
            ("web-released-old", "web", RunStatus::Released, 0),
            ("web-failed-old", "web", RunStatus::Failed, 3),
            ("web-failed", "web", RunStatus::Failed, 5),
            ("web-skipped", "web", RunStatus::Skipped, 8),
            ("web-released", "web", RunStatus::Released, 10),
            ("web-waiting", "web", RunStatus::WaitingForApproval, 11),
            ("web-queued", "web", RunStatus::Queued, 12),
            ("web-rejected", "web", RunStatus::Rejected, 13),
            ("db-failed", "db", RunStatus::Failed, 1),
            ("db-running", "db", RunStatus::Running, 2),
            ("webapp-released", "webapp", RunStatus::Released, 20),
        ],
    )
    .await;
    let images: Vec<String> = ["web", "nginx", "db"].map(String::from).to_vec();
    let found = store.image_runs(&images).await.unwrap();
    let names: Vec<&str> = found.iter().map(|f| f.image.as_str()).collect();
    assert_eq!(names, ["web", "nginx", "db"], "in the order asked");

    let web = &found[0];
    assert_eq!(id_of(&web.released), Some("web-released"));
    assert_eq!(id_of(&web.skipped), Some("web-skipped"));
    assert_eq!(id_of(&web.failed), Some("web-failed"));
    assert_eq!(ids(&web.in_flight), ["web-queued", "web-waiting"]);
    assert_eq!(
        found[1],
        image_factory::domain::fleet::ImageRuns {
            image: "nginx".into(),
            ..Default::default()
        }
    );
    let db = &found[2];
    assert_eq!(id_of(&db.failed), Some("db-failed"));
    assert_eq!((id_of(&db.released), id_of(&db.skipped)), (None, None));
    assert_eq!(ids(&db.in_flight), ["db-running"]);

    // A status a replace changed is what the query sees.
    let stored = store.get(&rid("web-waiting")).await.unwrap();
    let mut released = stored.value.clone();
    released.status = RunStatus::Released;
    store.replace(&released, &stored.etag).await.unwrap();
    let web = &store.image_runs(&images[..1]).await.unwrap()[0];
    assert_eq!(id_of(&web.released), Some("web-waiting"));
    assert_eq!(ids(&web.in_flight), ["web-queued"]);
    assert!(store.image_runs(&[]).await.unwrap().is_empty());
}

async fn a_release_a_rollback_withdrew_is_left_out_wherever_the_current_release_is_asked_for(
    b: &impl Backend,
) {
    use image_factory::domain::run::{ReleaseRecord, Rollback};
    let store = b.store();
    store_runs(
        store.as_ref(),
        &[
            ("web-first", "web", RunStatus::Released, 0),
            ("web-queued", "web", RunStatus::Queued, 30),
        ],
    )
    .await;
    let mut second = new_run("web-second", "web", at(20));
    second.status = RunStatus::Released;
    second.release = Some(ReleaseRecord {
        withdrawn: Some(Box::new(Rollback {
            id: "0f".repeat(16),
            to: "2026.1110.0".into(),
            to_run: "web-first".into(),
            from: Some("2026.1110.1".into()),
            withdrawn: vec!["2026.1110.1".into()],
            actor: "alice".into(),
            via: "sign-in".into(),
            reason: "broken".into(),
            at: at(40),
        })),
        ..ReleaseRecord::default()
    });
    store.create(&second).await.unwrap();
    let listed = |without_withdrawn: bool, statuses: Vec<RunStatus>| {
        let store = Arc::clone(&store);
        async move {
            let query = RunQuery {
                image: Some("web".into()),
                statuses,
                limit: 10,
                continuation: None,
                without_withdrawn,
            };
            let page = store.list(&query).await.unwrap();
            page.runs
                .into_iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>()
        }
    };
    let released = vec![RunStatus::Released];
    assert_eq!(
        listed(false, released.clone()).await,
        ["web-second", "web-first"]
    );
    assert_eq!(listed(true, released).await, ["web-first"]);
    // Runs with no release at all are not withdrawn.
    assert_eq!(listed(true, vec![]).await, ["web-queued", "web-first"]);
    let web = &store.image_runs(&["web".to_string()]).await.unwrap()[0];
    assert_eq!(id_of(&web.released), Some("web-first"));
    assert!(
        store.images_patched_since(at(10)).await.unwrap().is_empty(),
        "the only release since is withdrawn"
    );
    assert_eq!(
        store.images_patched_since(at(0)).await.unwrap(),
        BTreeSet::from(["web".to_string()])
    );
}

async fn image_runs_keeps_the_newest_runs_in_flight_of_an_image_up_to_the_cap(b: &impl Backend) {
    use image_factory::domain::fleet::MAX_IN_FLIGHT;
    let store = b.store();
    let total = MAX_IN_FLIGHT + 3;
    for n in 0..total {
        let mut run = new_run(&format!("web-{n:02}"), "web", at(n as i64));
        run.status = RunStatus::Queued;
        store.create(&run).await.unwrap();
    }
    let web = &store.image_runs(&["web".to_string()]).await.unwrap()[0];
    let expected: Vec<String> = (total - MAX_IN_FLIGHT..total)
        .rev()
        .map(|n| format!("web-{n:02}"))
        .collect();
    assert_eq!(ids(&web.in_flight), expected);
}

async fn images_patched_since_are_those_with_a_released_or_skipped_run_created_since(
    b: &impl Backend,
) {
    let store = b.store();
    store_runs(
        store.as_ref(),
        &[
            ("web-released", "web", RunStatus::Released, 0),
            ("api-released", "api", RunStatus::Released, 5),
            ("db-skipped", "db", RunStatus::Skipped, 20),
            ("cache-failed", "cache", RunStatus::Failed, 30),
            ("queue-waiting", "queue", RunStatus::WaitingForApproval, 30),
        ],
    )
    .await;
    let since = |minute: i64| {
        let store = Arc::clone(&store);
        async move {
            let images = store.images_patched_since(at(minute)).await.unwrap();
            images.into_iter().collect::<Vec<_>>()
        }
    };
    assert_eq!(since(0).await, ["api", "db", "web"]);
    assert_eq!(
        since(5).await,
        ["api", "db"],
        "created at the instant counts"
    );
    assert_eq!(since(6).await, ["db"]);
    assert!(since(21).await.is_empty());
}

#[test]
fn sqlite_a_new_database_and_a_reopened_one_have_their_schema_and_write_in_wal_with_synchronous_normal()
 {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("data").join("new.db");
    let schema = "CREATE TABLE IF NOT EXISTS notes (body TEXT NOT NULL);";
    for opening in ["created", "reopened"] {
        let conn = image_factory::local::sqlite::open_database(&path, schema).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let synchronous: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), synchronous), ("wal", 1), "{opening}");
        conn.execute("INSERT INTO notes (body) VALUES (?1)", [opening])
            .unwrap();
    }
    let conn = image_factory::local::sqlite::open_database(&path, schema).unwrap();
    let notes: i64 = conn
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(notes, 2);
}
