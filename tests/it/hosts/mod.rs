//! Multi-host HA on etcd, with hosts as network namespaces: three hosts on
//! a bridge, each running its own agent (`ip netns exec … pgrepl up`) with
//! its own data root, and an etcd member on the bridge's own address, so a
//! host's link to etcd can be cut apart from its links to the other hosts.
//! Faults are real: SIGKILL of every process of a host, a blackhole route.
//!
//! Every scenario runs a writer through the libpq multi-host URL and a
//! watcher sampling `pg_is_in_recovery()` on every node every 100 ms, and
//! asserts that no sample shows two writable primaries and that the
//! cluster converges (the old primary streams again) by itself.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::faults::{Watch, Watcher};
use crate::harness::{is_root, text, wait_until_explained, Cluster};
use crate::moves::Writer;
use crate::netns::Lan;
use crate::probe::{self, Probe};

const T: Duration = Duration::from_secs(90);

use crate::netns::PORT;

/// Three hosts, one node each, and the config every host shares (each with
/// its own data root: the hosts share this machine's filesystem).
struct Site {
    lan: Lan,
    c: Cluster,
    /// `[replication] durability`.
    durability: &'static str,
}

impl Site {
    /// Three hosts and an etcd of `members` members, replicating asynchronously.
    fn new(members: u32, extra: &str) -> Option<Site> {
        Site::with_durability(members, "async", extra)
    }

    fn with_durability(members: u32, durability: &'static str, extra: &str) -> Option<Site> {
        if !is_root() {
            eprintln!("skipped: network namespaces need root");
            return None;
        }
        let c = Cluster::empty();
        let mut lan = Lan::new(3, c.dir.path())
            .unwrap_or_else(|e| panic!("could not build the hosts (is iproute2 installed?): {e}"));
        let etcd = lan.start_etcd(members);
        lan.write_pgrepl_configs(c.dir.path(), &etcd, durability, extra);
        Some(Site { lan, c, durability })
    }

    /// `pgrepl ARGS` on host `i`, in its namespace, with its config.
    fn on(&self, i: usize, args: &[&str]) -> Output {
        self.lan
            .exec(i, env!("CARGO_BIN_EXE_pgrepl"))
            .arg("-c")
            .arg(self.c.path(&format!("host{i}.toml")))
            .args(args)
            .current_dir(self.c.dir.path())
            .output()
            .expect("ip netns exec pgrepl")
    }

    fn ok_on(&self, i: usize, args: &[&str]) -> String {
        let o = self.on(i, args);
        assert!(o.status.success(), "host {i}: pgrepl {args:?}:\n{}\n{}", text(&o.stdout), text(&o.stderr));
        text(&o.stdout)
    }

    /// `status --json` as host `i` sees it.
    fn status(&self, i: usize) -> serde_json::Value {
        serde_json::from_str(&self.ok_on(i, &["status", "--json"])).unwrap_or(serde_json::Value::Null)
    }

    fn node<'a>(st: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
        st["nodes"].as_array()?.iter().find(|n| n["name"] == name)
    }

    /// Host `i` sees `name` streaming from `upstream`.
    fn streams_from(&self, i: usize, name: &str, upstream: &str) -> bool {
        let st = self.status(i);
        Site::node(&st, name).is_some_and(|n| {
            n["role"] == "replica" && n["upstream"] == upstream && n["replication"]["state"] == "streaming"
        })
    }

    fn logs(&self) -> String {
        let status = (1..=3).map(|i| format!("status seen by host {i}:\n{}", text(&self.on(i, &["status"]).stdout)));
        let status: Vec<String> = status.collect();
        status.join("\n")
            + &(1..=3)
                .map(|i| {
                    let log = std::fs::read_to_string(self.c.path(&format!("h{i}/pgrepl.log"))).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
                    format!("--- host {i} ---\n{}", tail.join("\n"))
                })
                .collect::<Vec<_>>()
                .join("\n")
    }

    fn wait(&self, what: &str, f: impl FnMut() -> bool) {
        wait_until_explained(what, T, f, || self.logs());
    }

    /// Bring the cluster up host by host, and wait until both replicas stream.
    fn up(&self) {
        let out = self.ok_on(1, &["up", "--detach"]);
        assert!(out.contains("leaving pg-2"), "{out}");
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| self.on(2, &["up", "--detach"]));
            let b = s.spawn(|| self.on(3, &["up", "--detach"]));
            (a.join().unwrap(), b.join().unwrap())
        });
        for (i, o) in [(2, a), (3, b)] {
            assert!(o.status.success(), "host {i}: up:\n{}\n{}", text(&o.stdout), text(&o.stderr));
        }
        self.wait("pg-2 and pg-3 stream from pg-1", || {
            self.streams_from(1, "pg-2", "pg-1") && self.streams_from(1, "pg-3", "pg-1")
        });
        self.sql(1, "CREATE TABLE IF NOT EXISTS w (id bigint PRIMARY KEY)");
        self.sql(1, probe::SETUP);
        self.sql(1, "GRANT ALL ON w, probe TO app");
    }

    /// SQL in the `app` database of host `i`'s node, as the superuser.
    fn sql(&self, i: usize, sql: &str) -> String {
        let node = format!("pg-{i}");
        self.ok_on(i, &["psql", &node, "--", "-X", "-d", "app", "-v", "ON_ERROR_STOP=1", "-tAc", sql])
            .trim()
            .to_string()
    }

    /// `node` has a member key in etcd: its agent published it within the
    /// key's lease.
    fn member_published(&self, node: &str) -> bool {
        self.lan.etcd_key_exists(&format!("/pgrepl/hosts/members/{node}")) == Some(true)
    }

    /// Wait until host 2 sees a primary other than pg-1: its name and host.
    fn new_primary(&self, what: &str) -> (String, usize) {
        let mut new = None;
        self.wait(what, || {
            new = self.primary_seen_by(2).filter(|p| p != "pg-1");
            new.is_some()
        });
        let new = new.unwrap_or_default();
        let i = if new == "pg-2" { 2 } else { 3 };
        (new, i)
    }

    fn addrs(&self) -> Vec<(String, u16)> {
        self.lan.hosts.iter().map(|h| (h.addr.clone(), PORT)).collect()
    }

    /// The node that host `i` sees as a writable primary, if exactly one.
    fn primary_seen_by(&self, i: usize) -> Option<String> {
        let st = self.status(i);
        let w: Vec<String> = st["nodes"]
            .as_array()?
            .iter()
            .filter(|n| n["state"] == "running" && n["role"] == "primary")
            .filter_map(|n| n["name"].as_str().map(str::to_string))
            .collect();
        (w.len() == 1).then(|| w[0].clone())
    }
}

