//! The WAL archive: integrity of `wal-push` and a standby that catches up
//! from the archive after the primary recycled the WAL it needed.

use std::process::Command;
use std::time::Duration;

use crate::harness::{text, wait_until, Cluster};

const T: Duration = Duration::from_secs(90);

fn pgrepl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgrepl")).args(args).output().unwrap()
}

#[test]
fn wal_push_is_whole_or_nothing_idempotent_and_refuses_a_different_segment() {
    let c = Cluster::empty();
    let archive = c.path("archive");
    std::fs::create_dir(&archive).unwrap();
    let a = archive.to_str().unwrap();
    const NAME: &str = "000000010000000000000007";

    // Killed mid-copy: the source is a pipe the test feeds, so the copy is
    // provably half done when the kill lands.
    let fifo = c.path("segment.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut push = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .args(["wal-push", "--archive", a])
        .arg(&fifo)
        .arg(NAME)
        .spawn()
        .unwrap();
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::io::Write::write_all(&mut w, &vec![1u8; 1 << 20]).unwrap();
    wait_until("half a segment in a temp file", T, || {
        std::fs::read_dir(&archive)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with('.') && e.metadata().map(|m| m.len()).unwrap_or(0) > 0)
    });
    push.kill().unwrap();
    push.wait().unwrap();
    drop(w);
    assert!(!archive.join(NAME).exists(), "a partial segment is under its final name");

    // A whole segment, twice: the second push is a no-op success.
    let seg = c.path(NAME);
    std::fs::write(&seg, vec![2u8; 16 << 20]).unwrap();
    for _ in 0..2 {
        let o = pgrepl(&["wal-push", "--archive", a, seg.to_str().unwrap(), NAME]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    assert_eq!(std::fs::read(archive.join(NAME)).unwrap(), std::fs::read(&seg).unwrap());
    // Different content under the same name is refused and the archive keeps the original.
    std::fs::write(&seg, vec![3u8; 16 << 20]).unwrap();
    let o = pgrepl(&["wal-push", "--archive", a, seg.to_str().unwrap(), NAME]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("already exists in the archive with different content"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(archive.join(NAME)).unwrap(), vec![2u8; 16 << 20]);

    // wal-fetch: a missing file is a quiet non-zero exit, as restore_command expects.
    let o = pgrepl(&["wal-fetch", "--archive", a, "000000010000000000000099", c.path("x").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).is_empty(), "{}", text(&o.stderr));
}

#[test]
fn standby_stopped_past_wal_keep_size_catches_up_from_the_archive() {
    let c =
        Cluster::with_replication(1, "slots = false\nwal_keep_size = \"16MB\"\n", "\n[archive]\ndir = \"archive\"\n");
    c.up();
    c.ok(&["down", "pg-2"]);
    // More WAL than wal_keep_size, with no slot to hold it: the primary recycles it.
    c.churn_wal("pg-1", 6);
    c.sql("pg-1", "SELECT pg_switch_wal()").unwrap();
    c.sql("pg-1", "CHECKPOINT").unwrap();
    wait_until("segments archived", T, || {
        c.sql("pg-1", "SELECT last_archived_wal IS NOT NULL FROM pg_stat_archiver").as_deref() == Ok("t")
    });
    c.ok(&["up", "pg-2"]);
    wait_until("pg-2 streaming again", T, || c.streaming("pg-2"));
    assert_eq!(c.sql("pg-2", "SELECT count(*) FROM f5").unwrap(), "100000");
    let log = std::fs::read_to_string(c.path("data/pgrepl.log")).unwrap();
    assert!(
        log.lines().any(|l| l.starts_with("[pg-2]") && l.contains("restored log file") && l.contains("from archive")),
        "pg-2 did not use the archive"
    );

    let st = c.status();
    assert!(st["archive"]["archived_count"].as_i64().unwrap_or(0) >= 6, "{st}");
    assert_eq!(st["archive"]["failing"], false);
    assert!(st["archive"]["size_bytes"].as_u64().unwrap_or(0) >= 6 * (16 << 20), "{st}");
    let out = c.ok(&["archive", "cleanup"]);
    assert!(out.contains("archive cleanup: removed"), "{out}");
    assert!(c.streaming("pg-2"));
}
