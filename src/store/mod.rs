//! The cluster's recorded facts and the locks around them: the state file
//! (primary, fenced nodes, history), the leader-lease store, which nodes
//! are local, and the per-command context that reads them.

pub mod ctx;
pub mod dcs;
pub mod local;
pub mod lock;
pub mod state;
pub mod view;
