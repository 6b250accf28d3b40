//! The ports: one trait per outside system the stages and functions touch.
//!
//! Each port imports only `domain`; its adapters live by system in `azure/`
//! (production) and `local/` (one machine), and only the composition root
//! (`startup`) names an adapter. A port's error says what happened and whether
//! trying again may help, never which adapter failed how.

pub mod events;
pub mod store;
