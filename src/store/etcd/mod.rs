//! etcd as pgrepl's store across hosts: the leader lease ([`EtcdDcs`]), the
//! cluster's record ([`EtcdRecord`]), the member keys ([`Members`]) and the
//! commands' requests to the agents ([`Requests`]), all through etcd's JSON
//! gateway ([`gateway`]). Keys live under `<prefix>/<cluster>/`.

mod gateway;
mod lease;
mod members;
mod record;
mod requests;
pub(crate) mod settings;

pub(crate) use gateway::{version_caveat, Gateway};
pub use lease::EtcdDcs;
pub(crate) use lease::{leader_blocking, leader_key, lease_left};
pub(crate) use members::{read_members, Members};
pub(crate) use record::EtcdRecord;
pub(crate) use requests::{Action, ActionProgress, Kind, Move, NodeAction, Progress, Requests};
