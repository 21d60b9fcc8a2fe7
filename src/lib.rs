//! pgrepl: turns one config file into a supervised PostgreSQL
//! streaming-replication cluster (one primary, N hot standbys).
//!
//! Layout: `config` (file → validated [`config::Config`]), `pg::*`
//! (PostgreSQL programs, rendering, data dirs, SQL), `supervise` (process
//! supervision), and one module per command (`up`, `down`, `status`, ...).

pub mod api;
pub mod archive;
pub mod bootstrap;
pub mod certgen;
pub mod cli;
pub mod clone;
pub mod config;
pub mod configure;
pub mod confirm;
pub mod control;
pub mod ctx;
pub mod dcs;
pub mod detach;
pub mod down;
pub mod durability;
pub mod error;
pub mod fsutil;
pub mod ha;
pub mod health;
pub mod hooks;
pub mod init;
pub mod layout;
pub mod local;
pub mod lock;
pub mod lsn;
pub mod metrics;
pub mod moves;
pub mod observe;
pub mod os_user;
pub mod pg;
pub mod preflight;
pub mod psql;
pub mod reload;
pub mod reload_plan;
pub mod report;
pub mod seed;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod summary;
pub mod supervise;
pub mod tls;
pub mod units;
pub mod up;
pub mod validate;
