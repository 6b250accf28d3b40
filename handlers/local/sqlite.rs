//! The embedded run store: one SQLite database file.
//!
//! SQLite rather than a pure-Rust key-value store because the local host's
//! queue lives in the same kind of file, both need multi-row transactions and
//! secondary indexes (runs by image, by status), and an operator can open the
//! file with the `sqlite3` shell to see exactly what the factory recorded.
//!
//! The ETag is the row's revision. A trigger bumps it on any edit of a
//! document that does not (one made with the `sqlite3` shell), so a writer
//! holding an older ETag can never overwrite such an edit blindly.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::fleet::{ImageRuns, MAX_IN_FLIGHT};
use crate::domain::run::{Run, RunId};
use crate::ports::store::{
    ETag, FLEET_STATUSES, RunPage, RunQuery, RunStore, StoreError, Stored, parse_run,
};

/// Largest page a query returns.
const MAX_PAGE: usize = 100;

/// The fleet view's runs of some images (`?1`, a JSON array): per image and
/// status of `?2` the newest run (of the released ones, the newest no
/// rollback withdrew: `json_valid` keeps a document edited into garbage
/// from failing the query), one seek each in `runs_by_image_status`,
/// then each image's runs in a status of `?3`, at most `?4` each, newest
/// first, from the same index (named: without statistics the planner picks
/// `runs_by_image` and reads the image's whole history).
const IMAGE_RUNS: &str = "SELECT r.image, r.id, r.doc FROM json_each(?1) i, json_each(?2) s
       JOIN runs r ON r.id = (
         SELECT id FROM runs WHERE image = i.value AND status = s.value
           AND NOT (status = 'released'
             AND (CASE WHEN json_valid(doc) THEN json_extract(doc, '$.release.withdrawn') END) IS NOT NULL)
         ORDER BY created_at DESC, id DESC LIMIT 1)
     UNION ALL
     SELECT image, id, doc FROM (
       SELECT r.image, r.id, r.doc, row_number() OVER (
         PARTITION BY r.image ORDER BY r.created_at DESC, r.id DESC) AS n
       FROM json_each(?1) i, json_each(?3) s
       JOIN runs r INDEXED BY runs_by_image_status
         ON r.image = i.value AND r.status = s.value)
     WHERE n <= ?4";

/// The images with a run in a status of `?1` created at or after `?2`,
/// leaving out releases a rollback withdrew: a range of `runs_by_status`.
const PATCHED_SINCE: &str = "SELECT DISTINCT image FROM runs
     WHERE status IN (SELECT value FROM json_each(?1)) AND created_at >= ?2
       AND (CASE WHEN json_valid(doc) THEN json_extract(doc, '$.release.withdrawn') END) IS NULL";

/// A run store in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = open_database(
            path,
            "CREATE TABLE IF NOT EXISTS runs (
                id TEXT PRIMARY KEY,
                image TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at TEXT NOT NULL,
                rev INTEGER NOT NULL,
                doc TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at DESC, id DESC);
            CREATE INDEX IF NOT EXISTS runs_by_image ON runs (image, created_at DESC, id DESC);
            CREATE INDEX IF NOT EXISTS runs_by_image_status ON runs (image, status, created_at DESC, id DESC);
            CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at DESC);
            CREATE INDEX IF NOT EXISTS runs_by_follow_ups_due
                ON runs ((CASE WHEN json_valid(doc) THEN json_extract(doc, '$.followUpsDue') END))
                WHERE (CASE WHEN json_valid(doc) THEN json_extract(doc, '$.followUpsDue') END) IS NOT NULL;
            CREATE TRIGGER IF NOT EXISTS runs_edited_outside AFTER UPDATE OF doc ON runs
                WHEN NEW.rev = OLD.rev
                BEGIN UPDATE runs SET rev = rev + 1 WHERE id = NEW.id; END;
            CREATE TABLE IF NOT EXISTS counters (
                image TEXT NOT NULL,
                scope TEXT NOT NULL,
                next INTEGER NOT NULL,
                PRIMARY KEY (image, scope)
            );
            CREATE TABLE IF NOT EXISTS allocations (
                image TEXT NOT NULL,
                scope TEXT NOT NULL,
                holder TEXT NOT NULL,
                seq INTEGER NOT NULL,
                PRIMARY KEY (image, scope, holder)
            );",
        )?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| {
                StoreError::Unavailable("the store's connection lock is poisoned".into())
            })?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

