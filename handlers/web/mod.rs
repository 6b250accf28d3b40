//! Adapters for plain HTTPS peers that are not Azure: Teams.

pub mod teams;
