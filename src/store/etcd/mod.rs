//! etcd as pgrepl's store across hosts: the leader lease ([`EtcdDcs`]), the
//! cluster's record ([`EtcdRecord`]) and the member keys ([`Members`]), both through etcd's JSON gateway
//! ([`gateway`]). Keys live under `<prefix>/<cluster>/`.

mod gateway;
mod lease;
mod members;
mod record;
pub(crate) mod settings;

pub(crate) use gateway::{version_caveat, Gateway};
pub(crate) use lease::leader_blocking;
pub use lease::EtcdDcs;
pub(crate) use members::{read_members, Members};
pub(crate) use record::EtcdRecord;
