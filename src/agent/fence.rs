//! The fence: a small process per host, forked before the async runtime
//! starts, that freezes a leader's PostgreSQL at its lease deadline even
//! when the agent itself is frozen (SIGSTOP, a stalled VM) or dead. The
//! agent's own deadline check cannot do that: a stopped agent checks
//! nothing, while its lease runs out and a replica takes over.
//!
//! It has no etcd access and makes no decision: the agent sends it, down a
//! pipe, "this postmaster may run until d" after each renewal, and
//! "release" when the node stops leading. At d it freezes the postmaster
//! and every child (SIGSTOP); it thaws only on a fresh deadline later than
//! now. When the pipe closes (the agent died) it still enforces the last
//! deadlines, then exits. It runs in a session of its own, so a signal to
//! the agent's process group does not reach it.
//!
//! Deadlines are CLOCK_MONOTONIC nanoseconds, the same clock in both
//! processes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::time::{clock_gettime, ClockId};

use crate::error::{Error, Result};
use crate::output::Output;

/// The agent's end of the pipe.
#[derive(Debug)]
pub(crate) struct Fence(Mutex<std::fs::File>);

/// Now on CLOCK_MONOTONIC, in nanoseconds.
fn now_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

impl Fence {
    /// Fork the fence. Call before any thread exists (before the runtime):
    /// the child runs [`serve`] and exits, never returning here.
    pub(crate) fn spawn() -> Result<Fence> {
        let (read, write) = nix::unistd::pipe().map_err(|e| Error::Other(format!("fence pipe: {e}")))?;
        // SAFETY: called while the process is single-threaded (before the
        // tokio runtime is built), so the child may run any code.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                drop(write);
                let _ = nix::unistd::setsid();
                serve(read, Output::new(0));
                std::process::exit(0);
            }
            Ok(nix::unistd::ForkResult::Parent { .. }) => {
                drop(read);
                Ok(Fence(Mutex::new(std::fs::File::from(write))))
            }
            Err(e) => Err(Error::Other(format!("cannot start the fence process: {e}"))),
        }
    }

    fn send(&self, line: String) {
        if let Ok(mut f) = self.0.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// `node`'s postmaster `pid` may keep running for `left`, no longer.
    pub(crate) fn hold(&self, node: &str, pid: i32, left: Duration) {
        let deadline = now_ns() + left.as_nanos() as u64;
        self.send(format!("hold {pid} {deadline} {node}\n"));
    }

    /// `pid` no longer leads (stopped, demoted, or the agent stops it).
    pub(crate) fn release(&self, pid: i32) {
        self.send(format!("release {pid}\n"));
    }
}

/// One postmaster the fence watches.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    node: String,
    deadline: u64,
    frozen: bool,
}

/// What the fence does about one message or the clock. Pure, so its
/// states are tested without processes.
#[derive(Debug, Default)]
struct Watch {
    held: HashMap<i32, Held>,
}

/// An action for the caller to carry out.
#[derive(Debug, PartialEq, Eq)]
enum Act {
    Freeze(i32, String),
    Thaw(i32, String),
}

impl Watch {
    fn message(&mut self, line: &str, now: u64) -> Option<Act> {
        let mut w = line.split_whitespace();
        match (w.next(), w.next().and_then(|p| p.parse::<i32>().ok())) {
            (Some("hold"), Some(pid)) => {
                let deadline = w.next()?.parse().ok()?;
                let node = w.next().unwrap_or("?").to_string();
                let was_frozen = self.held.get(&pid).is_some_and(|h| h.frozen);
                // Only a deadline still ahead thaws: a late message must
                // not wake a postgres whose lease may already be gone.
                let frozen = was_frozen && deadline <= now;
                self.held.insert(pid, Held { node: node.clone(), deadline, frozen });
                (was_frozen && !frozen).then_some(Act::Thaw(pid, node))
            }
            (Some("release"), Some(pid)) => {
                self.held.remove(&pid);
                None
            }
            _ => None,
        }
    }