/// Writer, watcher and probe around one fault; the invariants at its end.
struct Watched {
    pub writer: Writer,
    watcher: Watcher,
    probe: Probe,
    fault_at: Option<Instant>,
}

/// How a scenario treats a write the old primary acknowledged after the
/// new one had taken over.
#[derive(PartialEq)]
enum StaleAcks {
    /// None may happen.
    Never,
    /// Counted and printed: asynchronous replication after a whole-host
    /// freeze, where the README says it is not guaranteed.
    Counted,
}

impl Watched {
    fn start(site: &Site) -> Watched {
        let writer = Writer::start_at(&site.addrs(), Some(Duration::from_secs(1)));
        writer.wait_more(20);
        let probe = Probe::start(&site.addrs(), "user=app password=app-secret dbname=app");
        site.wait("the probe's first acknowledged write", || probe.count() > 0);
        Watched { writer, watcher: Watcher::start_at(site.addrs()), probe, fault_at: None }
    }

    fn fault(&mut self) {
        self.fault_at = Some(Instant::now());
    }

    /// Stop them all and check: no sample with two writable primaries, no
    /// write acknowledged by an old primary after a newer one's first, and
    /// in sync-strict no acknowledged write missing on the final primary.
    /// Prints the figures (the time to the first write acknowledged after
    /// the fault, the longest write gap) for the closing note.
    fn finish(self, site: &Site, name: &str) {
        self.finish_with(site, name, StaleAcks::Never, site.durability == "sync-strict")
    }

    /// With `lossless`, no acknowledged write may be missing on the final
    /// primary (sync-strict, or a switchover in any mode).
    fn finish_with(self, site: &Site, name: &str, stale_acks: StaleAcks, lossless: bool) {
        let gap = self.writer.longest_gap();
        let first_after = self.fault_at.and_then(|f| self.writer.first_ack_elsewhere_after(f).map(|(t, s)| (t - f, s)));
        let acked = self.writer.finish();
        let probed = self.probe.finish();
        let Watch { samples, dual, longest_interval, .. } = self.watcher.finish();
        let stale = probe::stale(&probed);
        if std::env::var_os("PGREPL_TEST_LOGS").is_some() {
            eprintln!("{}", site.logs());
        }
        let probed_after =
            self.fault_at.and_then(|f| probe::first_elsewhere_after(&probed, f).map(|a| (a.at - f, a.node)));
        let lost = lossless.then(|| site.lost(&acked, &probed));
        eprintln!(
            "hosts scenario `{name}` ({}): first write acknowledged by another server after the fault {} (probe: {}), longest write gap {:.2}s, acknowledged writes {} (+{} by the probe), lost {}, stale acknowledgements {}, samples {samples} (longest interval {} ms), dual-primary samples {dual}",
            site.durability,
            first_after.map_or("-".into(), |(d, s)| format!("{:.2}s ({s})", d.as_secs_f64())),
            probed_after.map_or("-".into(), |(d, n)| format!("{:.2}s (pg-{})", d.as_secs_f64(), n + 1)),
            gap.as_secs_f64(),
            acked.len(),
            probed.len(),
            lost.map_or("not checked (async failover)".into(), |l| l.to_string()),
            stale.len(),
            longest_interval.as_millis()
        );
        assert_eq!(dual, 0, "{name}: {dual} samples showed two writable primaries");
        if stale_acks == StaleAcks::Never {
            assert!(
                stale.is_empty(),
                "{name}: writes acknowledged on an older timeline after a newer one's: {stale:?}"
            );
        }
        assert_eq!(lost.unwrap_or(0), 0, "{name}: acknowledged writes lost");
    }
}

