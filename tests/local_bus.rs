//! The embedded bus behaves as a Service Bus queue: peek-lock, delivery
//! counts, dead-lettering (in place or forwarded), scheduled delivery,
//! completion that sends its outputs atomically, lock renewal, FIFO order,
//! durability across restarts, wake-ups, and the timer status table; with a
//! test clock, a clock that steps forward then back.
//!
//! Lock durations are short and every sleep ends just past the instant the
//! bus reported (`locked_until`, a scheduled time), so the file runs in about
//! a second.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use image_factory::host::bus::{Bus, BusError, Outgoing, QueueOptions, Received};
use image_factory::ports::clock::{Clock, Ids};
use serde_json::{Map, json};
use tempfile::TempDir;

/// Long enough that a test never outlives it by accident.
const LONG_LOCK: Duration = Duration::from_secs(30);
/// Short enough to wait out; long enough that two calls in a row stay inside it.
const SHORT_LOCK: Duration = Duration::from_millis(400);
/// How far past an instant a test sleeps to be sure it has passed.
const MARGIN: Duration = Duration::from_millis(30);

fn db(dir: &TempDir) -> PathBuf {
    dir.path().join("queues.db")
}

fn options(lock_duration: Duration, max_delivery_count: u32) -> QueueOptions {
    QueueOptions {
        lock_duration,
        max_delivery_count,
        forward_dead_letters_to: None,
    }
}

/// A bus whose every queue has the same lock duration and maximum delivery count.
fn open(path: &Path, lock_duration: Duration, max_delivery_count: u32) -> Bus {
    Bus::open(path, move |_| options(lock_duration, max_delivery_count)).unwrap()
}

/// A bus whose queue `work` forwards its dead letters to `parked`.
fn open_forwarding(path: &Path, lock_duration: Duration, max_delivery_count: u32) -> Bus {
    Bus::open(path, move |queue| QueueOptions {
        forward_dead_letters_to: (queue == "work").then(|| "parked".to_string()),
        ..options(lock_duration, max_delivery_count)
    })
    .unwrap()
}

fn message(queue: &str, body: &str) -> Outgoing {
    Outgoing {
        queue: queue.into(),
        body: body.into(),
        properties: Map::new(),
        scheduled_at: None,
    }
}

async fn receive(bus: &Bus, queue: &str) -> Received {
    bus.receive(queue)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("a message was expected on {queue}"))
}

async fn assert_empty(bus: &Bus, queue: &str) {
    if let Some(m) = bus.receive(queue).await.unwrap() {
        panic!("{queue} was expected to have nothing to deliver, got {m:?}");
    }
}

/// Sleeps until `instant` has passed by a small margin.
async fn sleep_past(instant: DateTime<Utc>) {
    let left = (instant - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + MARGIN).await;
}

