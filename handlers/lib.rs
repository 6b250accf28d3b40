//! image-factory: a serverless golden-image factory for Azure.
//!
//! The crate is one Azure Functions custom handler (`server`, `functions`)
//! around a pure domain core (`domain`): one port per outside system
//! (`ports`), adapters by system (`azure`, `local`, `web`) chosen by the
//! composition root (`startup`), and an embedded Functions host for local
//! runs (`host`).

pub mod app;
pub mod archive;
pub mod azure;
pub mod build_log;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod doctor;
pub mod domain;
pub mod followups;
pub mod functions;
pub mod host;
pub mod inputs;
pub mod layout;
pub mod local;
pub mod notifier;
pub mod package;
pub mod packer;
pub mod pages;
pub mod ports;
pub mod private;
pub mod protocol;
pub mod rollback;
pub mod schedules;
pub mod server;
pub mod sources;
pub mod stages;
pub mod startup;
pub mod template;
pub mod trace;
pub mod web;
pub mod worker;
