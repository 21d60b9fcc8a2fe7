//! Everything that speaks to or about PostgreSQL itself: finding its
//! programs, rendering its config files, inspecting data directories,
//! running its programs, and SQL.

pub mod basebackup;
pub mod bin;
pub mod certgen;
pub mod conf;
pub mod controldata;
pub mod controlfile;
pub mod datadir;
pub mod fsutil;
pub mod hba;
pub mod initdb;
pub mod os_user;
pub mod process;
pub mod rewind;
pub mod sql;
pub mod standby;
pub mod tar;
pub mod tls;
pub mod wire;