impl Site {
    /// How many of these acknowledged writes (the writer's ids, the probe's
    /// rows) the primary does not have.
    fn lost(&self, acked: &[i64], probed: &[probe::Ack]) -> usize {
        let primary = (1..=3).find_map(|i| self.primary_seen_by(i)).expect("a primary");
        let i: usize = primary.trim_start_matches("pg-").parse().expect("pg-<i> on host i");
        let ids: std::collections::HashSet<i64> =
            self.sql(i, "SELECT id FROM w").lines().filter_map(|l| l.parse().ok()).collect();
        let rows: std::collections::HashSet<(usize, i64)> = self
            .sql(i, "SELECT node, id FROM probe")
            .lines()
            .filter_map(|l| l.split_once('|'))
            .filter_map(|(n, id)| Some((n.parse().ok()?, id.parse().ok()?)))
            .collect();
        acked.iter().filter(|id| !ids.contains(id)).count()
            + probed.iter().filter(|a| !rows.contains(&(a.node, a.id))).count()
    }
}

#[test]
fn the_primary_host_dies_a_replica_on_another_host_takes_over_and_the_old_one_rejoins() {
    // sync-strict: no acknowledged write may be lost (checked at the end).
    let Some(site) = Site::with_durability(1, "sync-strict", "") else { return };
    site.up();
    assert_eq!(site.primary_seen_by(2).as_deref(), Some("pg-1"));
    let mut w = Watched::start(&site);

    w.fault();
    site.lan.kill_host(1);
    let (new, i) = site.new_primary("a replica on another host becomes the primary");
    let other = if new == "pg-2" { "pg-3" } else { "pg-2" };
    site.wait("the other replica follows the new primary", || site.streams_from(i, other, &new));
    // The new leader records the move after its post-promotion checkpoint,
    // which can end after the other replica already streams from it.
    site.wait("the failover is in the history", || site.ok_on(i, &["history"]).contains("failover"));
    let history = site.ok_on(i, &["history"]);
    let row = history.lines().find(|l| l.contains("failover")).unwrap_or_default().to_string();
    assert!(row.split_whitespace().rev().take(2).eq([new.as_str(), "pg-1"]), "{history}");

    // The host comes back: its agent finds pg-1 fenced (the new leader
    // recorded it) and brings it back as a standby of the new primary.
    let back = site.ok_on(1, &["up", "--detach"]);
    assert!(!back.contains("pg-1: primary"), "{back}");
    site.wait("pg-1 streams from the new primary", || site.streams_from(i, "pg-1", &new));
    // No secret in etcd: every key the agents wrote, read back.
    let dump = site.lan.etcd_dump("/pgrepl/").expect("etcd answers");
    for key in ["/pgrepl/hosts/leader", "/pgrepl/hosts/state", "/pgrepl/hosts/config", "/pgrepl/hosts/members/pg-2"] {
        assert!(dump.contains(&format!("{key} = ")), "{key} missing from:\n{dump}");
    }
    for secret in [crate::harness::PASSWORD, "app-secret"] {
        assert!(!dump.contains(secret), "a password is in etcd:\n{dump}");
    }
    // Rewound over TCP from the other host, not copied afresh.
    let log = std::fs::read_to_string(site.c.path("h1/pgrepl.log")).unwrap_or_default();
    assert!(log.contains(&format!("pg_rewind pg-1 from {new}")), "{log}");
    assert!(!log.contains("cloning pg-1"), "{log}");
    w.finish(&site, "kill the primary's host");
}

#[test]
fn a_primary_cut_off_from_etcd_is_frozen_a_replica_takes_over_and_it_rejoins_after_the_heal() {
    let Some(site) = Site::new(1, "") else { return };
    site.up();
    let mut w = Watched::start(&site);

    w.fault();
    site.lan.cut_from_etcd(1, true);
    let (new, i) = site.new_primary("a replica becomes the primary");
    let log = std::fs::read_to_string(site.c.path("h1/pgrepl.log")).unwrap_or_default();
    assert!(log.contains("pg-1: froze postgres"), "the old primary was frozen at its deadline:\n{log}");

    if std::env::var_os("PGREPL_TEST_LOGS").is_some() {
        eprintln!("{}", site.logs());
    }
    site.lan.cut_from_etcd(1, false);
    site.wait("pg-1 streams from the new primary after the heal", || site.streams_from(i, "pg-1", &new));
    w.finish(&site, "cut the primary from etcd");
}

