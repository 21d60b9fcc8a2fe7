//! What the cluster looks like: gathering status, health verdicts, the
//! report lines, metrics text, the monitor's snapshot and the dashboard's
//! model. Reads only.

pub(crate) mod dashboard;
pub(crate) mod document;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod report;
pub(crate) mod snapshot;
pub(crate) mod status;
