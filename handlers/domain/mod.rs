//! The domain core: runs, their state machine, versions, tags and approval
//! tokens. Pure: no I/O, no clock, no Azure, HTTP or storage types.

pub mod approval;
pub mod calendar;
pub mod diagnosis;
pub mod followup;
pub mod gallery;
pub mod machine;
pub mod release_event;
pub mod run;
pub mod schedule;
pub mod tags;
pub mod version;