fn lock_lost<T: std::fmt::Debug>(result: Result<T, BusError>) -> bool {
    matches!(result, Err(BusError::LockLost))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_received_message_is_hidden_from_other_receivers_until_its_lock_runs_out_then_comes_back_with_one_more_delivery()
 {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), SHORT_LOCK, 10);
    // Another process opening the same file is another receiver.
    let other = open(&db(&dir), SHORT_LOCK, 10);
    bus.send(vec![message("work", "job")]).await.unwrap();

    let first = receive(&bus, "work").await;
    assert_eq!(first.delivery_count, 1);
    assert_eq!(first.body, "job");
    assert_empty(&bus, "work").await;
    assert_empty(&other, "work").await;

    sleep_past(first.locked_until).await;
    let second = receive(&other, "work").await;
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.sequence, first.sequence);
    assert_eq!(second.delivery_count, 2);
    assert_ne!(second.lock_token, first.lock_token);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_message_is_available_again_at_once_and_the_old_lock_settles_nothing() {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), LONG_LOCK, 10);
    bus.send(vec![message("work", "job")]).await.unwrap();

    let first = receive(&bus, "work").await;
    bus.abandon(&first, "try again").await.unwrap();
    assert!(lock_lost(bus.complete(&first, vec![]).await));

    let second = receive(&bus, "work").await;
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.delivery_count, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completed_message_is_gone_and_cannot_be_settled_again() {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), LONG_LOCK, 10);
    bus.send(vec![message("work", "job")]).await.unwrap();

    let m = receive(&bus, "work").await;
    bus.complete(&m, vec![]).await.unwrap();
    assert_eq!(bus.depth("work").await.unwrap(), 0);
    assert_empty(&bus, "work").await;

    assert!(lock_lost(bus.complete(&m, vec![]).await));
    assert!(lock_lost(bus.abandon(&m, "late").await));
    assert!(lock_lost(bus.renew(&m).await));
    assert!(bus.dead_letters("work").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn completing_after_the_lock_ran_out_fails_with_lock_lost_and_the_message_is_delivered_again()
{
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), SHORT_LOCK, 10);
    bus.send(vec![message("work", "job")]).await.unwrap();

    let late = receive(&bus, "work").await;
    sleep_past(late.locked_until).await;
    assert!(lock_lost(bus.complete(&late, vec![]).await));

    let again = receive(&bus, "work").await;
    assert_eq!(again.message_id, late.message_id);
    assert_eq!(again.delivery_count, 2);
    // The superseded delivery cannot settle the new one's lock either.
    assert!(lock_lost(bus.complete(&late, vec![]).await));
    bus.complete(&again, vec![]).await.unwrap();
    assert_eq!(bus.depth("work").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewing_a_lock_keeps_the_message_hidden_past_its_original_expiry() {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), SHORT_LOCK, 10);
    bus.send(vec![message("work", "job")]).await.unwrap();

    let m = receive(&bus, "work").await;
    sleep_past(m.locked_until - chrono::Duration::milliseconds(200)).await;
    let renewed_until = bus.renew(&m).await.unwrap();
    assert!(renewed_until > m.locked_until);

    sleep_past(m.locked_until).await;
    assert_empty(&bus, "work").await;
    // The lock token is unchanged by a renewal: the holder still settles it.
    bus.complete(&m, vec![]).await.unwrap();
    assert_eq!(bus.depth("work").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_that_ran_out_cannot_be_renewed() {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), SHORT_LOCK, 10);
    bus.send(vec![message("work", "job")]).await.unwrap();

    let m = receive(&bus, "work").await;
    sleep_past(m.locked_until).await;
    assert!(lock_lost(bus.renew(&m).await));
    assert_eq!(receive(&bus, "work").await.delivery_count, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_whose_last_delivery_lock_ran_out_goes_to_the_dead_letter_sub_queue_when_not_forwarded()
 {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), Duration::from_millis(200), 2);
    bus.send(vec![message("work", "poison")]).await.unwrap();

    let first = receive(&bus, "work").await;
    sleep_past(first.locked_until).await;
    let last = receive(&bus, "work").await;
    assert_eq!(last.delivery_count, 2);
    sleep_past(last.locked_until).await;

    assert_empty(&bus, "work").await;
    assert_eq!(bus.depth("work").await.unwrap(), 0);
    let dead = bus.dead_letters("work").await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].queue, "work");
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].reason, "MaxDeliveryCountExceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_whose_last_delivery_lock_ran_out_is_forwarded_with_the_dead_letter_properties() {
    let dir = TempDir::new().unwrap();
    let bus = open_forwarding(&db(&dir), Duration::from_millis(200), 2);
    let mut poison = message("work", "poison");
    poison.properties.insert("runId".into(), json!("run-7"));
    bus.send(vec![poison]).await.unwrap();

    let first = receive(&bus, "work").await;
    sleep_past(first.locked_until).await;
    let last = receive(&bus, "work").await;
    sleep_past(last.locked_until).await;

    assert_empty(&bus, "work").await;
    assert!(bus.dead_letters("work").await.unwrap().is_empty());
    let forwarded = receive(&bus, "parked").await;
    assert_eq!(forwarded.body, "poison");
    assert_eq!(forwarded.delivery_count, 1);
    let props = &forwarded.properties;
    assert_eq!(props["runId"], json!("run-7"));
    assert_eq!(props["DeadLetterReason"], json!("MaxDeliveryCountExceeded"));
    assert_eq!(props["DeadLetterSource"], json!("work"));
    let description = props["DeadLetterErrorDescription"].as_str().unwrap();
    assert!(description.contains("2 delivery attempts"), "{description}");
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoning_the_last_allowed_delivery_dead_letters_the_message_with_the_abandon_reason() {
    let dir = TempDir::new().unwrap();
    let bus = open_forwarding(&db(&dir), LONG_LOCK, 2);
    bus.send(vec![message("work", "poison")]).await.unwrap();

    let first = receive(&bus, "work").await;
    bus.abandon(&first, "handler failed: first").await.unwrap();
    let last = receive(&bus, "work").await;
    bus.abandon(&last, "handler failed: second").await.unwrap();

    assert_empty(&bus, "work").await;
    let forwarded = receive(&bus, "parked").await;
    assert_eq!(forwarded.body, "poison");
    let props = &forwarded.properties;
    assert_eq!(props["DeadLetterReason"], json!("MaxDeliveryCountExceeded"));
    let description = props["DeadLetterErrorDescription"].as_str().unwrap();
    assert!(
        description.contains("handler failed: second"),
        "{description}"
    );
    assert!(description.contains("delivered 2 times"), "{description}");
    assert_eq!(props["DeadLetterSource"], json!("work"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_message_is_not_delivered_before_its_time_and_does_not_hold_up_the_queue() {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), LONG_LOCK, 10);
    let at = Utc::now() + chrono::Duration::milliseconds(300);
    bus.send(vec![Outgoing {
        scheduled_at: Some(at),
        ..message("work", "later")
    }])
    .await
    .unwrap();
    bus.send(vec![message("work", "now")]).await.unwrap();

    let now = receive(&bus, "work").await;
    assert_eq!(now.body, "now");
    bus.complete(&now, vec![]).await.unwrap();
    assert_empty(&bus, "work").await;
    assert_eq!(bus.depth("work").await.unwrap(), 1);

    sleep_past(at).await;
    let later = receive(&bus, "work").await;
    assert_eq!(later.body, "later");
    assert_eq!(later.delivery_count, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn completing_a_message_sends_its_outputs_in_the_same_transaction() {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), LONG_LOCK, 10);
    bus.send(vec![message("in", "job")]).await.unwrap();

    let job = receive(&bus, "in").await;
    assert_eq!(bus.depth("out").await.unwrap(), 0);
    bus.complete(&job, vec![message("out", "r1"), message("out", "r2")])
        .await
        .unwrap();

    assert_eq!(bus.depth("in").await.unwrap(), 0);
    assert_eq!(receive(&bus, "out").await.body, "r1");
    assert_eq!(receive(&bus, "out").await.body, "r2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completion_that_lost_its_lock_sends_none_of_its_outputs() {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), Duration::from_millis(200), 10);
    bus.send(vec![message("in", "job")]).await.unwrap();

    let job = receive(&bus, "in").await;
    sleep_past(job.locked_until).await;
    assert!(lock_lost(
        bus.complete(&job, vec![message("out", "result")]).await
    ));

    assert_eq!(bus.depth("out").await.unwrap(), 0);
    assert_empty(&bus, "out").await;
    assert_eq!(receive(&bus, "in").await.delivery_count, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_delivered_in_the_order_they_were_sent_and_only_from_their_own_queue() {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), LONG_LOCK, 10);
    bus.send(vec![message("other", "elsewhere")]).await.unwrap();
    bus.send((0..5).map(|i| message("work", &format!("m{i}"))).collect())
        .await
        .unwrap();
    bus.send(vec![message("work", "m5")]).await.unwrap();

    let mut bodies = Vec::new();
    let mut sequences = Vec::new();
    while let Some(m) = bus.receive("work").await.unwrap() {
        bodies.push(m.body.clone());
        sequences.push(m.sequence);
    }
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    assert_eq!(receive(&bus, "other").await.body, "elsewhere");
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_locks_and_delivery_counts_survive_closing_and_reopening_the_file() {
    let dir = TempDir::new().unwrap();
    let held = {
        let bus = open(&db(&dir), SHORT_LOCK, 10);
        bus.send(vec![
            message("work", "done"),
            message("work", "held"),
            message("work", "waiting"),
        ])
        .await
        .unwrap();
        let done = receive(&bus, "work").await;
        bus.complete(&done, vec![]).await.unwrap();
        let held = receive(&bus, "work").await;
        assert_eq!(held.body, "held");
        held
    };

    let bus = open(&db(&dir), SHORT_LOCK, 10);
    assert_eq!(bus.depth("work").await.unwrap(), 2);
    // "done" stayed completed and "held" stayed locked: "waiting" is next.
    let waiting = receive(&bus, "work").await;
    assert_eq!(waiting.body, "waiting");
    bus.complete(&waiting, vec![]).await.unwrap();
    assert_empty(&bus, "work").await;

    sleep_past(held.locked_until).await;
    let again = receive(&bus, "work").await;
    assert_eq!(again.body, "held");
    assert_eq!(again.message_id, held.message_id);
    assert_eq!(again.delivery_count, 2);

    bus.send(vec![message("work", "new")]).await.unwrap();
    let new = receive(&bus, "work").await;
    assert!(
        new.sequence > waiting.sequence,
        "sequence numbers are not reused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_wakes_a_waiter_when_a_message_is_sent() {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), LONG_LOCK, 10);

    let waiter = bus.changed();
    tokio::pin!(waiter);
    // Polling it once registers the waiter; nothing has happened yet.
    let quiet = tokio::time::timeout(Duration::from_millis(50), &mut waiter).await;
    assert!(quiet.is_err(), "changed() resolved with nothing sent");

    bus.send(vec![message("work", "job")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), &mut waiter)
        .await
        .expect("changed() did not resolve after a send");
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_wakes_a_waiter_when_a_completion_sends_outputs() {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), LONG_LOCK, 10);
    bus.send(vec![message("in", "job")]).await.unwrap();
    let job = receive(&bus, "in").await;

    let waiter = bus.changed();
    tokio::pin!(waiter);
    let quiet = tokio::time::timeout(Duration::from_millis(50), &mut waiter).await;
    assert!(quiet.is_err(), "changed() resolved with nothing sent");

    bus.complete(&job, vec![message("out", "result")])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), &mut waiter)
        .await
        .expect("changed() did not resolve after a completion with outputs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timer_records_its_next_firing_and_keeps_its_last_one_when_none_is_given() {
    let dir = TempDir::new().unwrap();
    let bus = open(&db(&dir), LONG_LOCK, 10);
    let at = |ms: i64| Utc.timestamp_millis_opt(1_795_000_000_000 + ms).unwrap();
    let last_of = |name: &str| -> Option<i64> {
        let c = rusqlite::Connection::open(db(&dir)).unwrap();
        c.query_row("SELECT last FROM timers WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .unwrap()
    };

    assert_eq!(bus.timer_next("patch-tuesday").await.unwrap(), None);

    bus.timer_record("patch-tuesday", None, at(1_500))
        .await
        .unwrap();
    assert_eq!(
        bus.timer_next("patch-tuesday").await.unwrap(),
        Some(at(1_500))
    );
    assert_eq!(last_of("patch-tuesday"), None);

    bus.timer_record("patch-tuesday", Some(at(1_500)), at(9_250))
        .await
        .unwrap();
    assert_eq!(
        bus.timer_next("patch-tuesday").await.unwrap(),
        Some(at(9_250))
    );
    assert_eq!(last_of("patch-tuesday"), Some(at(1_500).timestamp_millis()));

    bus.timer_record("patch-tuesday", None, at(20_000))
        .await
        .unwrap();
    assert_eq!(
        bus.timer_next("patch-tuesday").await.unwrap(),
        Some(at(20_000))
    );
    assert_eq!(last_of("patch-tuesday"), Some(at(1_500).timestamp_millis()));

    assert_eq!(bus.timer_next("sweeper").await.unwrap(), None);
    drop(bus);
    let reopened = open(&db(&dir), LONG_LOCK, 10);
    assert_eq!(
        reopened.timer_next("patch-tuesday").await.unwrap(),
        Some(at(20_000))
    );
}

/// A clock the test sets, in milliseconds since the epoch.
fn test_clock(start: DateTime<Utc>) -> (Arc<AtomicI64>, Clock) {
    let now = Arc::new(AtomicI64::new(start.timestamp_millis()));
    let clock: Clock = {
        let now = Arc::clone(&now);
        Arc::new(move || {
            Utc.timestamp_millis_opt(now.load(Ordering::SeqCst))
                .single()
                .unwrap()
        })
    };
    (now, clock)
}

fn set(now: &AtomicI64, to: DateTime<Utc>) {
    now.store(to.timestamp_millis(), Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_clock_steps_forward_then_back_a_message_is_delivered_again_within_one_lock_duration()
 {
    let dir = TempDir::new().unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
    let lock = chrono::Duration::from_std(LONG_LOCK).unwrap();
    let (now, clock) = test_clock(start);
    let bus = Bus::open_with(&db(&dir), |_| options(LONG_LOCK, 10), clock, Ids::random()).unwrap();
    bus.send(vec![message("work", "job")]).await.unwrap();
    let first = receive(&bus, "work").await;

    // The clock steps forward a day: the lock ran out, the message is
    // delivered again and locked until a day from the start.
    let far = start + chrono::Duration::days(1);
    set(&now, far);
    let second = receive(&bus, "work").await;
    assert_eq!(second.delivery_count, 2);
    assert_eq!(second.locked_until, far + lock);

    // The clock steps back. The lock holds for one lock duration from now
    // at most, not until the far time.
    let back = start + chrono::Duration::seconds(1);
    set(&now, back);
    assert_empty(&bus, "work").await;
    set(&now, back + lock - chrono::Duration::milliseconds(1));
    assert_empty(&bus, "work").await;
    set(&now, back + lock);
    let third = receive(&bus, "work").await;
    assert_eq!(third.message_id, first.message_id);
    assert_eq!(third.delivery_count, 3);
    assert_eq!(third.locked_until, back + lock + lock);
    // The old lock settles nothing; the new one is an ordinary lock.
    assert!(lock_lost(bus.complete(&second, vec![]).await));
    bus.renew(&third).await.unwrap();
    bus.complete(&third, vec![]).await.unwrap();
    assert_eq!(bus.depth("work").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_from_before_the_clock_stepped_back_still_settles_its_message_within_one_lock_duration()
 {
    let dir = TempDir::new().unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
    let (now, clock) = test_clock(start);
    let bus = Bus::open_with(&db(&dir), |_| options(LONG_LOCK, 10), clock, Ids::random()).unwrap();
    bus.send(vec![message("work", "job")]).await.unwrap();
    let far = start + chrono::Duration::days(1);
    set(&now, far);
    let held = receive(&bus, "work").await;
    set(&now, start);
    // Another receiver looks (and bounds the lock); the holder finishes its work.
    assert_empty(&bus, "work").await;
    bus.complete(&held, vec![]).await.unwrap();
    assert_eq!(bus.depth("work").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_scheduled_far_ahead_waits_for_its_time_although_it_is_further_than_a_lock_duration()
 {
    let dir = TempDir::new().unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
    let (now, clock) = test_clock(start);
    let bus = Bus::open_with(&db(&dir), |_| options(LONG_LOCK, 10), clock, Ids::random()).unwrap();
    let at = start + chrono::Duration::days(1);
    bus.send(vec![Outgoing {
        scheduled_at: Some(at),
        ..message("work", "later")
    }])
    .await
    .unwrap();

    assert_empty(&bus, "work").await;
    set(&now, at - chrono::Duration::seconds(1));
    assert_empty(&bus, "work").await;
    set(&now, at);
    let m = receive(&bus, "work").await;
    assert_eq!(m.body, "later");
    assert_eq!(m.delivery_count, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_seeded_ids_give_the_same_message_ids_and_lock_tokens() {
    let mut seen = Vec::new();
    for _ in 0..2 {
        let dir = TempDir::new().unwrap();
        let bus = Bus::open_with(
            &db(&dir),
            |_| options(LONG_LOCK, 10),
            Arc::new(Utc::now),
            Ids::seeded(7),
        )
        .unwrap();
        bus.send(vec![message("work", "a"), message("work", "b")])
            .await
            .unwrap();
        let (a, b) = (receive(&bus, "work").await, receive(&bus, "work").await);
        seen.push([a.message_id, a.lock_token, b.message_id, b.lock_token]);
    }
    assert_eq!(seen[0], seen[1]);
    let distinct: std::collections::BTreeSet<&String> = seen[0].iter().collect();
    assert_eq!(
        distinct.len(),
        4,
        "ids repeat within one bus: {:?}",
        seen[0]
    );
}
