//! The embedded durable queue: Service Bus queue semantics in one SQLite file.
//!
//! - peek-lock: a received message is invisible for the lock duration; it is
//!   completed (deleted), abandoned (visible again at once) or its lock
//!   expires (visible again);
//! - every receive counts a delivery; a message whose delivery count reached
//!   the queue's maximum is dead-lettered instead of delivered again, with
//!   reason `MaxDeliveryCountExceeded`;
//! - dead letters are moved to another queue when the queue's options name
//!   one, keeping the reason in the message's application properties: the
//!   local host names each queue's dead-letter sub-queue as Service Bus
//!   addresses it (`<queue>/$DeadLetterQueue`), which functions receive from
//!   like a queue;
//! - scheduled messages stay invisible until their enqueue time;
//! - a lock never runs out later than one lock duration from now: a receive
//!   first brings every lock of its queue that reaches further (taken before
//!   the clock stepped back) back to one lock duration from now, so a clock
//!   step forward then back cannot stall a message until the far time (a
//!   scheduled message holds no lock, and waits for its time however far);
//! - completing a message and sending the messages its invocation produced
//!   happen in one transaction;
//! - every dead letter not yet handled can be listed
//!   (`image-factory dead-letters list`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::local::sqlite::open_database;
use crate::ports::clock::{Clock, Ids};

/// A queue's properties.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// How long a receive locks a message.
    pub lock_duration: Duration,
    /// Deliveries before a message is dead-lettered.
    pub max_delivery_count: u32,
    /// Where dead letters go, if anywhere but the dead-letter sub-queue.
    pub forward_dead_letters_to: Option<String>,
}

/// A message to send.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The queue.
    pub queue: String,
    /// The body.
    pub body: String,
    /// Application properties.
    pub properties: Map<String, Value>,
    /// Not delivered before this time.
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// A locked message.
#[derive(Clone, Debug)]
pub struct Received {
    /// The queue it came from.
    pub queue: String,
    /// Its id.
    pub message_id: String,
    /// Its body.
    pub body: String,
    /// Application properties.
    pub properties: Map<String, Value>,
    /// Deliveries so far, this one included.
    pub delivery_count: u32,
    /// When it was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// Its sequence number.
    pub sequence: i64,
    /// Proves the lock; needed to settle it.
    pub lock_token: String,
    /// When the lock runs out.
    pub locked_until: DateTime<Utc>,
}

/// A dead-lettered message, for inspection.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// Its sequence number.
    pub sequence: i64,
    /// Its id.
    pub message_id: String,
    /// The queue that holds it: a dead-letter sub-queue, or the queue it
    /// was dead-lettered in.
    pub queue: String,
    /// Its body.
    pub body: String,
    /// Why (`DeadLetterReason`, as Service Bus names it).
    pub reason: String,
    /// What happened (`DeadLetterErrorDescription`).
    pub description: String,
    /// When it was first enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// Its deliveries where it is now: before it was dead-lettered in place,
    /// or to the function of the sub-queue it waits in.
    pub delivery_count: u32,
}

/// What went wrong in the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The lock expired or the message was settled already.
    #[error("the message's lock was lost (it expired, or the message was settled)")]
    LockLost,
    /// The database failed.
    #[error("the local queue database failed: {0}")]
    Storage(String),
}

impl From<rusqlite::Error> for BusError {
    fn from(e: rusqlite::Error) -> BusError {
        BusError::Storage(e.to_string())
    }
}

