//! pgrepl's own base backup over the replication protocol, for servers that
//! no installed `pg_basebackup` can copy (pg_basebackup refuses servers of a
//! newer major than its own, and some installations ship only the server).
//!
//! One connection: BASE_BACKUP with the WAL included (pg_basebackup's
//! `-X fetch`), unpacked straight into the staging dir, then one `syncfs`.
//! WAL the backup needs is kept on the primary by the standby's own slot
//! (created with WAL reserved before any clone), or, without slots, by a
//! temporary slot on this connection, so a busy primary cannot recycle it
//! mid-copy.

use std::path::Path;
use std::time::Duration;

use postgres_protocol::message::backend::Message;

use super::{CloneFailure, Progress};
use crate::error::Error;
use crate::pg::tar::Extractor;
use crate::pg::wire::{quote_ident, quote_literal, row_text, ReplConn, Target, WireError};

/// How long to wait for the primary to accept the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The BASE_BACKUP command for a server major. PostgreSQL 15 replaced the
/// keyword options with a parenthesised list and changed the reply format.
pub(super) fn base_backup_command(major: u32, label: &str) -> String {
    let label = quote_literal(label);
    if major >= 15 {
        format!("BASE_BACKUP (LABEL {label}, PROGRESS, CHECKPOINT 'fast', WAL, WAIT false, MANIFEST 'no')")
    } else {
        format!("BASE_BACKUP LABEL {label} PROGRESS FAST WAL NOWAIT")
    }
}

/// The command for a temporary slot that holds WAL for this connection.
pub(super) fn temp_slot_command(major: u32, name: &str) -> String {
    let name = quote_ident(name);
    if major >= 15 {
        format!("CREATE_REPLICATION_SLOT {name} TEMPORARY PHYSICAL (RESERVE_WAL)")
    } else {
        format!("CREATE_REPLICATION_SLOT {name} TEMPORARY PHYSICAL RESERVE_WAL")
    }
}

/// One message inside PostgreSQL 15+'s single COPY stream.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StreamMsg<'a> {
    NewArchive { name: String, tablespace: String },
    Data(&'a [u8]),
    Progress(u64),
    Manifest,
}

/// Decode a CopyData payload of a PostgreSQL 15+ base backup.
pub(super) fn decode_stream_msg(d: &[u8]) -> Result<StreamMsg<'_>, String> {
    let (&tag, rest) = d.split_first().ok_or("empty COPY message")?;
    match tag {
        b'n' => {
            let mut parts = rest.split(|&b| b == 0).map(|p| String::from_utf8_lossy(p).into_owned());
            let name = parts.next().unwrap_or_default();
            let tablespace = parts.next().unwrap_or_default();
            Ok(StreamMsg::NewArchive { name, tablespace })
        }
        b'd' => Ok(StreamMsg::Data(rest)),
        b'p' => {
            let b: [u8; 8] = rest.get(..8).and_then(|s| s.try_into().ok()).ok_or("short progress message")?;
            Ok(StreamMsg::Progress(u64::from_be_bytes(b)))
        }
        b'm' => Ok(StreamMsg::Manifest),
        t => Err(format!("unknown base backup message type '{}'", t as char)),
    }
}

