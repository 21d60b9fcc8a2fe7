//! The HA loop of an agent across hosts (`[etcd]`): one [`Member`] per node
//! this host runs, each deciding only for its own node against the leader
//! key in etcd, and acting only on it, through its local socket (Patroni's
//! model). The one-machine supervisor runs [`super::task`] instead.
//!
//! The loop ticks every sixth of the TTL (0.5 s for 3 s) and on every
//! monitor snapshot. A leader's cycle is cut off at its deadline (see
//! [`Member::deadline`]): whatever etcd is doing, its postgres is frozen by
//! then, and thawed only once the lease is confirmed again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::member::{Member, MemberFacts, Step};
use crate::agent::fence::Fence;
use crate::agent::supervise::{NodeState, Supervisor};
use crate::agent::Stop;
use crate::config::{Node, Role};
use crate::domain::election::Candidate;
use crate::domain::sentence::gist;
use crate::observe::snapshot::{Latest, Snapshot};
use crate::observe::status::NodeStatus;
use crate::ops::control::Control;
use crate::output::Output;
use crate::pg::process::StopMode;
use crate::store::ctx::Ctx;
use crate::store::dcs::{Clock, Dcs, SystemClock};
use crate::store::etcd::{EtcdDcs, Kind, Move, Progress};
use crate::store::state::{MoveKind, State};
use crate::store::view::ClusterView;

/// What the loop keeps per node.
struct Local {
    member: Member,
    last_reason: String,
    /// The postmaster's pid while we hold it (and its processes) frozen.
    frozen: Option<i32>,
    /// It was a leader that lost its lease: it must be rewound (or
    /// re-cloned) before it follows anyone, even if the record says nothing.
    fenced: bool,
    /// Slots were made for the others since it became the leader.
    slots_made: bool,
    next_rejoin: Instant,
    rejoin_failures: u32,
    /// When it last repointed its standby: a snapshot older than that
    /// still shows the old upstream.
    repointed_at: f64,
    /// The postmaster the fence watches for this node.
    held: Option<i32>,
    /// While its postgres is stopped for a switchover it leads: until when
    /// it waits for the target.
    handing: Option<Instant>,
    /// Since when the monitor's probes of its running postgres go unanswered.
    unanswered_since: Option<Instant>,
}

/// Run one loop per node of this host until a stop is requested. Each
/// node has its own loop (a re-clone of one never delays another's lease
/// renewal) and its own lease handle.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    sup: Supervisor,
    latest: Latest,
    out: Output,
    fence: Option<Arc<Fence>>,
    stop: Stop,
) {
    let (Some(gw), Some(e)) = (ctx.etcd(), &ctx.cfg.etcd) else { return };
    let g = gw.clone();
    if let Ok(Ok(v)) = tokio::task::spawn_blocking(move || g.version_blocking()).await {
        if let Some(caveat) = crate::store::etcd::version_caveat(&v) {
            out.info(format!("warning: {caveat}"));
        }
    }
    let mut loops = tokio::task::JoinSet::new();
    for name in sup.nodes() {
        let dcs: Arc<dyn Dcs> = Arc::new(EtcdDcs::on(gw.clone(), &e.prefix, &ctx.cfg.cluster_name));
        let env = Env { ctx: ctx.clone(), sup: sup.clone(), dcs, out: out.clone(), fence: fence.clone() };
        loops.spawn(node_loop(env, latest.clone(), stop.clone(), name));
    }
    while loops.join_next().await.is_some() {}
}

/// What one node's loop works with.
struct Env {
    ctx: Arc<Ctx>,
    sup: Supervisor,
    dcs: Arc<dyn Dcs>,
    out: Output,
    /// The host's fence: told each leader deadline, so it freezes the
    /// leader even if this process cannot.
    fence: Option<Arc<Fence>>,
}

impl Env {
    /// Tell the fence the leader `pid` may run for `left`, releasing the
    /// pid it watched before if postgres restarted meanwhile.
    fn hold(&self, local: &mut Local, name: &str, pid: i32, left: Duration) {
        let Some(f) = &self.fence else { return };
        if let Some(old) = local.held.filter(|p| *p != pid) {
            f.release(old);
        }
        f.hold(name, pid, left);
        local.held = Some(pid);
    }

    fn release(&self, local: &mut Local) {
        if let (Some(f), Some(pid)) = (&self.fence, local.held.take()) {
            f.release(pid);
        }
    }
}

