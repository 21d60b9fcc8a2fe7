//! The long-running side of pgrepl: process supervision, the HA loop, the
//! durability task and the HTTP API.

pub mod api;
pub mod durability;
pub mod ha;
pub mod monitor;
pub mod supervise;
