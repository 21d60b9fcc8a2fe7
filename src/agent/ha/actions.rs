//! What a command on any host asks the agent that owns a node to do to it
//! (`requests/node/<node>` in etcd): `rejoin`, `reclone` or `restart`. The
//! node's own HA loop carries it out, so nothing else acts on the node
//! meanwhile; it refuses while the node leads (a leader's loop must keep
//! renewing its lease: restart the primary on its own host). What the action prints goes to this
//! agent's log and back into the request, where the command reads it.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Node;
use crate::ops::control::Control;
use crate::output::Output;
use crate::store::ctx::Ctx;
use crate::store::etcd::{Action, ActionProgress};

/// Carry out the action asked for `node`, if there is one. `leads`: this
/// cycle renewed its lease as a running primary.
pub(crate) async fn on_action(ctx: &Arc<Ctx>, control: &Control, node: &Node, leads: bool) {
    let Some(requests) = ctx.requests() else { return };
    let (r, name) = (requests.clone(), node.name.clone());
    let read = tokio::task::spawn_blocking(move || r.read_action(&name));
    let Ok(Ok(Ok(Some(asked)))) = tokio::time::timeout(Duration::from_secs(1), read).await else { return };
    if asked.progress != ActionProgress::Requested {
        return;
    }
    let name = node.name.as_str();
    let verb = asked.verb();
    if leads {
        let why = match asked.action {
            Action::Restart => format!(
                "{name} is the primary: restart it on its own host (`pgrepl restart {name}` there), where its lease is kept while it restarts; nothing changed"
            ),
            _ => format!("{name} is the primary: {verb} is for a standby; nothing changed"),
        };
        let _ = requests.update_action(name, |a| {
            a.progress = ActionProgress::Failed;
            a.outcome = Some(why.clone());
        });
        return;
    }
    if !requests.update_action(name, |a| a.progress = ActionProgress::Running).unwrap_or(false) {
        return;
    }
    let (out, lines) = Output::capturing();
    out.info(format!("{verb} {name}, asked from another host"));
    let work = async {
        match asked.action {
            Action::Rejoin => crate::ops::moves::rejoin::rejoin(ctx, control, name, &out).await,
            Action::Reclone => crate::ops::moves::rejoin::reclone(ctx, control, name, asked.discard, true, &out).await,
            Action::Restart => match crate::store::view::ClusterView::read(ctx) {
                Ok(view) => crate::ops::moves::restart::restart_node(ctx, control, node, &view.primary, &out).await,
                Err(e) => Err(e),
            },
        }
    };
    // What it has printed so far goes back every half second, so the
    // command shows the steps as they happen.
    let report = async {
        let mut sent = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let len = now.len();
            if len > sent {
                let (r, n) = (requests.clone(), name.to_string());
                let written = tokio::task::spawn_blocking(move || r.update_action(&n, |a| a.steps = now.clone()));
                if matches!(written.await, Ok(Ok(true))) {
                    sent = len;
                }
            }
        }
    };
    let done = tokio::select! {
        r = work => r,
        _ = report => unreachable!("the report loop never ends"),
    };
    let steps = lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let outcome = match &done {
        Ok(()) => format!("{verb} {name}: done"),
        Err(e) => format!("{verb} {name} failed: {e}"),
    };
    let _ = requests.update_action(name, |a| {
        a.steps = steps.clone();
        a.progress = if done.is_ok() { ActionProgress::Done } else { ActionProgress::Failed };
        a.outcome = Some(outcome.clone());
    });
}