async fn node_loop(env: Env, mut latest: Latest, mut stop: Stop, name: String) {
    let (ctx, sup, out) = (&env.ctx, &env.sup, &env.out);
    let ttl = ctx.cfg.etcd.as_ref().map_or(Duration::from_secs(3), |e| e.ttl);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let Ok(node) = ctx.cfg.node(&name).cloned() else { return };
    let mut local = Local::new(&name, ttl, clock.clone());
    let tick = ttl / 6;
    loop {
        // Wake at the next tick, a new snapshot, or the deadline.
        let now = clock.now();
        let wake = match local.member.deadline() {
            Some(d) if local.frozen.is_none() && d > now => (d - now).min(tick),
            _ => tick,
        };
        tokio::select! {
            _ = tokio::time::sleep(wake) => {}
            r = latest.changed() => if r.is_err() { break },
            _ = stop.requested() => break,
        }
        let snap = latest.borrow_and_update().clone();
        local.count_unanswered(snap.as_deref(), &name);
        let (step, why, record, request) = env.decide(&node, &mut local, snap.as_deref(), ttl, clock.as_ref()).await;
        say(ctx, &mut local, &why, out);
        let leads = step == Step::Lead;
        let lease = LeaseChange::of(&step);
        act(ctx, sup, &node, &mut local, step, snap.as_deref(), record.as_ref(), out).await;
        env.tell_fence(&name, &mut local, lease, clock.as_ref());
        // A move this node leads (unreadable requests change nothing).
        if let Some(request) = request {
            env.on_requests(&node, &mut local, request.as_ref(), leads, snap.as_deref()).await;
        }
    }
    // A frozen primary has no confirmed lease: it is never thawed behind
    // our back, and a frozen process would not heed a shutdown. Kill it.
    if local.frozen.take().is_some() {
        out.info(format!(
            "ha: {name}: killing its frozen postgres as the agent stops (its lease was never confirmed again)"
        ));
        sup.stop(&name, StopMode::Kill).await;
    }
    // A clean stop: the supervisor stops the nodes next, and a fence that
    // froze one mid-shutdown would leave it hanging.
    env.release(&mut local);
}

impl Local {
    fn new(name: &str, ttl: Duration, clock: Arc<dyn Clock>) -> Local {
        Local {
            member: Member::new(name, ttl, clock),
            last_reason: String::new(),
            frozen: None,
            fenced: false,
            slots_made: false,
            next_rejoin: Instant::now(),
            rejoin_failures: 0,
            repointed_at: 0.0,
            held: None,
            handing: None,
            unanswered_since: None,
        }
    }

    /// How long its postgres has answered no probe: a hung primary must
    /// not keep the lead for as long as it hangs.
    fn count_unanswered(&mut self, snap: Option<&Snapshot>, name: &str) {
        let seen = snap.and_then(|s| s.status.nodes.iter().find(|n| n.name == name)).map(|n| n.state);
        match seen {
            // Frozen by this loop at its lease deadline: not a hang. Counting
            // starts afresh after the thaw.
            _ if self.frozen.is_some() => self.unanswered_since = None,
            Some(crate::observe::status::NodeState::Unresponsive) => {
                self.unanswered_since.get_or_insert_with(Instant::now);
            }
            Some(_) => self.unanswered_since = None,
            None => {}
        }
    }
}

/// What a step does to the node's hold on the lease, for the fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseChange {
    Renewed,
    Lost,
    Frozen,
    Unchanged,
}

impl LeaseChange {
    fn of(step: &Step) -> LeaseChange {
        match step {
            Step::Lead | Step::Thaw => LeaseChange::Renewed,
            Step::Demote | Step::Kill => LeaseChange::Lost,
            Step::Freeze => LeaseChange::Frozen,
            _ => LeaseChange::Unchanged,
        }
    }
}

/// One cycle's decision: the step, its sentence, and the record and move
/// request it read (None when etcd did not answer).
type Decided = (Step, String, Option<State>, Option<Option<Move>>);

