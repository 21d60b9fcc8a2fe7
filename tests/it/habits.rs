//! The habits people bring from Patroni and friends: what they type and
//! what they expect back.

use std::time::Duration;

use crate::harness::{text, wait_until, Cluster};

const T: Duration = Duration::from_secs(60);

/// `rejoin` on a healthy, streaming replica stopped and restarted it. It has
/// nothing to do: it says so, exits 0 and touches nothing.
#[test]
fn rejoin_of_a_healthy_standby_does_nothing_and_says_so() {
    let c = Cluster::new(1);
    c.up();
    wait_until("pg-2 streaming", T, || c.streaming("pg-2"));
    let pid = c.postmaster_pid("pg-2").unwrap();
    let out = c.ok(&["rejoin", "pg-2"]);
    assert!(out.contains("pg-2 already streams from the primary pg-1; nothing to do"), "{out}");
    assert_eq!(c.postmaster_pid("pg-2"), Some(pid), "the standby was restarted");
}

/// `check` paged right after `pgrepl restart pg-2` reported success
/// (CRITICAL "running but not streaming", OK 2 s later). During the settling
/// time after a restart pgrepl made, it is at most a WARNING that says so.
#[test]
fn check_right_after_a_restart_pgrepl_made_is_not_critical() {
    let c = Cluster::new(2);
    c.up();
    wait_until("both streaming", T, || c.streaming("pg-2") && c.streaming("pg-3"));
    c.ok(&["restart", "pg-2"]);
    let o = c.pgrepl(&["check"]);
    let out = text(&o.stdout);
    assert_ne!(o.status.code(), Some(2), "{out}");
    if o.status.code() == Some(1) {
        assert!(out.contains("settling after restart of pg-2"), "{out}");
    }
    assert_eq!(c.status()["settling"], "restart of pg-2");
    assert!(!out.contains("max_lag=Us"), "{out}");
}
