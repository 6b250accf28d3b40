//! What the benches share: a run store wrapper that counts the requests the
//! factory sends (reads, writes, queries) and notes when each run first
//! reaches a milestone, and the process's peak RSS.

#![allow(dead_code)] // each bench uses a different part of this module

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use image_factory::domain::fleet::ImageRuns;
use image_factory::domain::run::{Run, RunId};
use image_factory::ports::store::{ETag, RunPage, RunQuery, RunStore, StoreError, Stored};

/// Store requests by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Requests {
    /// Point reads (`get`).
    pub reads: u64,
    /// Writes (`create`, `replace`, `next_sequence`).
    pub writes: u64,
    /// Queries (`list`, `image_runs`, `images_patched_since`, `follow_ups_due`).
    pub queries: u64,
}

impl Requests {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.reads + self.writes + self.queries
    }
}

/// Counts the requests sent to `inner`, and notes when each run is first
/// written in a state `milestone` accepts.
pub struct Counting {
    inner: Arc<dyn RunStore>,
    reads: AtomicU64,
    writes: AtomicU64,
    queries: AtomicU64,
    milestone: fn(&Run) -> bool,
    reached: Mutex<HashMap<RunId, Instant>>,
    changed: tokio::sync::Notify,
}

impl Counting {
    /// Counts the requests sent to `inner`.
    pub fn new(inner: Arc<dyn RunStore>) -> Counting {
        Counting::watching(inner, |_| false)
    }

    /// Counts, and notes when each run is first written in a state `milestone` accepts.
    pub fn watching(inner: Arc<dyn RunStore>, milestone: fn(&Run) -> bool) -> Counting {
        Counting {
            inner,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            queries: AtomicU64::new(0),
            milestone,
            reached: Mutex::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The requests counted since the start or the last [`Counting::reset`].
    pub fn requests(&self) -> Requests {
        Requests {
            reads: self.reads.load(Ordering::SeqCst),
            writes: self.writes.load(Ordering::SeqCst),
            queries: self.queries.load(Ordering::SeqCst),
        }
    }

    /// Starts counting again from zero.
    pub fn reset(&self) {
        for counter in [&self.reads, &self.writes, &self.queries] {
            counter.store(0, Ordering::SeqCst);
        }
    }

    /// Waits until `runs` runs reached the milestone; answers when the last did.
    pub async fn all_reached(&self, runs: usize) -> Instant {
        loop {
            let notified = self.changed.notified();
            if let Some(last) = {
                let reached = self.reached.lock().expect("lock");
                (reached.len() >= runs).then(|| reached.values().max().copied())
            } {
                return last.unwrap_or_else(Instant::now);
            }
            notified.await;
        }
    }

    fn written(&self, run: &Run) {
        if (self.milestone)(run) {
            let mut reached = self.reached.lock().expect("lock");
            if !reached.contains_key(&run.id) {
                reached.insert(run.id.clone(), Instant::now());
                self.changed.notify_waiters();
            }
        }
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl RunStore for Counting {
    async fn create(&self, run: &Run) -> Result<ETag, StoreError> {
        self.count(&self.writes);
        let etag = self.inner.create(run).await?;
        self.written(run);
        Ok(etag)
    }
    async fn get(&self, id: &RunId) -> Result<Stored<Run>, StoreError> {
        self.count(&self.reads);
        self.inner.get(id).await
    }
    async fn replace(&self, run: &Run, if_match: &ETag) -> Result<ETag, StoreError> {
        self.count(&self.writes);
        let etag = self.inner.replace(run, if_match).await?;
        self.written(run);
        Ok(etag)
    }
    async fn list(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        self.count(&self.queries);
        self.inner.list(query).await
    }
    async fn next_sequence(
        &self,
        image: &str,
        scope: &str,
        holder: &RunId,
    ) -> Result<u32, StoreError> {
        self.count(&self.writes);
        self.inner.next_sequence(image, scope, holder).await
    }
    async fn image_runs(&self, images: &[String]) -> Result<Vec<ImageRuns>, StoreError> {
        self.count(&self.queries);
        self.inner.image_runs(images).await
    }
    async fn images_patched_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        self.count(&self.queries);
        self.inner.images_patched_since(since).await
    }
    async fn follow_ups_due(
        &self,
        by: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        self.count(&self.queries);
        self.inner.follow_ups_due(by, limit).await
    }
}

/// The peak resident set size of this process (VmHWM), in KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// This machine's cores and CPU model, and the profile the bench was built with.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!(
        "{} cpu(s), {cpu}; profile: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        }
    )
}