impl Env {
    /// Read the record and the move request, gather the facts and run the
    /// member's cycle. A running leader's cycle must end by its deadline,
    /// however slow etcd is (a deadline already past freezes it at once).
    async fn decide(
        &self,
        node: &Node,
        local: &mut Local,
        snap: Option<&Snapshot>,
        ttl: Duration,
        clock: &dyn Clock,
    ) -> Decided {
        let (ctx, sup, dcs, name) = (&self.ctx, &self.sup, &self.dcs, &node.name);
        let leading = matches!(sup.state(name), NodeState::Running { .. })
            && !node.data_dir.join("standby.signal").exists()
            && local.frozen.is_none();
        let bound = match local.member.deadline() {
            Some(d) if leading => d.saturating_sub(clock.now()),
            _ => ttl,
        };
        let started = tokio::time::Instant::now();
        let decided = tokio::time::timeout(bound, async {
            let record = read_record(ctx, bound).await;
            let request = read_request(ctx, bound).await;
            let asked = request.as_ref().and_then(|r| r.as_ref());
            let any_standby = asked.is_some_and(|r| r.kind == Kind::Failover && r.allow_data_loss);
            let view = record.as_ref().and_then(|st| ClusterView::of(&ctx.cfg, st).ok());
            let mut facts = facts(ctx, sup, snap, node, local, view.as_ref(), any_standby);
            facts.handover = asked.and_then(super::handover::giving_up);
            facts.stopped_for = local.handing.and(asked).map(|r| r.to.clone());
            if !facts.others_writable.is_empty() && matches!(dcs.leader().await, Ok(None)) {
                facts.others_writable = still_writable(ctx, &facts.others_writable).await;
            }
            let remaining = bound.saturating_sub(started.elapsed());
            let (step, why) =
                tokio::time::timeout(remaining, local.member.cycle(dcs.as_ref(), &facts)).await.map_err(|_| ())?;
            Ok::<_, ()>((step, why, record, request))
        })
        .await;
        match decided {
            Ok(Ok(d)) => d,
            _ => (
                Step::Freeze,
                format!("{name}: etcd did not confirm its leader lease by its deadline: freezing {name} before the lease can pass to another node"),
                None,
                None,
            ),
        }
    }

    /// After the step: a renewed leader's new deadline goes to the fence
    /// (and to `ctx`, for the start gate); a demoted one is released.
    fn tell_fence(&self, name: &str, local: &mut Local, lease: LeaseChange, clock: &dyn Clock) {
        match (self.sup.state(name), local.member.deadline()) {
            (NodeState::Running { pid }, Some(d)) if lease == LeaseChange::Renewed => {
                let left = d.saturating_sub(clock.now());
                self.ctx.lease_until(name, Some(std::time::Instant::now() + left));
                self.hold(local, name, pid, left)
            }
            _ if lease == LeaseChange::Lost => {
                self.ctx.lease_until(name, None);
                self.release(local)
            }
            _ if lease == LeaseChange::Frozen => self.ctx.lease_until(name, None),
            _ => {}
        }
    }

    /// A move this node takes part in, then what a command on another host
    /// asked of this node.
    async fn on_requests(
        &self,
        node: &Node,
        local: &mut Local,
        request: Option<&Move>,
        leads: bool,
        snap: Option<&Snapshot>,
    ) {
        let control = Control::new(Arc::new(self.sup.clone()));
        let mut mine = super::handover::Mine {
            ctx: &self.ctx,
            control: &control,
            dcs: self.dcs.as_ref(),
            node,
            handing: &mut local.handing,
            fenced: &mut local.fenced,
            out: &self.out,
        };
        mine.on_request(request, leads, snap).await;
        super::actions::on_action(&self.ctx, &control, node, leads).await;
        // Stopped for it: the fence has no postmaster to watch.
        if local.handing.is_some() {
            self.release(local);
        }
    }
}

/// The move request (`Some(None)`: none), or None when etcd does not
/// answer within `bound`.
async fn read_request(ctx: &Arc<Ctx>, bound: Duration) -> Option<Option<Move>> {
    let requests = ctx.requests()?;
    let read = tokio::task::spawn_blocking(move || requests.read());
    Some(tokio::time::timeout(bound, read).await.ok()?.ok()?.ok()?.map(|(s, _)| s))
}

/// The cluster's record, or None when etcd does not answer within `bound`
/// (the read blocks a thread, so it runs off the runtime's).
async fn read_record(ctx: &Arc<Ctx>, bound: Duration) -> Option<State> {
    let c = ctx.clone();
    let read = tokio::task::spawn_blocking(move || c.store().load());
    tokio::time::timeout(bound, read).await.ok()?.ok()?.ok()
}

/// How long a peer has to say it is a writable primary when no one holds
/// the lease: one that does not answer that fast is frozen or gone.
const PEER_PROBE: Duration = Duration::from_millis(300);

