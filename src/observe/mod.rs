//! What the cluster looks like: gathering status, health verdicts, the
//! report lines, metrics text and the monitor's snapshot. Reads only.

pub mod document;
pub mod health;
pub mod metrics;
pub mod report;
pub mod snapshot;
pub mod status;
