//! The local adapters: every port served on one machine, with no Azure
//! account — the embedded SQLite run store, child processes, the outbox, a
//! gallery in the data folder, the test environment, a Marketplace file,
//! a log copy, and the images folder's git repository as the source of runs.

pub mod executor;
pub mod gallery;
pub mod git;
pub mod logs;
pub mod marketplace;
pub mod outbox;
pub mod sources;
pub mod sqlite;
pub mod test_env;