/// The agent's pid on host `i`: the first line of its lock file.
fn agent_pid(site: &Site, i: usize) -> i32 {
    let text = std::fs::read_to_string(site.c.path(&format!("h{i}/pgrepl.pid"))).expect("lock file");
    text.lines().next().and_then(|l| l.trim().parse().ok()).expect("pid")
}

/// The timestamp of the first line of host `i`'s log containing `what`.
fn logged_at(site: &Site, i: usize, what: &str) -> Option<String> {
    let log = std::fs::read_to_string(site.c.path(&format!("h{i}/pgrepl.log"))).ok()?;
    let line = log.lines().find(|l| l.contains(what))?;
    line.split_whitespace().nth(1).map(str::to_string)
}

#[test]
fn a_frozen_agent_cannot_keep_its_primary_writable_its_fence_freezes_it_before_a_replica_promotes() {
    let Some(site) = Site::new(1, "") else { return };
    site.up();
    let mut w = Watched::start(&site);
    let agent = nix::unistd::Pid::from_raw(agent_pid(&site, 1));

    w.fault();
    nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let (new, i) = site.new_primary("a replica becomes the primary while pg-1's agent is frozen");
    let froze = logged_at(&site, 1, "fence: pg-1: froze postgres").expect("the fence froze pg-1");
    site.wait("the new primary's promotion is logged", || {
        logged_at(&site, i, &format!("ha: {new} promoted")).is_some()
    });
    let promoted = logged_at(&site, i, &format!("ha: {new} promoted")).unwrap();
    assert!(froze < promoted, "the fence froze pg-1 at {froze}, after {new} was promoted at {promoted}");

    // The agent wakes: it finds another leader, stops pg-1 and brings it back as a standby.
    nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGCONT).unwrap();
    site.wait("pg-1 streams from the new primary", || site.streams_from(i, "pg-1", &new));
    w.finish(&site, "freeze the primary's agent");
}

impl Site {
    /// The moves recorded in the cluster's history, as host `i` reads it.
    fn moves(&self, i: usize) -> usize {
        let h: serde_json::Value = serde_json::from_str(&self.ok_on(i, &["history", "--json"])).unwrap_or_default();
        h.as_array().map_or(0, Vec::len)
    }

    /// pg-1 is still the primary, on its first timeline, with no move recorded.
    fn same_primary(&self) {
        assert_eq!(self.primary_seen_by(2).as_deref(), Some("pg-1"), "{}", self.logs());
        let tl = self.sql(1, "SELECT timeline_id FROM pg_control_checkpoint()");
        assert_eq!(tl, "1", "pg-1 changed timeline");
        assert_eq!(self.moves(2), 0, "a move was recorded:\n{}", self.ok_on(2, &["history"]));
    }
}

#[test]
fn a_host_frozen_for_a_moment_keeps_its_primary() {
    let Some(site) = Site::new(1, "") else { return };
    site.up();
    let mut w = Watched::start(&site);
    w.fault();
    site.lan.freeze_host(1, true);
    // The fault is a 1.5 s pause of the whole host (a VM stall), shorter
    // than the lease's margin: the agent renews in time when it wakes.
    std::thread::sleep(Duration::from_millis(1500));
    site.lan.freeze_host(1, false);
    w.writer.wait_more(50);
    site.same_primary();
    w.finish(&site, "freeze the primary's host for 1.5 s");
}

/// The primary's whole host (agent, fence and PostgreSQL at once, by the
/// cgroup freezer) stops for 10 s, as a VM paused by its hypervisor.
fn a_frozen_primary_host(durability: &'static str, stale_acks: StaleAcks) {
    let Some(site) = Site::with_durability(1, durability, "") else { return };
    site.up();
    let mut w = Watched::start(&site);
    w.fault();
    let frozen_at = Instant::now();
    site.lan.freeze_host(1, true);
    let (new, i) = site.new_primary("a replica takes over while pg-1's host is frozen");
    // The rest of the fault's 10 s (a duration, not a synchronisation).
    std::thread::sleep(Duration::from_secs(10).saturating_sub(frozen_at.elapsed()));
    site.lan.freeze_host(1, false);
    // Its agent wakes past its deadline, finds another leader, stops pg-1
    // and brings it back as a standby.
    site.wait("pg-1 streams from the new primary after the thaw", || site.streams_from(i, "pg-1", &new));
    let lossless = durability == "sync-strict";
    w.finish_with(&site, &format!("freeze the primary's host for 10 s ({durability})"), stale_acks, lossless);
}

#[test]
fn a_primary_host_frozen_for_10s_is_replaced_and_in_sync_strict_acknowledges_nothing_after_the_thaw() {
    a_frozen_primary_host("sync-strict", StaleAcks::Never);
}

#[test]
fn a_primary_host_frozen_for_10s_is_replaced_in_async_and_late_acknowledgements_are_counted() {
    a_frozen_primary_host("async", StaleAcks::Counted);
}