/// Of `names` (writable in the last snapshot), those that answer now, over
/// TCP, as writable primaries. The snapshot can be a probe timeout old, and
/// a frozen former primary must not hold up the election that long; one
/// that answers must (the backstop against a lease that ended early).
async fn still_writable(ctx: &Ctx, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        let Ok(node) = ctx.cfg.node(n) else { continue };
        let probe = async {
            let c = ctx.connect_remote(node).await.ok()?;
            c.query_one("SELECT pg_is_in_recovery()", &[]).await.ok().map(|r| !r.get::<_, bool>(0))
        };
        if tokio::time::timeout(PEER_PROBE, probe).await.ok().flatten() == Some(true) {
            out.push(n.clone());
        }
    }
    out
}

/// Log a sentence when its gist changes; `status` reads the latest.
fn say(ctx: &Ctx, local: &mut Local, reason: &str, out: &Output) {
    if reason == local.last_reason {
        return;
    }
    let names: Vec<&str> = ctx.cfg.nodes.iter().map(|n| n.name.as_str()).collect();
    if gist(reason, &names) != gist(&local.last_reason, &names) {
        out.info(format!("ha: {reason}"));
    }
    let _ = crate::pg::fsutil::write_atomic(&ctx.layout.ha_file(), reason.as_bytes(), 0o644);
    local.last_reason = reason.to_string();
}

/// This node's facts: its own state from the supervisor and the snapshot,
/// its peers' from the snapshot (each host's monitor probes every node).
fn facts(
    ctx: &Ctx,
    sup: &Supervisor,
    snap: Option<&Snapshot>,
    node: &Node,
    local: &Local,
    state: Option<&ClusterView>,
    any_standby: bool,
) -> MemberFacts {
    let running = matches!(sup.state(&node.name), NodeState::Running { .. });
    let nodes = snap.map(|s| s.status.nodes.as_slice()).unwrap_or_default();
    let recorded = state.map(|s| s.primary.name.as_str());
    let candidates: Vec<Candidate> = nodes
        .iter()
        .filter(|n| n.role == Some(Role::Replica) && n.state == crate::observe::status::NodeState::Running)
        .filter(|n| !state.is_some_and(|s| s.holds_back(&n.name)))
        .filter_map(|n| Candidate::from_status(&ctx.cfg, n))
        .collect();
    MemberFacts {
        mode: ctx.cfg.failover.mode,
        writable: running && !node.data_dir.join("standby.signal").exists(),
        running,
        recorded_primary: recorded == Some(node.name.as_str()),
        start_window: ctx.cfg.failover.primary_start_timeout,
        // `failover --allow-data-loss`: any standby, synchronous or not.
        candidates: match state {
            Some(_) if any_standby => candidates,
            Some(s) => crate::ops::moves::failover::only_sync(ctx.cfg.replication.durability, &s.sync_set, candidates),
            None => Vec::new(),
        },
        // An unreadable record (or one naming a primary the config lacks)
        // pauses automatic promotion: it cannot be told whether the user
        // paused it.
        paused: state.is_none_or(|s| s.paused.is_some()),
        others_writable: nodes
            .iter()
            .filter(|n| n.name != node.name && n.is_writable_primary())
            .map(|n| n.name.clone())
            .collect(),
        frozen: local.frozen.is_some(),
        handover: None,
        hung: local.unanswered_since.map(|t| t.elapsed()),
        stopped_for: None,
    }
}