/// The embedded bus.
#[derive(Clone)]
pub struct Bus {
    conn: Arc<Mutex<Connection>>,
    options: Arc<dyn Fn(&str) -> QueueOptions + Send + Sync>,
    notify: Arc<Notify>,
    clock: Clock,
    ids: Ids,
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl Bus {
    /// Opens the bus at `path`; `options` gives each queue's properties.
    pub fn open(
        path: &Path,
        options: impl Fn(&str) -> QueueOptions + Send + Sync + 'static,
    ) -> Result<Bus, BusError> {
        Bus::open_with(path, options, Arc::new(Utc::now), Ids::random())
    }

    /// Opens the bus at `path` with its own clock and ids: locks, scheduled
    /// delivery and enqueue times follow `clock` (tests move it to expire
    /// locks); message ids and lock tokens come from `ids`.
    pub fn open_with(
        path: &Path,
        options: impl Fn(&str) -> QueueOptions + Send + Sync + 'static,
        clock: Clock,
        ids: Ids,
    ) -> Result<Bus, BusError> {
        let conn = open_database(
            path,
            "CREATE TABLE IF NOT EXISTS messages (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                queue TEXT NOT NULL,
                message_id TEXT NOT NULL,
                body TEXT NOT NULL,
                properties TEXT NOT NULL,
                enqueued_at INTEGER NOT NULL,
                visible_at INTEGER NOT NULL,
                delivery_count INTEGER NOT NULL DEFAULT 0,
                lock_token TEXT,
                dead INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, dead, visible_at, seq);
            CREATE TABLE IF NOT EXISTS timers (
                name TEXT PRIMARY KEY,
                last INTEGER,
                next INTEGER NOT NULL
            );",
        )
        .map_err(|e| BusError::Storage(e.to_string()))?;
        Ok(Bus {
            conn: Arc::new(Mutex::new(conn)),
            options: Arc::new(options),
            notify: Arc::new(Notify::new()),
            clock,
            ids,
        })
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T, BusError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, BusError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| BusError::Storage("the queue database lock is poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| BusError::Storage(e.to_string()))?
    }

    /// Resolves when a message may have become available.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Sends messages (in one transaction).
    pub async fn send(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        let now = (self.clock)();
        let ids = self.ids.clone();
        self.with_conn(move |c| {
            let tx = c.transaction()?;
            insert_all(&tx, &messages, now, &ids)?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        self.notify.notify_waiters();
        Ok(())
    }

    /// Locks the next available message of `queue`, if any. Locks that reach
    /// further than one lock duration from now are brought back to it first,
    /// and messages whose last lock ran out after their last allowed delivery
    /// are dead-lettered.
    pub async fn receive(&self, queue: &str) -> Result<Option<Received>, BusError> {
        let opts = (self.options)(queue);
        let queue = queue.to_string();
        let forward = opts.forward_dead_letters_to.clone();
        let lock_ms = i64::try_from(opts.lock_duration.as_millis()).unwrap_or(i64::MAX);
        let max = i64::from(opts.max_delivery_count);
        let clock = Arc::clone(&self.clock);
        let ids = self.ids.clone();
        let received = self
            .with_conn(move |c| {
                let now = millis(clock());
                let bound = now.saturating_add(lock_ms);
                let tx = c.transaction()?;
                // A lock is set (lock token) at most one lock duration ahead;
                // one further ahead was taken before the clock stepped back.
                // A scheduled message has no lock token and keeps its time.
                tx.execute(
                    "UPDATE messages SET visible_at = ?1
                     WHERE queue = ?2 AND dead = 0 AND lock_token IS NOT NULL AND visible_at > ?1",
                    params![bound, queue],
                )?;
                let exhausted: Vec<i64> = {
                    let mut stmt = tx.prepare_cached(
                        "SELECT seq FROM messages WHERE queue = ?1 AND dead = 0 AND visible_at <= ?2 AND delivery_count >= ?3",
                    )?;
                    stmt.query_map(params![queue, now, max], |r| r.get(0))?
                        .collect::<Result<_, _>>()?
                };
                for seq in exhausted {
                    dead_letter(
                        &tx,
                        seq,
                        "MaxDeliveryCountExceeded",
                        &format!("Message could not be consumed after {max} delivery attempts."),
                        forward.as_deref(),
                        now,
                    )?;
                }
                let row = tx
                    .query_row(
                        "SELECT seq, message_id, body, properties, enqueued_at, delivery_count FROM messages
                         WHERE queue = ?1 AND dead = 0 AND visible_at <= ?2 ORDER BY seq LIMIT 1",
                        params![queue, now],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, String>(3)?,
                                r.get::<_, i64>(4)?,
                                r.get::<_, i64>(5)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((seq, message_id, body, properties, enqueued_at, count)) = row else {
                    tx.commit()?;
                    return Ok(None);
                };
                let lock_token = ids.next();
                let locked_until = bound;
                tx.execute(
                    "UPDATE messages SET delivery_count = delivery_count + 1, lock_token = ?1, visible_at = ?2 WHERE seq = ?3",
                    params![lock_token, locked_until, seq],
                )?;
                tx.commit()?;
                Ok(Some(Received {
                    queue,
                    message_id,
                    body,
                    properties: serde_json::from_str(&properties).unwrap_or_default(),
                    delivery_count: u32::try_from(count + 1).unwrap_or(u32::MAX),
                    enqueued_at: from_millis(enqueued_at),
                    sequence: seq,
                    lock_token,
                    locked_until: from_millis(locked_until),
                }))
            })
            .await?;
        Ok(received)
    }

    /// Completes a message and sends what its invocation produced, atomically.
    pub async fn complete(
        &self,
        message: &Received,
        outputs: Vec<Outgoing>,
    ) -> Result<(), BusError> {
        let (token, seq) = (message.lock_token.clone(), message.sequence);
        let sent = !outputs.is_empty();
        let clock = Arc::clone(&self.clock);
        let ids = self.ids.clone();
        self.with_conn(move |c| {
            let now = clock();
            let tx = c.transaction()?;
            let deleted = tx.execute(
                "DELETE FROM messages WHERE seq = ?1 AND lock_token = ?2 AND visible_at > ?3",
                params![seq, token, millis(now)],
            )?;
            if deleted != 1 {
                return Err(BusError::LockLost);
            }
            insert_all(&tx, &outputs, now, &ids)?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        if sent {
            self.notify.notify_waiters();
        }
        Ok(())
    }

    /// Abandons a message: it is available again at once, or dead-lettered
    /// when it has had its last delivery.
    pub async fn abandon(&self, message: &Received, reason: &str) -> Result<(), BusError> {
        let opts = (self.options)(&message.queue);
        let (token, seq) = (message.lock_token.clone(), message.sequence);
        let last = message.delivery_count >= opts.max_delivery_count;
        let reason = format!(
            "delivered {} times; last error: {reason}",
            message.delivery_count
        );
        let clock = Arc::clone(&self.clock);
        self.with_conn(move |c| {
            let now = millis(clock());
            let tx = c.transaction()?;
            let held: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM messages WHERE seq = ?1 AND lock_token = ?2 AND visible_at > ?3 AND dead = 0",
                    params![seq, token, now],
                    |r| r.get(0),
                )
                .optional()?;
            if held.is_none() {
                return Err(BusError::LockLost);
            }
            if last {
                dead_letter(
                    &tx,
                    seq,
                    "MaxDeliveryCountExceeded",
                    &reason,
                    opts.forward_dead_letters_to.as_deref(),
                    now,
                )?;
            } else {
                tx.execute(
                    "UPDATE messages SET lock_token = NULL, visible_at = ?1 WHERE seq = ?2",
                    params![now, seq],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
        self.notify.notify_waiters();
        Ok(())
    }

    /// Extends a message's lock by the queue's lock duration.
    pub async fn renew(&self, message: &Received) -> Result<DateTime<Utc>, BusError> {
        let opts = (self.options)(&message.queue);
        let (token, seq) = (message.lock_token.clone(), message.sequence);
        let clock = Arc::clone(&self.clock);
        self.with_conn(move |c| {
            let now = clock();
            // A lock past what the clock can count lasts to its last instant.
            let until = chrono::Duration::from_std(opts.lock_duration)
                .ok()
                .and_then(|lock| now.checked_add_signed(lock))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            let updated = c.execute(
                "UPDATE messages SET visible_at = ?1 WHERE seq = ?2 AND lock_token = ?3 AND visible_at > ?4 AND dead = 0",
                params![millis(until), seq, token, millis(now)],
            )?;
            if updated == 1 { Ok(until) } else { Err(BusError::LockLost) }
        })
        .await
    }

    /// The dead-letter sub-queue of `queue`, oldest first.
    pub async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BusError> {
        let queue = queue.to_string();
        self.with_conn(move |c| {
            read_dead_letters(
                c,
                &format!("SELECT {DEAD_LETTER_COLUMNS} FROM messages WHERE queue = ?1 AND dead = 1 ORDER BY seq"),
                [queue],
            )
        })
        .await
    }

    /// Every dead letter, oldest first: those kept dead-lettered in place
    /// (a queue whose options name nowhere to move them) and those waiting
    /// in a dead-letter sub-queue, a queue whose name ends with `sub_queue`
    /// (`/$DeadLetterQueue`), for the function that reads it: moved there,
    /// a dead letter is delivered like any message until it is completed.
    pub async fn all_dead_letters(&self, sub_queue: &str) -> Result<Vec<DeadLetter>, BusError> {
        let sub_queue = sub_queue.to_string();
        self.with_conn(move |c| {
            read_dead_letters(
                c,
                &format!(
                    "SELECT {DEAD_LETTER_COLUMNS} FROM messages
                     WHERE dead = 1 OR substr(queue, -length(?1)) = ?1 ORDER BY seq"
                ),
                [sub_queue],
            )
        })
        .await
    }

    /// Active (not dead-lettered) messages in `queue`, locked or not.
    pub async fn depth(&self, queue: &str) -> Result<u64, BusError> {
        let queue = queue.to_string();
        self.with_conn(move |c| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM messages WHERE queue = ?1 AND dead = 0",
                [queue],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// A timer's recorded next firing, if any.
    pub async fn timer_next(&self, name: &str) -> Result<Option<DateTime<Utc>>, BusError> {
        let name = name.to_string();
        self.with_conn(move |c| {
            let next: Option<i64> = c
                .query_row("SELECT next FROM timers WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(next.map(from_millis))
        })
        .await
    }

    /// Records a timer's last and next firing.
    pub async fn timer_record(
        &self,
        name: &str,
        last: Option<DateTime<Utc>>,
        next: DateTime<Utc>,
    ) -> Result<(), BusError> {
        let name = name.to_string();
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO timers (name, last, next) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET last = COALESCE(?2, last), next = ?3",
                params![name, last.map(millis), millis(next)],
            )?;
            Ok(())
        })
        .await
    }
}

/// The columns [`read_dead_letters`] reads, in its order.
const DEAD_LETTER_COLUMNS: &str =
    "seq, message_id, queue, body, properties, enqueued_at, delivery_count";

/// The dead letters `sql` selects ([`DEAD_LETTER_COLUMNS`]).
fn read_dead_letters(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<DeadLetter>, BusError> {
    let mut stmt = c.prepare(sql)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .map(
            |(sequence, message_id, queue, body, properties, enqueued_at, count)| {
                let props: Map<String, Value> =
                    serde_json::from_str(&properties).unwrap_or_default();
                let text = |key: &str| {
                    props
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                DeadLetter {
                    sequence,
                    message_id,
                    queue,
                    body,
                    reason: text("DeadLetterReason"),
                    description: text("DeadLetterErrorDescription"),
                    enqueued_at: from_millis(enqueued_at),
                    delivery_count: u32::try_from(count).unwrap_or(u32::MAX),
                }
            },
        )
        .collect())
}

fn insert_all(
    tx: &rusqlite::Transaction<'_>,
    messages: &[Outgoing],
    now: DateTime<Utc>,
    ids: &Ids,
) -> Result<(), BusError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO messages (queue, message_id, body, properties, enqueued_at, visible_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for m in messages {
        let visible = m.scheduled_at.map_or(millis(now), millis);
        stmt.execute(params![
            m.queue,
            ids.next(),
            m.body,
            Value::Object(m.properties.clone()).to_string(),
            millis(now),
            visible
        ])?;
    }
    Ok(())
}

fn dead_letter(
    tx: &rusqlite::Transaction<'_>,
    seq: i64,
    reason: &str,
    description: &str,
    forward_to: Option<&str>,
    now: i64,
) -> Result<(), BusError> {
    let (queue, properties): (String, String) = tx.query_row(
        "SELECT queue, properties FROM messages WHERE seq = ?1",
        [seq],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut props: Map<String, Value> = serde_json::from_str(&properties).unwrap_or_default();
    props.insert("DeadLetterReason".into(), Value::String(reason.into()));
    props.insert(
        "DeadLetterErrorDescription".into(),
        Value::String(description.into()),
    );
    props.insert("DeadLetterSource".into(), Value::String(queue));
    let props = Value::Object(props).to_string();
    match forward_to {
        Some(target) => {
            tx.execute(
                "UPDATE messages SET queue = ?1, properties = ?2, delivery_count = 0, lock_token = NULL,
                 visible_at = ?3 WHERE seq = ?4",
                params![target, props, now, seq],
            )?;
        }
        None => {
            tx.execute(
                "UPDATE messages SET dead = 1, properties = ?1, lock_token = NULL WHERE seq = ?2",
                params![props, seq],
            )?;
        }
    }
    Ok(())
}