#[test]
fn a_standby_whose_agent_is_frozen_causes_no_failover_and_its_member_key_expires() {
    let Some(site) = Site::new(1, "") else { return };
    site.up();
    let mut w = Watched::start(&site);
    let agent = nix::unistd::Pid::from_raw(agent_pid(&site, 2));
    w.fault();
    nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGSTOP).unwrap();
    site.wait("pg-2's member key expires", || !site.member_published("pg-2"));
    // Only pg-2's agent could promote it: a move to it is refused up front.
    let o = site.on(3, &["switchover", "--to", "pg-2", "--yes"]);
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("pg-2's agent publishes nothing to etcd"), "{}", text(&o.stderr));
    site.wait("status on another host names pg-2's silent agent", || {
        site.status(1)["silent_agents"].as_array().is_some_and(|a| a.iter().any(|n| n == "pg-2"))
    });
    let text_status = text(&site.on(1, &["status"]).stdout);
    assert!(text_status.contains("pg-2: its agent publishes nothing to etcd"), "{text_status}");
    // Its postgres still streams; nothing moved.
    w.writer.wait_more(50);
    site.same_primary();
    nix::sys::signal::kill(agent, nix::sys::signal::Signal::SIGCONT).unwrap();
    site.wait("pg-2 publishes again", || site.member_published("pg-2"));
    w.finish(&site, "freeze a standby's agent");
}

#[test]
fn killing_the_etcd_leader_moves_nothing() {
    let Some(mut site) = Site::new(3, "") else { return };
    site.up();
    let mut w = Watched::start(&site);
    let mut leader = None;
    site.wait("etcd has a leader", || {
        leader = site.lan.etcd_leader();
        leader.is_some()
    });
    let leader = leader.unwrap();
    w.fault();
    site.lan.kill_etcd(leader);
    site.wait("another etcd member leads", || site.lan.etcd_leader().is_some_and(|l| l != leader));
    w.writer.wait_more(50);
    site.same_primary();
    w.finish(&site, "kill -9 the etcd leader");
}

#[test]
fn losing_etcd_quorum_freezes_the_primary_and_it_resumes_unchanged_when_quorum_returns() {
    let Some(mut site) = Site::new(3, "") else { return };
    site.up();
    let mut w = Watched::start(&site);
    w.fault();
    site.lan.kill_etcd(2);
    site.lan.kill_etcd(3);
    site.wait("pg-1 is frozen at its deadline", || logged_at(&site, 1, "froze postgres").is_some());
    let frozen_at = std::time::Instant::now();
    site.lan.restart_etcd(2);
    site.lan.restart_etcd(3);
    site.wait("pg-1 is thawed once etcd answers again", || logged_at(&site, 1, "thawed postgres").is_some());
    w.writer.wait_more(50);
    assert!(w.writer.first_ack_elsewhere_after(frozen_at).is_none(), "another node took writes");
    site.same_primary();
    w.finish(&site, "kill 2 of 3 etcd members");
}

#[test]
fn a_host_whose_cluster_wide_settings_differ_refuses_to_start_and_names_the_difference() {
    let Some(site) = Site::new(1, "") else { return };
    assert!(site.ok_on(1, &["up", "--detach"]).contains("leaving pg-2"));
    let path = site.c.path("host2.toml");
    let body = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, body.replace("ttl = \"3s\"", "ttl = \"5s\"")).unwrap();
    let o = site.on(2, &["up", "--detach"]);
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("etcd.ttl: recorded \"3s\", this host's config \"5s\""), "{err}");
    assert!(!site.c.path("h2/pg-2").exists(), "nothing was started on host 2");
}

/// Cut the primary's host from the other hosts (etcd still reachable):
/// its lease holds, so nothing moves; what its commits do depends on the
/// durability mode, and status says it.
fn cut_from_standbys(durability: &'static str, state: &str, message: &str) {
    cut_from_standbys_by(durability, state, message, false)
}

