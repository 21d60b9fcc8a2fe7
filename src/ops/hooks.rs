//! `[hooks] on_event`: a command of the user's, run after each event that
//! changes the cluster's shape (like repmgr's event_notification_command or
//! Patroni's callbacks), to move a virtual IP, update DNS or page someone.
//!
//! Run as `COMMAND EVENT NODE`, with PGREPL_EVENT, PGREPL_NODE,
//! PGREPL_PRIMARY (the primary after the event), PGREPL_CLUSTER and
//! PGREPL_MESSAGE in a clean environment, as the OS user PostgreSQL runs
//! as, stdin closed, bounded by `timeout`. A hook never changes the outcome
//! of the event: its failure is logged, that is all.

use std::process::Stdio;

use crate::output::Output;
use crate::store::ctx::Ctx;
use crate::store::state::EventRecord;

/// What happened; the hook gets it by name (its first argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Switchover,
    Failover,
    Rejoin,
    Reclone,
    NeedsReclone,
    Pause,
    Resume,
}

impl Event {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Event::Switchover => "switchover",
            Event::Failover => "failover",
            Event::Rejoin => "rejoin",
            Event::Reclone => "reclone",
            Event::NeedsReclone => "needs_reclone",
            Event::Pause => "pause",
            Event::Resume => "resume",
        }
    }
}

/// Record `event` on `node` (`-` for the whole cluster) in the cluster's
/// record, for the dashboard, then run the hook for it. Every event passes
/// here, whichever process made it, so the record misses none.
pub(crate) async fn fire(ctx: &Ctx, event: Event, node: &str, message: &str, out: &Output) {
    let event = event.as_str();
    let rec = EventRecord {
        at: crate::domain::time::now_unix(),
        kind: event.into(),
        node: node.into(),
        message: message.into(),
    };
    // Best effort, as the hook: the event itself has happened either way.
    // On a blocking thread: across hosts it is etcd calls, which may wait
    // out their timeouts when etcd is unreachable.
    let store = ctx.store_handle();
    let recorded = tokio::task::spawn_blocking(move || store.update(|st| st.record_event(rec.clone()))).await;
    if let Ok(Err(e)) = recorded {
        out.info(format!("warning: cannot record the {event} event of {node}: {e}"));
    }
    let Some(h) = &ctx.cfg.hooks else { return };
    // Empty when the record cannot be read: the hook is told, not misled.
    let primary = crate::store::view::ClusterView::read(ctx).map(|v| v.primary.name).unwrap_or_default();
    let mut cmd = tokio::process::Command::new(&h.on_event);
    cmd.arg(event)
        .arg(node)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("PGREPL_EVENT", event)
        .env("PGREPL_NODE", node)
        .env("PGREPL_PRIMARY", primary.as_str())
        .env("PGREPL_CLUSTER", ctx.cfg.cluster_name.as_str())
        .env("PGREPL_MESSAGE", message)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    ctx.runas.apply_tokio(&mut cmd);
    let shown = h.on_event.display();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            out.info(format!("hook: cannot run {shown} for {event} {node}: {e}"));
            return;
        }
    };
    match tokio::time::timeout(h.timeout, child.wait_with_output()).await {
        Err(_) => out.info(format!("hook: {shown} {event} {node} ran past {}s and was killed", h.timeout.as_secs())),
        Ok(Err(e)) => out.info(format!("hook: {shown} {event} {node}: {e}")),
        Ok(Ok(o)) => {
            for l in String::from_utf8_lossy(&o.stdout).lines().chain(String::from_utf8_lossy(&o.stderr).lines()) {
                out.info(format!("hook: {l}"));
            }
            if !o.status.success() {
                out.info(format!("hook: {shown} {event} {node} failed ({})", o.status));
            }
        }
    }
}
