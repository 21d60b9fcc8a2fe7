//! The `status --json` document: the status, its health verdict and a
//! schema version, as the command prints it and the API serves it.

use serde::Serialize;

use crate::observe::health::Report;
use crate::observe::status::ClusterStatus;

/// `status --json`: the snapshot plus its health verdict.
#[derive(Debug, Serialize)]
pub(crate) struct StatusDocument<'a> {
    /// Bumped when a field changes meaning or goes away (adding one does not).
    pub schema_version: u32,
    #[serde(flatten)]
    pub status: &'a ClusterStatus,
    pub health: &'a Report,
}

/// The `status --json` schema version (docs/status.md).
pub(crate) const SCHEMA_VERSION: u32 = 1;

impl<'a> StatusDocument<'a> {
    pub(crate) fn new(status: &'a ClusterStatus, health: &'a Report) -> Self {
        StatusDocument { schema_version: SCHEMA_VERSION, status, health }
    }
}
