//! pgrepl: turns one config file into a supervised PostgreSQL
//! streaming-replication cluster (one primary, N hot standbys).
//!
//! The folders are layers, and a module imports only from its own layer and
//! those below it (a test in `tests/it/layering.rs` enforces it):
//! `domain ← config ← pg ← store ← observe ← ops ← agent ← cmd ← cli`.
//! `error` (the error type with its exit codes) and `output` (the line
//! printer) serve every layer.

#![warn(unreachable_pub)]

mod agent;
mod cli;
mod cmd;
mod config;
mod domain;
mod error;
mod observe;
mod ops;
mod output;
mod pg;
mod store;

// The public surface: what `main` needs, and what the integration tests
// and benchmarks use. Everything else is the crate's own.
pub use cli::{psql_args, run, Cli};
pub use config::{load as load_config, Config};
pub use error::Error;
pub use observe::status::gather::probe_queries;
pub use pg::bin::{find as find_postgres, PgBin};
pub use pg::datadir::system_id;
pub use pg::os_user::RunAs;
pub use store::dcs::{BoxFut, Dcs};
pub use store::etcd::EtcdDcs;
