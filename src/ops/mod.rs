//! The steps that change the cluster: rendering and writing node files,
//! bootstrap, clone and seeding, preflight checks, archiving, hooks, and
//! the moves (switchover, failover, rejoin, reclone).

pub(crate) mod archive;
pub(crate) mod bootstrap;
pub(crate) mod clone;
pub(crate) mod configure;
pub(crate) mod control;
pub(crate) mod drill;
pub(crate) mod entry;
pub(crate) mod hooks;
pub(crate) mod moves;
pub(crate) mod preflight;
pub(crate) mod reload;
pub(crate) mod reload_plan;
pub(crate) mod seed;
pub(crate) mod wait;