/// `silent`: frames are lost (no error reaches either side) rather than
/// refused by a blackhole route.
fn cut_from_standbys_by(durability: &'static str, state: &str, message: &str, silent: bool) {
    let Some(site) = Site::with_durability(1, durability, "") else { return };
    let cut_off = |on: bool| if silent { site.lan.drop_between_hosts(1, on) } else { site.lan.cut_from_hosts(1, on) };
    site.up();
    let mut w = Watched::start(&site);
    w.fault();
    let cut = std::time::Instant::now();
    cut_off(true);
    site.wait("pg-2 notices it lost its primary", || {
        let st = site.status(2);
        Site::node(&st, "pg-2").is_some_and(|n| n["wal_receiver"] != "streaming")
    });
    eprintln!("pg-2 noticed {:.1}s after the cut", cut.elapsed().as_secs_f64());
    let mut st = serde_json::Value::Null;
    site.wait(&format!("the primary's host says durability is {state}"), || {
        st = site.status(1);
        st["durability"]["state"] == state
    });
    eprintln!("durability {state} {:.1}s after the cut", cut.elapsed().as_secs_f64());
    let said = st["durability"]["message"].as_str().unwrap_or_default().to_string();
    assert!(said.starts_with(message), "{said}");
    // A failover would have happened within one lease and one election
    // tick; give it three leases. The leader still renews, so none may.
    site.wait("three leases since the cut", || cut.elapsed() >= Duration::from_secs(9));
    assert_eq!(site.moves(2), 0, "a move was recorded:\n{}", site.ok_on(2, &["history"]));
    cut_off(false);
    let healed = std::time::Instant::now();
    site.wait("pg-2 and pg-3 stream from pg-1 again", || {
        site.streams_from(1, "pg-2", "pg-1") && site.streams_from(1, "pg-3", "pg-1")
    });
    let how = if silent { "silent drop" } else { "blackhole" };
    eprintln!(
        "{durability}, {how}: both standbys streamed again {:.1}s after the heal",
        healed.elapsed().as_secs_f64()
    );
    w.writer.wait_more(50);
    site.same_primary();
    w.finish(&site, &format!("cut the primary from its standbys only ({durability})"));
}

#[test]
fn a_primary_cut_from_its_standbys_keeps_its_lease_degrades_loudly_in_sync_and_they_stream_again_after_the_heal() {
    cut_from_standbys("sync", "degraded", "DEGRADED to asynchronous: 0 of 1");
}

#[test]
fn a_primary_cut_from_its_standbys_keeps_its_lease_and_in_sync_strict_blocks_commits_and_says_why() {
    cut_from_standbys("sync-strict", "blocked", "commits blocked: 0 of 1 synchronous standbys streaming");
}

#[test]
fn a_primary_silently_cut_from_its_standbys_blocks_commits_in_sync_strict_and_they_stream_soon_after_the_heal() {
    cut_from_standbys_by("sync-strict", "blocked", "commits blocked: 0 of 1 synchronous standbys streaming", true);
}

#[test]
fn a_flapping_link_between_the_primary_and_etcd_never_opens_two_primaries_and_settles() {
    let Some(site) = Site::new(1, "") else { return };
    site.up();
    let mut w = Watched::start(&site);
    w.fault();
    // The fault is the schedule itself: 2.5 s cut, 2.5 s healed, for 60 s.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        site.lan.cut_from_etcd(1, true);
        std::thread::sleep(Duration::from_millis(2500));
        site.lan.cut_from_etcd(1, false);
        std::thread::sleep(Duration::from_millis(2500));
    }
    let healed = std::time::Instant::now();
    site.wait("one primary and two streaming standbys", || {
        site.primary_seen_by(2).is_some_and(|p| {
            let i: usize = p.trim_start_matches("pg-").parse().unwrap_or(1);
            ["pg-1", "pg-2", "pg-3"].iter().filter(|n| **n != p).all(|n| site.streams_from(i, n, &p))
        })
    });
    let settled = healed.elapsed();
    let moves = site.moves(2);
    let needs: Vec<serde_json::Value> = site.status(2)["needs_reclone"].as_array().cloned().unwrap_or_default();
    eprintln!("flapping: {moves} failovers, settled {:.1}s after the last heal", settled.as_secs_f64());
    assert!(moves <= 2, "{moves} failovers:\n{}", site.ok_on(2, &["history"]));
    assert!(needs.is_empty(), "needs-reclone after flapping: {needs:?}");
    w.finish(&site, "flap the primary's link to etcd");
}

#[test]
fn pause_from_any_host_stops_every_automatic_failover_until_resume() {
    let Some(site) = Site::new(1, "") else { return };
    site.up();
    site.ok_on(2, &["pause", "--reason", "maintenance"]);
    let killed = std::time::Instant::now();
    site.lan.kill_host(1);
    // Without the pause a replica would lead within one lease and a tick;
    // give it three leases.
    site.wait("three leases since the kill", || killed.elapsed() >= Duration::from_secs(9));
    assert_eq!(site.moves(2), 0, "a failover while paused:\n{}", site.ok_on(2, &["history"]));
    let ha = site.status(2)["ha"].as_str().unwrap_or_default().to_string();
    assert!(ha.contains("paused"), "{ha}");
    site.ok_on(3, &["resume"]);
    let (new, _) = site.new_primary("a replica takes over once resumed");
    assert_ne!(new, "pg-1");
}

