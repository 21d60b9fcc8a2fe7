//! The cluster's recorded facts and the locks around them: the state file
//! (primary, fenced nodes, history), the leader-lease store, which nodes
//! are local, and the per-command context that reads them.

pub(crate) mod bookkeeping;
pub(crate) mod ctx;
pub(crate) mod dcs;
pub(crate) mod etcd;
pub(crate) mod local;
pub(crate) mod lock;
pub(crate) mod record;
pub(crate) mod state;
pub(crate) mod view;
