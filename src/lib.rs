//! pgrepl: turns one config file into a supervised PostgreSQL
//! streaming-replication cluster (one primary, N hot standbys).
//!
//! The folders are layers, and a module imports only from its own layer and
//! those below it (a test in `tests/it/layering.rs` enforces it):
//! `domain ← config ← pg ← store ← observe ← ops ← agent ← cmd ← cli`.
//! `error` (the error type with its exit codes) and `output` (the line
//! printer) serve every layer.

pub mod agent;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod domain;
pub mod error;
pub mod observe;
pub mod ops;
pub mod output;
pub mod pg;
pub mod store;
