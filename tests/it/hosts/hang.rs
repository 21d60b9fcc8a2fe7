//! A primary whose postgres hangs while its agent lives on. Found by the
//! drill (`freeze-postgres` across hosts): the agent kept renewing the
//! lease for a postmaster that answered nothing, so writes waited as long
//! as the hang lasted, where Patroni fails over after its TTL.

use super::{Site, StaleAcks, Watched};

/// SIGSTOP the postmaster of host `i`'s node and every backend: its agent
/// and the fence keep running.
fn freeze_postgres(site: &Site, i: usize) -> Vec<i32> {
    let pid_file = site.c.path(&format!("h{i}/pg-{i}/postmaster.pid"));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().lines().next().unwrap().parse().unwrap();
    let pids = crate::faults::process_tree(pid);
    for p in &pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), nix::sys::signal::Signal::SIGSTOP);
    }
    pids
}

#[test]
fn a_primary_whose_postgres_hangs_while_its_agent_lives_is_fenced_and_writes_resume_before_it_thaws() {
    let Some(site) = Site::new(1, "\n[failover]\nprimary_start_timeout = \"3s\"\n") else { return };
    site.up();
    let mut w = Watched::start(&site);
    w.fault();
    let frozen = freeze_postgres(&site, 1);
    let since = std::time::Instant::now();
    // Writes resume while the hung postgres is still stopped: it was
    // killed and restarted in place, or a replica took over.
    let before = w.writer.count();
    site.wait("writes acknowledged again while pg-1's postgres hangs", || w.writer.count() >= before + 20);
    let took = since.elapsed();
    crate::faults::thaw(&frozen);
    w.writer.wait_more(20);
    eprintln!("writes resumed {:.1}s after the hang began", took.as_secs_f64());
    w.finish_with(&site, "primary's postgres hung, its agent alive", StaleAcks::Never, false);
}

/// What `drill --fault kill-agent` and a crash under systemd both come to:
/// the primary's agent dies (SIGKILL), its fence freezes postgres at the
/// lease deadline, a replica takes over; then `pgrepl up` on that host (as
/// systemd's `Restart=on-failure` would run it) finds the frozen former
/// primary and brings it back as a standby, never writable.
#[test]
fn a_killed_primary_agent_is_replaced_and_up_on_its_host_brings_the_node_back_as_a_standby() {
    let Some(site) = Site::new(1, "") else { return };
    site.up();
    let mut w = Watched::start(&site);
    w.fault();
    let agent = nix::unistd::Pid::from_raw(super::agent_pid(&site, 1));
    nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGKILL).unwrap();
    let (new, i) = site.new_primary("a replica takes over from the killed agent's primary");
    let out = site.ok_on(1, &["up", "--detach"]);
    eprintln!("{out}");
    site.wait("pg-1 streams from the new primary", || site.streams_from(i, "pg-1", &new));
    w.finish(&site, "kill the primary's agent, then up on its host");
}