    /// Freeze every postmaster whose deadline has come.
    fn due(&mut self, now: u64) -> Vec<Act> {
        let mut out = Vec::new();
        for (pid, h) in self.held.iter_mut() {
            if !h.frozen && now >= h.deadline {
                h.frozen = true;
                out.push(Act::Freeze(*pid, h.node.clone()));
            }
        }
        out
    }

    /// The time to the next deadline, if one is pending.
    fn next(&self, now: u64) -> Option<Duration> {
        self.held.values().filter(|h| !h.frozen).map(|h| Duration::from_nanos(h.deadline.saturating_sub(now))).min()
    }
}

/// The fence's loop: read messages, freeze at deadlines, until the pipe
/// closes and nothing is pending.
fn serve(pipe: OwnedFd, out: Output) {
    let mut file = std::fs::File::from(pipe);
    let mut watch = Watch::default();
    let mut buf = String::new();
    let mut open = true;
    loop {
        for act in watch.due(now_ns()) {
            carry_out(act, &out);
        }
        if !open && watch.next(now_ns()).is_none() {
            return;
        }
        let wait = watch.next(now_ns()).map_or(PollTimeout::NONE, |d| {
            PollTimeout::try_from(d.as_millis().min(60_000) as u32 + 1).unwrap_or(PollTimeout::MAX)
        });
        if !open {
            std::thread::sleep(watch.next(now_ns()).unwrap_or_default());
            continue;
        }
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, wait).unwrap_or(0) == 0 {
            continue;
        }
        let mut chunk = [0u8; 4096];
        match file.read(&mut chunk) {
            Ok(0) | Err(_) => open = false,
            Ok(n) => {
                buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
                while let Some(i) = buf.find('\n') {
                    let line: String = buf.drain(..=i).collect();
                    if let Some(act) = watch.message(&line, now_ns()) {
                        carry_out(act, &out);
                    }
                }
            }
        }
    }
}

fn carry_out(act: Act, out: &Output) {
    match act {
        Act::Freeze(pid, node) => match crate::pg::process::freeze_tree(pid) {
            Ok(()) => out.info(format!(
                "fence: {node}: froze postgres (postmaster {pid}) at its lease deadline; the agent did not renew in time"
            )),
            Err(e) => out.info(format!("fence: {node}: could not freeze postmaster {pid}: {e}")),
        },
        Act::Thaw(pid, node) => {
            crate::pg::process::thaw_tree(pid);
            out.info(format!("fence: {node}: thawed postgres (postmaster {pid}): a fresh deadline arrived"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn freezes_at_the_deadline_and_thaws_only_on_a_deadline_still_ahead() {
        let mut w = Watch::default();
        assert_eq!(w.message("hold 42 5000000000 pg-1\n", S), None);
        assert_eq!(w.next(S), Some(Duration::from_secs(4)));
        assert!(w.due(4 * S).is_empty(), "before d: nothing");
        assert_eq!(w.due(5 * S), vec![Act::Freeze(42, "pg-1".into())]);
        assert!(w.due(6 * S).is_empty(), "frozen once");
        assert_eq!(w.next(6 * S), None, "nothing pending while frozen");
        // A renewal that arrives late carries a deadline already past: no thaw.
        assert_eq!(w.message("hold 42 5500000000 pg-1", 6 * S), None);
        assert!(w.held[&42].frozen);
        // A fresh one thaws.
        assert_eq!(w.message("hold 42 9000000000 pg-1", 6 * S), Some(Act::Thaw(42, "pg-1".into())));
        assert_eq!(w.due(8 * S), vec![]);
        // Released: never frozen again.
        assert_eq!(w.message("release 42", 8 * S), None);
        assert!(w.due(100 * S).is_empty());
        assert_eq!(w.message("nonsense", 0), None);
    }
}
