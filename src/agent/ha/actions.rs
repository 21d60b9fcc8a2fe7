//! What a command on any host asks the agent that owns a node to do to it
//! (`requests/node/<node>` in etcd): `rejoin`, `reclone`, `restart` or
//! `reload`. What the action prints goes to this agent's log and back into
//! the request, where the command reads it.
//!
//! Two kinds. A rejoin or re-clone replaces what the node is, so the
//! node's HA loop carries it out itself and nothing else acts on the node
//! meanwhile; it is for a standby, and refused while the node leads. A
//! restart, a reload or a drill's fault (kill or freeze its postgres; a
//! freeze is undone here, whatever becomes of the drill) keeps what the
//! node is, so it runs beside the loop,
//! exactly as the same command run on this host would: a leader's loop
//! keeps renewing its lease while its postgres restarts (it holds the
//! lease through `primary_start_timeout`, as for any restart in place).

use std::sync::Arc;
use std::time::Duration;

use crate::config::Node;
use crate::error::Result;
use crate::ops::control::Control;
use crate::output::Output;
use crate::store::ctx::Ctx;
use crate::store::etcd::{Action, ActionProgress, NodeAction, Requests};

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
    let replaces = matches!(asked.action, Action::Rejoin | Action::Reclone);
    if leads && replaces {
        let why = format!("{name} is the primary: {} is for a standby; nothing changed", asked.verb());
        let _ = requests.update_action(name, |a| {
            a.progress = ActionProgress::Failed;
            a.outcome = Some(why.clone());
        });
        return;
    }
    if !requests.update_action(name, |a| a.progress = ActionProgress::Running).unwrap_or(false) {
        return;
    }
    let job = Job { ctx: ctx.clone(), control: control.clone(), node: node.clone(), asked, requests };
    if replaces {
        job.run().await;
    } else {
        // Marked running above, so later cycles leave it to this task.
        tokio::spawn(job.run());
    }
}

/// One action, with what it needs to run on its own.
struct Job {
    ctx: Arc<Ctx>,
    control: Control,
    node: Node,
    asked: NodeAction,
    requests: Requests,
}

impl Job {
    async fn work(&self, out: &Output) -> Result<()> {
        let (ctx, control, node, name) = (&self.ctx, &self.control, &self.node, self.node.name.as_str());
        match self.asked.action {
            Action::Rejoin => crate::ops::moves::rejoin::rejoin(ctx, control, name, out).await,
            Action::Reclone => {
                crate::ops::moves::rejoin::reclone(ctx, control, name, self.asked.discard, true, out).await
            }
            Action::Restart => {
                let view = crate::store::view::ClusterView::read(ctx)?;
                crate::ops::moves::restart::restart_node(ctx, control, node, &view.primary, out).await
            }
            Action::KillPostgres => crate::ops::drill::fault::kill(node),
            Action::FreezePostgres => {
                let seconds = self.asked.seconds.unwrap_or(10);
                // Thawed when its time is up, or (the guard's drop) when this
                // task ends any other way, the agent stopping included.
                let mut frozen = crate::ops::drill::fault::freeze(node)?;
                out.info(format!("{name}: frozen for {seconds}s"));
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                frozen.thaw();
                out.info(format!("{name}: thawed"));
                Ok(())
            }
            Action::KillAgent => Ok(()), // see kill_agent
            Action::FreezeHost => {
                let seconds = self.asked.seconds.unwrap_or(10);
                out.info(format!("{name}: freezing this host's pgrepl and PostgreSQL for {seconds}s"));
                crate::ops::drill::fault::freeze_host(seconds).await?;
                out.info(format!("{name}: this host runs again"));
                Ok(())
            }
            Action::IsolatePrimary => {
                let seconds = self.asked.seconds.unwrap_or(10);
                let peers = crate::ops::drill::fault::peers(ctx, node);
                let list: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
                out.info(format!("{name}: cutting this host off from {} for {seconds}s", list.join(", ")));
                crate::ops::drill::fault::isolate(&peers, seconds).await?;
                out.info(format!("{name}: this host is reachable again"));
                Ok(())
            }
            Action::Reload => {
                // The host's config file as it is now, as the command reads it.
                let fresh = Ctx::with_config(ctx, crate::config::load(&ctx.cfg.path)?)?;
                crate::ops::reload::reload(&fresh, Some(name), false, out).await
            }
        }
    }

