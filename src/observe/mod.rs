//! What the cluster looks like: gathering status, health verdicts, the
//! report lines, metrics text and the monitor's snapshot. Reads only.

pub(crate) mod document;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod report;
pub(crate) mod snapshot;
pub(crate) mod status;