/// Opens a SQLite file in WAL mode with a busy timeout and creates what
/// `schema` declares (`CREATE ... IF NOT EXISTS` statements, run in one
/// transaction); shared with the local queue.
///
/// A database this call creates is set up without waiting for the disk
/// (`synchronous = OFF` until its schema is in): switching a new file to WAL
/// and writing its first pages otherwise costs six `fsync`s, tens of
/// milliseconds of a cold start on a busy disk (docs/benchmarks.md). A power
/// loss in the moments after a database was created can lose what it held
/// then, as `NORMAL` already lets the latest transactions roll back; the next
/// open creates any schema that is missing. Every later write has
/// `synchronous = NORMAL`.
///
/// The file and its folder are private (0600, 0700). SQLite creates the
/// write-ahead log (`-wal`) and shared-memory (`-shm`) files itself, with
/// the mode of the database file whatever the umask, so the database is
/// created 0600 before SQLite opens it; side files that a version before
/// this one left readable by others are set to 0600 once it is open.
pub fn open_database(path: &Path, schema: &str) -> Result<Connection, StoreError> {
    let private_err = |what: &Path, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot make {} private: {e}", what.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private::create_dir(dir).map_err(|e| private_err(dir, e))?;
    }
    let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    crate::private::open_append(path).map_err(|e| private_err(path, e))?;
    let conn = Connection::open(path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    let synchronous = if fresh { "OFF" } else { "NORMAL" };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;
        BEGIN; {schema} COMMIT;
        PRAGMA synchronous = NORMAL;"
    ))
    .map_err(unavailable)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        crate::private::tighten(Path::new(&side)).map_err(|e| private_err(path, e))?;
    }
    Ok(conn)
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn sort_key(run: &Run) -> String {
    instant_key(run.created_at)
}

