//! Everything that speaks to or about PostgreSQL itself: finding its
//! programs, rendering its config files, inspecting data directories,
//! running its programs, and SQL.

pub(crate) mod basebackup;
pub(crate) mod bin;
pub(crate) mod certgen;
pub(crate) mod conf;
pub(crate) mod controldata;
pub(crate) mod controlfile;
pub(crate) mod datadir;
pub(crate) mod fsutil;
pub(crate) mod hba;
pub(crate) mod initdb;
pub(crate) mod os_user;
pub(crate) mod process;
pub(crate) mod rewind;
pub(crate) mod sql;
pub(crate) mod standby;
pub(crate) mod tar;
pub(crate) mod tls;
pub(crate) mod tls_stream;
pub(crate) mod wire;
