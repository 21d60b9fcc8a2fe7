//! The steps that change the cluster: rendering and writing node files,
//! bootstrap, clone and seeding, preflight checks, archiving, hooks, and
//! the moves (switchover, failover, rejoin, reclone).

pub mod archive;
pub mod bootstrap;
pub mod clone;
pub mod configure;
pub mod control;
pub mod hooks;
pub mod moves;
pub mod preflight;
pub mod reload_plan;
pub mod seed;
pub mod wait;
