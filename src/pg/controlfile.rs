//! Reading `global/pg_control` directly, for the few fields whose place
//! has not moved in PostgreSQL 10–18: the cluster state, the last
//! checkpoint and its redo point. pgrepl reads these itself so that it does
//! not need a `pg_controldata` of the server's exact major (another major's
//! program misreads the file). Fields further in (checksums, wal_log_hints)
//! move between majors; those still come from `pg_controldata`.

use std::path::Path;

use crate::domain::lsn::Lsn;
use crate::error::{Error, Result};

/// What a stopped data dir says about its last shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ControlFile {
    /// `DBState`: 1 shut down, 2 shut down in recovery, 6 in production, ...
    pub state: u32,
    /// Start of the last checkpoint record (after a clean shutdown, the last
    /// record of its WAL).
    pub checkpoint: Lsn,
    /// Where recovery from that checkpoint would start.
    pub redo: Lsn,
    /// The timeline of that checkpoint.
    pub timeline: u32,
}

impl ControlFile {
    /// Cleanly stopped, as primary or as standby.
    pub(crate) fn clean_shutdown(&self) -> bool {
        self.state == 1 || self.state == 2
    }

    /// The state in pg_controldata's words.
    pub(crate) fn state_name(&self) -> &'static str {
        match self.state {
            0 => "starting up",
            1 => "shut down",
            2 => "shut down in recovery",
            3 => "shutting down",
            4 => "in crash recovery",
            5 => "in archive recovery",
            6 => "in production",
            _ => "unknown",
        }
    }
}

/// Parse the head of `pg_control` (native byte order, as the server wrote it):
/// system_identifier u64 @0, pg_control_version u32 @8, catalog_version u32
/// @12, state u32 @16, time i64 @24, checkPoint u64 @32, then (PostgreSQL 10
/// only) prevCheckPoint u64, then checkPointCopy: redo u64, ThisTimeLineID u32.
pub(crate) fn parse(b: &[u8]) -> std::result::Result<ControlFile, String> {
    let u32_at = |o: usize| b.get(o..o + 4).and_then(|s| s.try_into().ok()).map(u32::from_ne_bytes);
    let u64_at = |o: usize| b.get(o..o + 8).and_then(|s| s.try_into().ok()).map(u64::from_ne_bytes);
    let version = u32_at(8).ok_or("pg_control is truncated")?;
    // 1002 is PostgreSQL 10, 1100 is 11, 1201 is 12, 1300 is 13-16, 1700 is 17, 1800 is 18.
    if !(1000..2000).contains(&version) {
        return Err(format!("pg_control version {version} is not one of PostgreSQL 10-18"));
    }
    let redo_at = if version < 1100 { 48 } else { 40 };
    Ok(ControlFile {
        state: u32_at(16).ok_or("pg_control is truncated")?,
        checkpoint: Lsn(u64_at(32).ok_or("pg_control is truncated")?),
        redo: Lsn(u64_at(redo_at).ok_or("pg_control is truncated")?),
        timeline: u32_at(redo_at + 8).ok_or("pg_control is truncated")?,
    })
}

/// Read `dir/global/pg_control`.
pub(crate) fn read(dir: &Path) -> Result<ControlFile> {
    let path = dir.join("global/pg_control");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    parse(&bytes).map_err(|why| Error::Other(format!("{}: {why}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(version: u32, state: u32, checkpoint: u64, prev: Option<u64>, redo: u64) -> Vec<u8> {
        file_tli(version, state, checkpoint, prev, redo, 1)
    }

    fn file_tli(version: u32, state: u32, checkpoint: u64, prev: Option<u64>, redo: u64, tli: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&7_300_000_000_000_000_000u64.to_ne_bytes());
        b.extend_from_slice(&version.to_ne_bytes());
        b.extend_from_slice(&202_307_071u32.to_ne_bytes());
        b.extend_from_slice(&state.to_ne_bytes());
        b.extend_from_slice(&[0u8; 4]);
        b.extend_from_slice(&1_700_000_000i64.to_ne_bytes());
        b.extend_from_slice(&checkpoint.to_ne_bytes());
        if let Some(p) = prev {
            b.extend_from_slice(&p.to_ne_bytes());
        }
        b.extend_from_slice(&redo.to_ne_bytes());
        b.extend_from_slice(&tli.to_ne_bytes());
        b.resize(8192, 0);
        b
    }

    #[test]
    fn reads_state_checkpoint_and_redo_on_old_and_new_layouts() {
        let c = parse(&file(1300, 1, 0x3000028, None, 0x3000028 - 0x28)).unwrap();
        assert_eq!((c.state_name(), c.checkpoint, c.redo), ("shut down", Lsn(0x3000028), Lsn(0x3000000)));
        assert!(c.clean_shutdown());
        let c = parse(&file(1002, 6, 0x5000060, Some(0x4000000), 0x5000028)).unwrap();
        assert_eq!((c.state_name(), c.redo), ("in production", Lsn(0x5000028)));
        assert!(!c.clean_shutdown());
        assert!(parse(&file(942, 1, 1, None, 1)).unwrap_err().contains("not one of PostgreSQL 10-18"));
        assert_eq!(parse(&[0u8; 10]).unwrap_err(), "pg_control is truncated");
        assert_eq!(parse(&file_tli(1700, 1, 9, None, 9, 3)).unwrap().timeline, 3);
        assert_eq!(parse(&file_tli(1002, 1, 9, Some(8), 9, 4)).unwrap().timeline, 4);
    }
}
