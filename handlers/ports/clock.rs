//! Time and fresh ids: the two inputs from the world that every part uses,
//! injectable so a test can move time and replay a schedule exactly.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The clock, injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Where fresh ids come from: message ids and lock tokens of the embedded
/// bus, build worker ids and approval token ids. The OS generator in
/// production ([`Ids::random`]); a seeded generator ([`Ids::seeded`]) makes
/// a test schedule replay exactly, ids included.
#[derive(Clone, Default)]
pub struct Ids {
    seeded: Option<Arc<Mutex<StdRng>>>,
}

impl Ids {
    /// Ids from the OS generator.
    pub fn random() -> Ids {
        Ids::default()
    }

    /// Ids from a generator seeded with `seed`: the same seed, the same ids in the same order.
    pub fn seeded(seed: u64) -> Ids {
        Ids {
            seeded: Some(Arc::new(Mutex::new(StdRng::seed_from_u64(seed)))),
        }
    }

    /// A fresh id: 16 lowercase hex characters (64 random bits).
    pub fn next(&self) -> String {
        let bits: u64 = match &self.seeded {
            // A panic elsewhere while the lock was held leaves the generator usable.
            Some(rng) => rng.lock().unwrap_or_else(PoisonError::into_inner).random(),
            None => rand::random(),
        };
        format!("{bits:016x}")
    }
}

impl std::fmt::Debug for Ids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.seeded.is_some() {
            "Ids(seeded)"
        } else {
            "Ids(random)"
        })
    }
}

/// A fresh random id: 16 lowercase hex characters (64 random bits).
pub fn new_id() -> String {
    Ids::random().next()
}