/// How `created_at` is stored: fixed width, so text order is time order.
fn instant_key(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Names as a JSON array, the one way a list of values reaches a statement.
fn json_list<T: AsRef<str>>(items: &[T]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".into())
}

fn to_json(run: &Run) -> Result<String, StoreError> {
    serde_json::to_string(run)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode run: {e}")))
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create(&self, run: &Run) -> Result<ETag, StoreError> {
        let doc = to_json(run)?;
        let (id, image, status, created) = (
            run.id.to_string(),
            run.image.clone(),
            run.status.name(),
            sort_key(run),
        );
        self.with_conn(move |c| {
            let inserted = c
                .execute(
                    "INSERT INTO runs (id, image, status, created_at, rev, doc)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5) ON CONFLICT (id) DO NOTHING",
                    params![id, image, status, created, doc],
                )
                .map_err(unavailable)?;
            if inserted == 0 {
                return Err(StoreError::Conflict { id });
            }
            Ok(ETag("1".into()))
        })
        .await
    }

    async fn get(&self, id: &RunId) -> Result<Stored<Run>, StoreError> {
        let id = id.to_string();
        self.with_conn(move |c| {
            let row: Option<(i64, String)> = c
                .query_row("SELECT rev, doc FROM runs WHERE id = ?1", [&id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(unavailable)?;
            let (rev, doc) = row.ok_or_else(|| StoreError::NotFound { id: id.clone() })?;
            Ok(Stored {
                value: parse_run(&id, &doc)?,
                etag: ETag(rev.to_string()),
            })
        })
        .await
    }

    async fn replace(&self, run: &Run, if_match: &ETag) -> Result<ETag, StoreError> {
        let doc = to_json(run)?;
        let (id, status) = (run.id.to_string(), run.status.name());
        let expected: i64 = if_match
            .0
            .parse()
            .map_err(|_| StoreError::PreconditionFailed { id: id.clone() })?;
        self.with_conn(move |c| {
            let updated = c
                .execute(
                    "UPDATE runs SET doc = ?1, status = ?2, rev = rev + 1 WHERE id = ?3 AND rev = ?4",
                    params![doc, status, id, expected],
                )
                .map_err(unavailable)?;
            if updated == 1 {
                return Ok(ETag((expected + 1).to_string()));
            }
            let exists: bool = c
                .query_row("SELECT 1 FROM runs WHERE id = ?1", [&id], |_| Ok(true))
                .optional()
                .map_err(unavailable)?
                .unwrap_or(false);
            Err(if exists {
                StoreError::PreconditionFailed { id }
            } else {
                StoreError::NotFound { id }
            })
        })
        .await
    }

    async fn list(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let after = match &query.continuation {
            Some(token) => Some(decode_continuation(token)?),
            None => None,
        };
        let statuses: Vec<&str> = query.statuses.iter().map(|s| s.name()).collect();
        let statuses = json_list(&statuses);
        let image = query.image.clone();
        let without_withdrawn = query.without_withdrawn;
        self.with_conn(move |c| {
            let (after_created, after_id) = after.unzip();
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, created_at, doc FROM runs
                     WHERE (?1 IS NULL OR image = ?1)
                       AND (json_array_length(?2) = 0 OR status IN (SELECT value FROM json_each(?2)))
                       AND (?3 IS NULL OR created_at < ?3 OR (created_at = ?3 AND id < ?4))
                       AND (?6 = 0 OR (CASE WHEN json_valid(doc) THEN json_extract(doc, '$.release.withdrawn') END) IS NULL)
                     ORDER BY created_at DESC, id DESC
                     LIMIT ?5",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(
                    params![
                        image,
                        statuses,
                        after_created,
                        after_id,
                        (limit + 1) as i64,
                        without_withdrawn
                    ],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
                )
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            let more = rows.len() > limit;
            let mut runs = Vec::with_capacity(limit);
            let mut last = None;
            for (id, created, doc) in rows.into_iter().take(limit) {
                // One unreadable run must not hide the others (the sweeper
                // lists active runs); it is reported and left untouched.
                match parse_run(&id, &doc) {
                    Ok(run) => runs.push(run),
                    Err(e) => tracing::error!(run_id = %id, "skipping an unreadable run: {e}"),
                }
                last = Some((created, id));
            }
            let continuation = last
                .filter(|_| more)
                .map(|(created, id)| URL_SAFE_NO_PAD.encode(format!("{created}|{id}")));
            Ok(RunPage { runs, continuation })
        })
        .await
    }

    async fn next_sequence(
        &self,
        image: &str,
        scope: &str,
        holder: &RunId,
    ) -> Result<u32, StoreError> {
        let (image, scope, holder) = (image.to_string(), scope.to_string(), holder.to_string());
        self.with_conn(move |c| {
            // One immediate transaction: the holder's earlier number, or the
            // counter's next one recorded as the holder's.
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let earlier: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM allocations WHERE image = ?1 AND scope = ?2 AND holder = ?3",
                    params![image, scope, holder],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            let next = match earlier {
                Some(seq) => seq,
                None => {
                    let seq: i64 = tx
                        .query_row(
                            "INSERT INTO counters (image, scope, next) VALUES (?1, ?2, 1)
                             ON CONFLICT (image, scope) DO UPDATE SET next = next + 1
                             RETURNING next - 1",
                            params![image, scope],
                            |r| r.get(0),
                        )
                        .map_err(unavailable)?;
                    tx.execute(
                        "INSERT INTO allocations (image, scope, holder, seq) VALUES (?1, ?2, ?3, ?4)",
                        params![image, scope, holder, seq],
                    )
                    .map_err(unavailable)?;
                    seq
                }
            };
            tx.commit().map_err(unavailable)?;
            u32::try_from(next)
                .map_err(|_| StoreError::Unavailable(format!("counter {image}/{scope} overflowed")))
        })
        .await
    }

    async fn image_runs(&self, images: &[String]) -> Result<Vec<ImageRuns>, StoreError> {
        let names = json_list(images);
        let ended = json_list(&FLEET_STATUSES.map(|s| s.name()));
        let active: Vec<&str> = RunQuery::active()
            .statuses
            .iter()
            .map(|s| s.name())
            .collect();
        let active = json_list(&active);
        let images = images.to_vec();
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(IMAGE_RUNS).map_err(unavailable)?;
            let rows = stmt
                .query_map(params![names, ended, active, MAX_IN_FLIGHT as i64], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            let mut found: Vec<ImageRuns> = images
                .iter()
                .map(|image| ImageRuns {
                    image: image.clone(),
                    ..ImageRuns::default()
                })
                .collect();
            for (image, id, doc) in rows {
                let run = match parse_run(&id, &doc) {
                    Ok(run) => run,
                    Err(e) => {
                        tracing::error!(run_id = %id, "skipping an unreadable run: {e}");
                        continue;
                    }
                };
                if let Some(slot) = found.iter_mut().find(|f| f.image == image) {
                    slot.file(run);
                }
            }
            for slot in &mut found {
                slot.in_flight
                    .sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            }
            Ok(found)
        })
        .await
    }

    async fn images_patched_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<BTreeSet<String>, StoreError> {
        let since = instant_key(since);
        let statuses = json_list(&[
            crate::domain::run::RunStatus::Released.name(),
            crate::domain::run::RunStatus::Skipped.name(),
        ]);
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(PATCHED_SINCE).map_err(unavailable)?;
            let images = stmt
                .query_map(params![statuses, since], |r| r.get::<_, String>(0))
                .map_err(unavailable)?
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(unavailable)?;
            Ok(images)
        })
        .await
    }

    async fn follow_ups_due(
        &self,
        by: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        let (by, limit) = (by.timestamp(), limit.clamp(1, MAX_PAGE) as i64);
        self.with_conn(move |c| {
            // The partial expression index `runs_by_follow_ups_due` serves
            // this; `json_valid` keeps a document edited into garbage beside
            // the store from failing every write (it is reported as corrupt
            // when read, like any other).
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, doc FROM runs
                     WHERE (CASE WHEN json_valid(doc) THEN json_extract(doc, '$.followUpsDue') END) IS NOT NULL
                       AND (CASE WHEN json_valid(doc) THEN json_extract(doc, '$.followUpsDue') END) <= ?1
                     ORDER BY (CASE WHEN json_valid(doc) THEN json_extract(doc, '$.followUpsDue') END), id
                     LIMIT ?2",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![by, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            Ok(rows
                .into_iter()
                .filter_map(|(id, doc)| match parse_run(&id, &doc) {
                    Ok(run) => Some(run),
                    Err(e) => {
                        tracing::error!(run_id = %id, "skipping an unreadable run: {e}");
                        None
                    }
                })
                .collect())
        })
        .await
    }
}

