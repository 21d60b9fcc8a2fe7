//! pgrepl's integration tests: one binary, real PostgreSQL, real clusters.

mod browser;
mod harness;
#[path = "../common/netns.rs"]
mod netns;
#[path = "../common/probe.rs"]
mod probe;
#[path = "../common/writer.rs"]
mod writer;

mod api;
mod archive;
mod bad_config;
mod clone;
mod dashboard;
mod drill;
mod durability;
mod etcd;
mod faults;
mod habits;
mod hosts;
mod layering;
mod lifecycle;
mod majors;
mod moves;
mod multihost;
mod observe;
mod packaging;
mod refusals;
mod tls;