/// Carry out one step for one node; failures are logged, and the next
/// cycle decides again.
#[allow(clippy::too_many_arguments)]
async fn act(
    ctx: &Arc<Ctx>,
    sup: &Supervisor,
    node: &Node,
    local: &mut Local,
    step: Step,
    snap: Option<&Snapshot>,
    record: Option<&State>,
    out: &Output,
) {
    let name = node.name.as_str();
    let control = Control::new(Arc::new(sup.clone()));
    match step {
        Step::Wait => {}
        // Before the first snapshot, `up` is still bootstrapping this node
        // (roles, slots): the leader's own upkeep waits for it.
        Step::Lead => lead(ctx, node, local, record, snap.is_some(), out).await,
        Step::Freeze => {
            local.slots_made = false;
            let NodeState::Running { pid } = sup.state(name) else { return };
            // The postmaster and every backend stop mid-statement: no
            // commit is acknowledged until it is thawed.
            match crate::pg::process::freeze_tree(pid) {
                Ok(()) => {
                    local.frozen = Some(pid);
                    out.info(format!(
                        "ha: {name}: froze postgres (postmaster {pid} and its processes) at its lease deadline"
                    ));
                }
                Err(e) => {
                    out.info(format!("ha: {name}: cannot freeze postgres ({e}): killing it"));
                    local.fenced = true;
                    sup.stop(name, StopMode::Kill).await;
                }
            }
        }
        Step::Kill => {
            // A crash as far as the supervisor goes: it starts it again,
            // as the primary only while this node still holds the lease.
            if let NodeState::Running { pid } = sup.state(name) {
                crate::pg::process::kill_tree(pid);
                out.info(format!("ha: {name}: killed its hung postgres (postmaster {pid} and its processes)"));
            }
            local.unanswered_since = None;
            local.slots_made = false;
        }
        Step::Thaw => {
            if let Some(pid) = local.frozen.take() {
                crate::pg::process::thaw_tree(pid);
                out.info(format!("ha: {name}: thawed postgres: its lease is confirmed again"));
            }
        }
        Step::Demote => {
            local.fenced = true;
            local.slots_made = false;
            // The record first, so nothing starts it as a primary again.
            if let Err(e) = crate::ops::moves::set_fenced(ctx, node, true) {
                out.info(format!("ha: {name}: cannot mark it fenced in the record ({e}); stopping it anyway"));
            }
            // The supervisor will not restart a node it was told to stop.
            let _ = crate::pg::fsutil::create_dir(&ctx.layout.run_dir(), 0o755);
            let _ =
                crate::pg::fsutil::write_atomic(&ctx.layout.stop_marker(name), crate::ops::control::MOVE_MARKER, 0o644);
            // A kill takes the whole tree, frozen or not.
            sup.stop(name, StopMode::Kill).await;
            local.frozen = None;
            out.info(format!("ha: {name}: stopped; it rejoins as a standby of the new leader"));
        }
        Step::Promote => promote(ctx, node, out).await,
        Step::Follow(leader) => {
            // A snapshot from before its last repoint still shows the old upstream.
            let seen = snap
                .filter(|s| s.taken_unix > local.repointed_at)
                .and_then(|s| s.status.nodes.iter().find(|n| n.name == name));
            follow(ctx, &control, node, local, &leader, seen, out).await
        }
    }
}

/// The leader: the record names it, and its standbys have their slots.
/// (`record`: None when etcd did not answer; the HA sentence says so.)
async fn lead(ctx: &Ctx, node: &Node, local: &mut Local, record: Option<&State>, up: bool, out: &Output) {
    let name = node.name.as_str();
    local.fenced = false;
    let named = |st: &State| st.primary.as_deref() == Some(name) && !st.fenced.iter().any(|f| f == name);
    if record.is_some_and(|st| !named(st)) {
        if let Err(e) = crate::ops::moves::record_primary(ctx, node, &format!("{name} holds the leader lease")) {
            out.info(format!("ha: {name}: cannot record it as the primary: {e}"));
        }
    }
    if !local.slots_made && up {
        // The roles (replication, rewind) and the standbys' slots, once per
        // leadership: a cluster bootstrapped by an older pgrepl gets them too.
        match crate::ops::bootstrap::replication(ctx, node).await {
            Ok(()) => local.slots_made = true,
            Err(e) => out.info(format!("ha: {name}: making the roles and the standbys' slots failed: {e}")),
        }
    }
}