fn decode_continuation(token: &str) -> Result<(String, String), StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::BadContinuation)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::BadContinuation)?;
    let (created, id) = text.split_once('|').ok_or(StoreError::BadContinuation)?;
    Ok((created.to_string(), id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query plan of `sql`, one line per step.
    fn plan(c: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let params = rusqlite::params!["[\"web\"]", "[\"released\"]", "[\"queued\"]", 10];
        let count = stmt.parameter_count();
        stmt.query_map(&params[..count], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn the_fleet_queries_seek_indexes_and_never_scan_the_runs() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = SqliteStore::open(&dir.path().join("runs.db")).unwrap();
        let c = store.conn.lock().unwrap();
        for (sql, index) in [
            (IMAGE_RUNS, "runs_by_image_status"),
            (PATCHED_SINCE, "runs_by_status"),
        ] {
            let steps = plan(&c, sql);
            assert!(
                steps.iter().any(|s| s.contains(index)),
                "{index} is not used: {steps:#?}"
            );
            // Every read of the runs table is a seek in the fleet's index
            // (or of a run by its id), never a scan or an image's whole history.
            let reads = steps
                .iter()
                .filter(|s| s.contains(" runs ") || s.contains(" r ") || s.ends_with(" runs"));
            for read in reads {
                assert!(
                    read.starts_with("SEARCH") && (read.contains(index) || read.contains("(id=?)")),
                    "{read} in {steps:#?}"
                );
            }
        }
    }
}
