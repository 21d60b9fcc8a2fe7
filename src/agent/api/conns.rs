//! The API's connection slots. A cap alone lets a client that opens many
//! connections and sends nothing lock the health checks out until its
//! connections time out. So when every slot is taken, the connection that
//! has waited longest without sending a request is shed to make room: an
//! idle client can delay no one, and only a flood of requests that are
//! actually being served (at most the cap of them) can fill the server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Every connection the API holds, oldest first.
pub(super) struct Conns {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// Open connections by age: whether each is still waiting for a
    /// request, and the sender whose drop sheds it.
    open: BTreeMap<u64, (bool, oneshot::Sender<()>)>,
}

/// One connection's place: shed when `shed` resolves; freed on drop.
pub(super) struct Slot {
    conns: Arc<Conns>,
    id: u64,
}

impl Conns {
    pub(super) fn new(cap: usize) -> Arc<Conns> {
        Arc::new(Conns { cap, inner: Mutex::new(Inner::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection, shedding the longest-idle one if every
    /// slot is taken; `None` when all of them are serving requests. The
    /// receiver resolves (with an error) when this connection is shed.
    pub(super) fn admit(self: &Arc<Self>) -> Option<(Slot, oneshot::Receiver<()>)> {
        let mut inner = self.lock();
        if inner.open.len() >= self.cap {
            let idle = inner.open.iter().find(|(_, (idle, _))| *idle).map(|(id, _)| *id)?;
            // Dropping its sender wakes its task, which closes the socket.
            inner.open.remove(&idle);
        }
        let (tx, rx) = oneshot::channel();
        let id = inner.next;
        inner.next += 1;
        inner.open.insert(id, (true, tx));
        Some((Slot { conns: self.clone(), id }, rx))
    }

    /// How many connections are open.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().open.len()
    }
}

impl Slot {
    /// A request arrived on this connection: it is no longer idle.
    pub(super) fn busy(&self) {
        if let Some((idle, _)) = self.conns.lock().open.get_mut(&self.id) {
            *idle = false;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.lock().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_server_sheds_the_longest_idle_connection_first() {
        let conns = Conns::new(2);
        let (a, mut a_shed) = conns.admit().unwrap();
        let (b, mut b_shed) = conns.admit().unwrap();
        a.busy();
        let (_c, _) = conns.admit().expect("b was idle: it makes room");
        assert!(b_shed.try_recv().is_err_and(|e| e == oneshot::error::TryRecvError::Closed), "b is shed");
        assert_eq!(a_shed.try_recv(), Err(oneshot::error::TryRecvError::Empty), "a is serving a request: kept");
        assert_eq!(conns.open(), 2);
        drop(b);
        assert_eq!(conns.open(), 2, "freeing a shed slot frees nothing twice");
    }

    #[test]
    fn a_server_busy_on_every_slot_turns_the_next_away() {
        let conns = Conns::new(1);
        let (a, _a_shed) = conns.admit().unwrap();
        a.busy();
        assert!(conns.admit().is_none());
        drop(a);
        assert!(conns.admit().is_some(), "a slot frees when its connection ends");
    }
}