/// It took the lease: record it as the primary (so a former primary that
/// restarts now starts as a standby), then promote it.
async fn promote(ctx: &Arc<Ctx>, node: &Node, out: &Output) {
    let name = node.name.as_str();
    // The snapshot may predate a promotion that already happened.
    if let Ok(c) = ctx.connect(node).await {
        if c.query_one("SELECT pg_is_in_recovery()", &[]).await.is_ok_and(|r| !r.get::<_, bool>(0)) {
            return;
        }
    }
    let old = match ctx.store().load() {
        Ok(st) => st.primary.filter(|p| p != name),
        Err(e) => return out.info(format!("ha: {name}: not promoting, the record cannot be read: {e}")),
    };
    // Handed the lead by a move a person asked for, or taken after a failure.
    let asked = ctx
        .requests()
        .and_then(|r| r.read().ok().flatten())
        .map(|(s, _)| s)
        .filter(|s| super::handover::giving_up(s).is_some_and(|h| h.to.as_deref().is_none_or(|t| t == name)));
    let why = match &asked {
        Some(s) if s.kind == Kind::Switchover => format!("switchover: {} handed the lead to {name}", s.from),
        Some(s) => format!("failover (asked for): {} gave up the lead; {name} took it", s.from),
        None => format!("failover: {name} took the leader lease"),
    };
    // Guarded by the leader key: a lease lost since this cycle took it
    // stops the promotion here.
    let recorded = ctx.store().update_as_leader(name, |st| {
        st.primary = Some(name.to_string());
        st.last_move = Some(why.clone());
        st.fenced.retain(|n| n != name);
        if let Some(o) = &old {
            if !st.fenced.contains(o) {
                st.fenced.push(o.clone());
            }
        }
    });
    if let Err(e) = recorded {
        return out.info(format!("ha: {name}: not promoting, the record cannot be written: {e}"));
    }
    if let Err(e) = crate::ops::moves::promote(ctx, node, ctx.cfg.supervisor.start_timeout).await {
        return out.info(format!("ha: promoting {name} failed: {e}"));
    }
    out.info(format!("ha: {name} promoted"));
    // A checkpoint puts the new timeline in pg_control, where pg_rewind of
    // the old primary reads it.
    if let Err(e) = crate::ops::moves::checkpoint(ctx, node).await {
        out.info(format!("ha: checkpoint on {name} after its promotion failed: {e}"));
    }
    let (kind, event) = match asked.as_ref().map(|s| s.kind) {
        Some(Kind::Switchover) => (MoveKind::Switchover, crate::ops::hooks::Event::Switchover),
        _ => (MoveKind::Failover, crate::ops::hooks::Event::Failover),
    };
    if let Some(from) = old.as_deref().and_then(|o| ctx.cfg.node(o).ok()) {
        if let Err(e) = crate::ops::moves::history::record(ctx, kind, from, node).await {
            out.info(format!("ha: recording the {} failed: {e}", event.as_str()));
        }
    }
    let done = match &asked {
        Some(s) => format!("{kind} complete: {name} is the primary, {} follows it", s.from),
        None => {
            format!("{name} promoted: it took the leader lease{}", old.map_or(String::new(), |o| format!(" from {o}")))
        }
    };
    if asked.is_some() {
        if let Some(r) = ctx.requests() {
            let _ = r.update(|s| {
                s.steps.push(format!("{name} promoted"));
                s.progress = Progress::Done;
                s.outcome = Some(done.clone());
            });
        }
    }
    crate::ops::hooks::fire(ctx, event, name, &done, out).await;
}

/// A standby (or a former leader) follows the lease holder.
async fn follow(
    ctx: &Arc<Ctx>,
    control: &Control,
    node: &Node,
    local: &mut Local,
    leader: &str,
    seen: Option<&NodeStatus>,
    out: &Output,
) {
    let name = node.name.as_str();
    let Ok(st) = ctx.store().load() else { return };
    // The new leader records itself first; until it has, wait.
    if st.primary.as_deref() != Some(leader) {
        return;
    }
    let Ok(primary) = ctx.cfg.node(leader).cloned() else { return };
    if local.fenced || st.fenced.iter().any(|f| f == name) {
        if !ctx.cfg.failover.auto_rejoin || Instant::now() < local.next_rejoin {
            return;
        }
        // pg_rewind, from the leader's socket or over TCP as the rewind
        // role; a node it cannot resync is marked needs-reclone.
        let r = crate::ops::moves::rejoin::rejoin(ctx, control, name, out).await;
        match r {
            Ok(()) => {
                local.fenced = false;
                local.rejoin_failures = 0;
            }
            Err(e) => {
                let wait = super::task::rejoin_backoff(ctx.cfg.failover.rejoin_interval, local.rejoin_failures);
                local.rejoin_failures += 1;
                local.next_rejoin = Instant::now() + wait;
                out.info(format!("ha: rejoining {name} failed, retrying in {}s: {e}", wait.as_secs()));
            }
        }
        return;
    }
    // A running standby that streams (or tries to) from another node is
    // pointed at the leader.
    let misfollows = seen.is_some_and(|n| {
        n.state == crate::observe::status::NodeState::Running
            && n.role == Some(Role::Replica)
            && n.upstream.as_deref().is_some_and(|u| u != leader)
    });
    if misfollows {
        local.repointed_at = crate::domain::time::now_unix();
        match crate::ops::moves::repoint(ctx, control, node, &primary).await {
            Ok(()) => out.info(format!("ha: {name} now follows {leader}")),
            Err(e) => out.info(format!("ha: repointing {name} at {leader} failed: {e}")),
        }
    }
}