    /// `drill --fault kill-agent`: say so in the request (no one could
    /// after), leave a restarter behind (what systemd's
    /// `Restart=on-failure` is in production), and die by SIGKILL: no
    /// cleanup, no goodbye to etcd, the postmasters left running for the
    /// fence to freeze at the lease deadline.
    async fn kill_agent(self) {
        use std::os::unix::process::CommandExt;
        let seconds = self.asked.seconds.unwrap_or(5);
        let (name, r) = (self.node.name.clone(), self.requests.clone());
        let restarter = std::env::current_exe().and_then(|exe| {
            // The config path and the binary are in argv; no secret is.
            std::process::Command::new("sh")
                .args(["-c", &format!("sleep {seconds}; exec \"$0\" -c \"$1\" up --detach")])
                .arg(exe)
                .arg(&self.ctx.cfg.path)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
        });
        let (progress, said) = match &restarter {
            Ok(_) => (
                ActionProgress::Done,
                format!(
                    "kill-agent {name}: the agent on {name}'s host dies by SIGKILL now and starts again in {seconds}s with `pgrepl up --detach`, as a service manager would start it"
                ),
            ),
            // Without a restarter the agent would stay dead: it refuses.
            Err(e) => (ActionProgress::Failed, format!("kill-agent {name}: cannot leave a restarter behind ({e}); the agent stays up")),
        };
        let outcome = said.clone();
        let _ = tokio::task::spawn_blocking(move || {
            r.update_action(&name, |a| {
                a.progress = progress;
                a.outcome = Some(outcome.clone());
            })
        })
        .await;
        Output::new(0).info(&said);
        if restarter.is_ok() {
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
        }
    }

    async fn run(self) {
        if self.asked.action == Action::KillAgent {
            return self.kill_agent().await;
        }
        let (name, verb) = (self.node.name.clone(), self.asked.verb());
        let (out, lines) = Output::capturing();
        out.info(format!("{verb} {name}, asked from another host"));
        // What it has printed so far goes back every half second, so the
        // command shows the steps as they happen.
        let report = async {
            let mut sent = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let len = now.len();
                if len > sent {
                    let (r, n) = (self.requests.clone(), name.clone());
                    let written = tokio::task::spawn_blocking(move || r.update_action(&n, |a| a.steps = now.clone()));
                    if matches!(written.await, Ok(Ok(true))) {
                        sent = len;
                    }
                }
            }
        };
        let done = tokio::select! {
            r = self.work(&out) => r,
            _ = report => unreachable!("the report loop never ends"),
        };
        let steps = lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let outcome = match &done {
            Ok(()) => format!("{verb} {name}: done"),
            Err(e) => format!("{verb} {name} failed: {e}"),
        };
        // The command waits for this: a moment without etcd (an agent that
        // was just cut off, say) must not lose it.
        let finish = || {
            let (r, n) = (self.requests.clone(), name.clone());
            let (steps, outcome, ok) = (steps.clone(), outcome.clone(), done.is_ok());
            async move {
                let written = tokio::task::spawn_blocking(move || {
                    r.update_action(&n, |a| {
                        a.steps = steps.clone();
                        a.progress = if ok { ActionProgress::Done } else { ActionProgress::Failed };
                        a.outcome = Some(outcome.clone());
                    })
                });
                // Ok(false): the request is gone (its command gave up); nothing to report to.
                matches!(written.await, Ok(Ok(_))).then_some(())
            }
        };
        let _ = crate::domain::deadline::poll(Duration::from_secs(30), Duration::from_millis(500), finish).await;
    }
}