#[test]
fn a_switchover_asked_on_a_replicas_host_moves_the_primary_there_and_back_without_losing_a_write() {
    let Some(site) = Site::new(1, "\n[api]\ntoken_file = \"api.token\"\n") else { return };
    let token = "hosts-api-token-0123456789abcdef01234567";
    site.c.write("api.token", &format!("{token}\n"));
    std::fs::set_permissions(site.c.path("api.token"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    site.c.write("api.header", &format!("Authorization: Bearer {token}\n"));
    site.up();
    // A switchover under way (as another host's command would leave it;
    // from pg-2, so no agent acts on it): a second one is refused, naming
    // it, and changes nothing. The request key is the cluster-wide lock.
    let key = "/pgrepl/hosts/requests/move";
    let planted = r#"{"kind":"switchover","from":"pg-2","to":"pg-3","max_lag":0,"timeout_secs":30,"progress":"requested","steps":[],"lsn":null,"outcome":null}"#;
    assert!(site.lan.etcd_put_leased(key, planted, 30), "etcd took the request");
    let o = site.on(3, &["switchover", "--to", "pg-3", "--yes"]);
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("a switchover from pg-2 to pg-3 is under way"), "{}", text(&o.stderr));
    assert!(site.lan.etcd_delete(key));
    assert_eq!(site.primary_seen_by(3).as_deref(), Some("pg-1"));

    let mut w = Watched::start(&site);
    w.fault();
    // Asked on pg-2's own host: the agents on pg-1's and pg-2's hosts do it.
    let out = site.ok_on(2, &["switchover", "--to", "pg-2", "--yes"]);
    assert!(out.contains("switchover complete: pg-2 is the primary"), "{out}");
    assert!(out.contains("hands the lead to pg-2"), "{out}");
    site.wait("pg-1 and pg-3 stream from pg-2", || {
        site.streams_from(2, "pg-1", "pg-2") && site.streams_from(2, "pg-3", "pg-2")
    });
    w.writer.wait_more(50);
    // And back, asked through the HTTP API of the third host's agent.
    let header = format!("@{}", site.c.path("api.header").display());
    let o = site
        .lan
        .exec(3, "curl")
        .args(["-s", "-X", "POST", "-H", &header, "-d", r#"{"to": "pg-1"}"#])
        .arg("http://127.0.0.1:8008/switchover")
        .output()
        .expect("curl");
    let back: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(back["ok"], true, "{back}\n{}", site.logs());
    let said = back["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|l| l.as_str()).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    assert!(said.contains("switchover complete: pg-1 is the primary"), "{said}");
    site.wait("pg-2 and pg-3 stream from pg-1", || {
        site.streams_from(1, "pg-2", "pg-1") && site.streams_from(1, "pg-3", "pg-1")
    });
    w.writer.wait_more(50);
    let h: serde_json::Value = serde_json::from_str(&site.ok_on(1, &["history", "--json"])).unwrap_or_default();
    let kinds: Vec<&str> = h.as_array().into_iter().flatten().filter_map(|m| m["kind"].as_str()).collect();
    assert_eq!(kinds, ["switchover", "switchover"], "{h}");
    // The dashboard of the third host's agent shows the whole cluster, and
    // both moves from the record in etcd (its feed's first frame).
    site.wait("the third host's dashboard shows pg-1 primary and both moves", || {
        let o = site.lan.exec(3, "curl").args(["-s", "--max-time", "2", "http://127.0.0.1:8008/ui/events"]).output();
        let out = o.map(|o| text(&o.stdout)).unwrap_or_default();
        let Some(v) = out
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        else {
            return false;
        };
        let roles: Vec<String> = v["snapshot"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                format!(
                    "{} {} {}",
                    n["name"].as_str().unwrap_or(""),
                    n["role"].as_str().unwrap_or("-"),
                    n["state"].as_str().unwrap_or("")
                )
            })
            .collect();
        let moves = v["events"].as_array().into_iter().flatten().filter(|e| e["kind"] == "switchover").count();
        roles == ["pg-1 primary running", "pg-2 replica running", "pg-3 replica running"] && moves == 2
    });
    // A target that is not a replica: refused before anything changes.
    let o = site.on(2, &["switchover", "--to", "pg-1", "--yes"]);
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("pg-1 is already the primary"), "{}", text(&o.stderr));
    // What still acts through a host's own sockets says so, and changes nothing.
    for (args, says) in [
        (&["rejoin", "pg-1"][..], "pg-1 is the primary: rejoin is for a standby"),
        (&["failover", "--to", "pg-3", "--yes"][..], "pg-1 holds the leader lease and answers as a writable primary"),
    ] {
        let o = site.on(2, args);
        assert_eq!(o.status.code(), Some(11), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(says), "{args:?}: {}", text(&o.stderr));
    }
    assert_eq!(site.primary_seen_by(3).as_deref(), Some("pg-1"));
    w.finish_with(&site, "switchover there and back, asked on other hosts", StaleAcks::Never, true);
}

#[test]
fn failovers_asked_on_other_hosts_stop_the_leader_or_wait_out_a_dead_ones_lease_and_the_target_takes_over() {
    // Manual failover mode: only a person's request moves the primary.
    let Some(site) = Site::new(1, "\n[failover]\nmode = \"manual\"\n") else { return };
    site.up();
    let mut w = Watched::start(&site);
    w.fault();
    let out = site.ok_on(2, &["failover", "--to", "pg-3", "--stop-primary", "--yes"]);
    assert!(out.contains("pg-1 is fenced and stopped, and gives up the lead to pg-3"), "{out}");
    assert!(out.contains("failover complete: pg-3 is the primary"), "{out}");
    site.wait("pg-1 and pg-2 stream from pg-3", || {
        site.streams_from(3, "pg-1", "pg-3") && site.streams_from(3, "pg-2", "pg-3")
    });
    let history = site.ok_on(1, &["history"]);
    let row = history.lines().find(|l| l.contains("failover")).unwrap_or_default().to_string();
    assert!(row.split_whitespace().rev().take(2).eq(["pg-3", "pg-1"]), "{history}");
    w.writer.wait_more(50);

    // The new primary's host dies. Manual mode: nothing moves by itself;
    // asked on pg-1's host, the failover waits out pg-3's lease, counting
    // it down, then pg-2 takes over.
    site.lan.kill_host(3);
    let out = site.ok_on(1, &["failover", "--to", "pg-2", "--yes"]);
    assert!(out.contains("pg-3 does not answer; its lead goes to pg-2 once its lease runs out"), "{out}");
    assert!(out.contains("s left"), "{out}");
    assert!(out.contains("failover complete: pg-2 is the primary"), "{out}");
    site.wait("pg-1 streams from pg-2", || site.streams_from(2, "pg-1", "pg-2"));
    w.writer.wait_more(50);
    w.finish(&site, "failover asked on other hosts, with --stop-primary, then with the primary's host dead");
}

#[test]
fn rejoin_reclone_and_restart_asked_on_another_host_are_carried_out_by_the_nodes_own_agent() {
    // Without automatic rejoin, a failed primary waits for a person.
    let Some(site) = Site::new(1, "\n[failover]\nauto_rejoin = false\n") else { return };
    site.up();
    let mut w = Watched::start(&site);
    w.fault();
    site.lan.kill_host(1);
    let (new, i) = site.new_primary("a replica takes over");
    let (third, other) = if i == 2 { (3, "pg-3") } else { (2, "pg-2") };
    let back = site.ok_on(1, &["up", "--detach"]);
    assert!(back.contains("stays stopped until it is rewound"), "{back}");
    site.wait("pg-1's agent publishes", || site.member_published("pg-1"));

    // Asked on a third host; pg-1's own agent rewinds and restarts it.
    let out = site.ok_on(third, &["rejoin", "pg-1"]);
    assert!(out.contains("pg-1's agent:") && out.contains("rejoin pg-1: done"), "{out}");
    site.wait("pg-1 streams from the new primary", || site.streams_from(i, "pg-1", &new));
    // Asked on pg-1's host, for the other replica.
    let out = site.ok_on(1, &["reclone", other, "--discard", "--yes"]);
    assert!(out.contains(&format!("reclone --discard {other}: done")), "{out}");
    site.wait("the re-cloned replica streams", || site.streams_from(i, other, &new));
    // And restarted, asked on pg-1's host (by its own agent), then on its
    // own host: back and streaming either way.
    let out = site.ok_on(1, &["restart", other]);
    assert!(out.contains(&format!("{other}'s agent: {other}: back and streaming")), "{out}");
    let out = site.ok_on(third, &["restart", other]);
    assert!(out.contains(&format!("{other}: back and streaming")), "{out}");
    // The primary is not a standby: its agent refuses, nothing changes.
    let o = site.on(third, &["rejoin", &new]);
    assert_eq!(o.status.code(), Some(11), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("is the primary: rejoin is for a standby"), "{}", text(&o.stderr));
    // But it restarts in place, asked on the third host: its agent keeps
    // the lead through it (no failover), and writes resume on it.
    let out = site.ok_on(third, &["restart", &new]);
    assert!(out.contains(&format!("{new}'s agent: {new}: back, accepting writes again")), "{out}");
    // `status` elsewhere may show the restart's last second (a member key
    // is published once a second): wait for it, then check nothing moved.
    site.wait("the third host sees the same primary again", || site.primary_seen_by(third).as_deref() == Some(&new));
    assert_eq!(site.moves(third), 1, "a restart counted as a move:\n{}", site.ok_on(third, &["history"]));
    w.writer.wait_more(50);
    // Reload from the third host: every agent reloads its own node, the primary first.
    let out = site.ok_on(third, &["reload"]);
    let (at_primary, at_pg1) = (out.find(&format!("{new}: reloaded")), out.find("pg-1: reloaded"));
    assert!(at_primary.is_some() && at_pg1.is_some() && out.contains(&format!("{other}: reloaded")), "{out}");
    assert!(at_primary < at_pg1, "the primary reloads first:\n{out}");
    w.writer.wait_more(50);
    w.finish(&site, "rejoin, reclone, restart and reload asked on other hosts");
}

mod drill;
mod hang;