/// Run one base backup into `target` (existing and empty). Blocking.
pub(super) fn clone(
    src: &Target,
    slot: Option<&str>,
    target: &Path,
    owner: Option<(u32, u32)>,
    mut on_progress: impl FnMut(Progress),
) -> Result<(), CloneFailure> {
    let mut conn = ReplConn::connect(src, CONNECT_TIMEOUT).map_err(sort)?;
    let major = conn.server_major;
    if slot.is_none() {
        let name = format!("pgrepl_clone_{}", std::process::id());
        conn.simple(&temp_slot_command(major, &name)).map_err(sort)?;
    }
    conn.query(&base_backup_command(major, "pgrepl clone")).map_err(sort)?;

    let mut result_sets = 0;
    let mut total_kb = 0u64;
    let mut tablespaces = Vec::new();
    let mut x: Option<Extractor> = None;
    let mut last_kb = u64::MAX;
    let mut report = |done_bytes: u64, total_kb: u64| {
        let done_kb = done_bytes / 1024;
        // Report about every megabyte, not every message.
        if done_kb / 1024 != last_kb / 1024 {
            last_kb = done_kb;
            on_progress(Progress { done_kb, total_kb: total_kb.max(done_kb) });
        }
    };
    loop {
        match conn.recv().map_err(sort)? {
            Message::RowDescription(_) => result_sets += 1,
            Message::DataRow(r) if result_sets == 2 => {
                // Tablespaces: (spcoid, spclocation, size in kB).
                let row = row_text(&r).map_err(sort)?;
                total_kb += row.get(2).cloned().flatten().and_then(|s| s.parse().ok()).unwrap_or(0);
                if let Some(Some(location)) = row.get(1) {
                    tablespaces.push(location.clone());
                }
            }
            Message::CopyOutResponse(_) => {
                if !tablespaces.is_empty() {
                    return Err(other(format!(
                        "the primary has tablespaces outside its data dir ({}), which pgrepl's built-in clone does not copy. Install pg_basebackup of PostgreSQL {major} (or newer) and set [replication] clone_method = \"pg_basebackup\"",
                        tablespaces.join(", ")
                    )));
                }
                if major < 15 {
                    // Before 15 each CopyOut is one tar archive; only the data dir's here.
                    x = Some(Extractor::new(target, owner));
                }
            }
            Message::CopyData(d) => {
                let data = d.data();
                if major < 15 {
                    let ex = x.as_mut().ok_or_else(|| other("COPY data before an archive began".into()))?;
                    ex.push(data).map_err(|e| io_failure(target, e))?;
                    report(ex.written, total_kb);
                    continue;
                }
                match decode_stream_msg(data).map_err(other)? {
                    StreamMsg::NewArchive { name, tablespace } => {
                        if name != "base.tar" || !tablespace.is_empty() {
                            return Err(other(format!("unexpected archive {name} for tablespace {tablespace}")));
                        }
                        x = Some(Extractor::new(target, owner));
                    }
                    StreamMsg::Data(bytes) => {
                        let ex = x.as_mut().ok_or_else(|| other("archive data before an archive began".into()))?;
                        ex.push(bytes).map_err(|e| io_failure(target, e))?;
                    }
                    StreamMsg::Progress(done) => report(done, total_kb),
                    StreamMsg::Manifest => {
                        return Err(other("the server sent a manifest pgrepl did not ask for".into()))
                    }
                }
            }
            Message::CopyDone => {
                if let Some(ex) = &x {
                    ex.finish().map_err(|e| io_failure(target, e))?;
                }
            }
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    let ex = x.ok_or_else(|| other("the base backup contained no archive".into()))?;
    ex.finish().map_err(|e| io_failure(target, e))?;
    for must in ["global/pg_control", "backup_label", "PG_VERSION"] {
        if !target.join(must).is_file() {
            return Err(other(format!("the base backup is incomplete: {must} is missing")));
        }
    }
    on_progress(Progress { done_kb: ex.written / 1024, total_kb: total_kb.max(ex.written / 1024) });
    // One flush of the whole filesystem instead of an fsync per file: the
    // copy is worthless until every byte of it is on disk.
    let dir = std::fs::File::open(target).map_err(|e| io_failure(target, e))?;
    nix::unistd::syncfs(&dir).map_err(|e| io_failure(target, e.into()))?;
    Ok(())
}

fn sort(e: WireError) -> CloneFailure {
    if e.is_auth() {
        CloneFailure::Auth(e.to_string())
    } else if e.is_transient() {
        CloneFailure::Unreachable(e.to_string())
    } else {
        other(format!("base backup from the primary failed: {e}"))
    }
}

fn other(msg: String) -> CloneFailure {
    CloneFailure::Other(Error::Other(msg))
}

fn io_failure(target: &Path, e: std::io::Error) -> CloneFailure {
    CloneFailure::Other(Error::io(target, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_follow_the_server_major() {
        assert_eq!(
            base_backup_command(17, "pgrepl clone"),
            "BASE_BACKUP (LABEL 'pgrepl clone', PROGRESS, CHECKPOINT 'fast', WAL, WAIT false, MANIFEST 'no')"
        );
        assert_eq!(base_backup_command(11, "it's"), "BASE_BACKUP LABEL 'it''s' PROGRESS FAST WAL NOWAIT");
        assert_eq!(temp_slot_command(16, "s"), "CREATE_REPLICATION_SLOT \"s\" TEMPORARY PHYSICAL (RESERVE_WAL)");
        assert_eq!(temp_slot_command(10, "s"), "CREATE_REPLICATION_SLOT \"s\" TEMPORARY PHYSICAL RESERVE_WAL");
    }

    #[test]
    fn stream_messages_decode() {
        assert_eq!(
            decode_stream_msg(b"nbase.tar\0\0").unwrap(),
            StreamMsg::NewArchive { name: "base.tar".into(), tablespace: String::new() }
        );
        assert_eq!(decode_stream_msg(b"dxyz").unwrap(), StreamMsg::Data(b"xyz"));
        let mut p = vec![b'p'];
        p.extend_from_slice(&4096u64.to_be_bytes());
        assert_eq!(decode_stream_msg(&p).unwrap(), StreamMsg::Progress(4096));
        assert!(decode_stream_msg(b"p12").is_err());
        assert!(decode_stream_msg(b"q").is_err());
        assert!(decode_stream_msg(b"").is_err());
    }
}
