//! Leader ownership: who may be the writable primary. A `Dcs` is the store
//! that decides it, with this contract (Patroni's, and etcd's):
//!
//! - `acquire(me, ttl)` is an atomic create-if-absent: it succeeds only if no
//!   live lease exists (or `me` already holds it), and then `me` holds a
//!   lease for `ttl`;
//! - `renew(me, ttl)` is a compare-and-set on our own value: it extends the
//!   lease only while `me` still holds it, and fails otherwise;
//! - `release(me)` deletes the lease only if `me` holds it;
//! - a holder that cannot renew has lost leadership and must demote.
//!
//! This module has the in-process implementation for one machine. An etcd
//! implementation implements the same trait; the HA decision code (`ha`)
//! only sees the trait.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Result;

/// A boxed future, so the trait stays object-safe.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The time source: real, or fake in tests so lease expiry takes no time.
pub(crate) trait Clock: Send + Sync {
    /// Monotonic now.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
pub(crate) struct SystemClock(std::time::Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(std::time::Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The leader store.
pub trait Dcs: Send + Sync {
    fn acquire<'a>(&'a self, me: &'a str, ttl: Duration) -> BoxFut<'a, Result<bool>>;
    // Part of the contract every store keeps (and its test checks); the
    // loops renew through `acquire`, which renews for the holder.
    #[allow(dead_code)]
    fn renew<'a>(&'a self, me: &'a str, ttl: Duration) -> BoxFut<'a, Result<bool>>;
    fn release<'a>(&'a self, me: &'a str) -> BoxFut<'a, Result<()>>;
    /// The holder of a live lease, if any.
    fn leader(&self) -> BoxFut<'_, Result<Option<String>>>;
}

#[derive(Debug, Clone)]
struct Lease {
    holder: String,
    expires: Duration,
}

/// The in-process store: one supervisor decides for the whole machine.
pub(crate) struct InProcess {
    clock: Arc<dyn Clock>,
    lease: Mutex<Option<Lease>>,
}

impl InProcess {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        InProcess { clock, lease: Mutex::new(None) }
    }

    fn live(&self) -> Option<Lease> {
        let now = self.clock.now();
        self.lease.lock().ok()?.clone().filter(|l| l.expires > now)
    }
}

impl Dcs for InProcess {
    fn acquire<'a>(&'a self, me: &'a str, ttl: Duration) -> BoxFut<'a, Result<bool>> {
        Box::pin(async move {
            let now = self.clock.now();
            let Ok(mut g) = self.lease.lock() else { return Ok(false) };
            match g.as_ref() {
                Some(l) if l.expires > now && l.holder != me => Ok(false),
                _ => {
                    *g = Some(Lease { holder: me.to_string(), expires: now + ttl });
                    Ok(true)
                }
            }
        })
    }

    fn renew<'a>(&'a self, me: &'a str, ttl: Duration) -> BoxFut<'a, Result<bool>> {
        Box::pin(async move {
            let now = self.clock.now();
            let Ok(mut g) = self.lease.lock() else { return Ok(false) };
            match g.as_mut() {
                Some(l) if l.holder == me && l.expires > now => {
                    l.expires = now + ttl;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    fn release<'a>(&'a self, me: &'a str) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            if let Ok(mut g) = self.lease.lock() {
                if g.as_ref().is_some_and(|l| l.holder == me) {
                    *g = None;
                }
            }
            Ok(())
        })
    }

    fn leader(&self) -> BoxFut<'_, Result<Option<String>>> {
        Box::pin(async move { Ok(self.live().map(|l| l.holder)) })
    }
}

/// A clock tests move by hand.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct FakeClock(Mutex<Duration>);

#[cfg(test)]
impl FakeClock {
    pub(crate) fn advance(&self, d: Duration) {
        if let Ok(mut g) = self.0.lock() {
            *g += d;
        }
    }
}

#[cfg(test)]
impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.0.lock().map(|g| *g).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn acquire_is_create_if_absent_and_renew_is_cas_on_our_value() {
        let clock = Arc::new(FakeClock::default());
        let d = InProcess::new(clock.clone());
        let ttl = Duration::from_secs(10);
        block(async {
            assert!(d.acquire("pg-1", ttl).await.unwrap());
            assert!(!d.acquire("pg-2", ttl).await.unwrap(), "a live lease blocks others");
            assert!(d.acquire("pg-1", ttl).await.unwrap(), "the holder may re-acquire");
            assert!(!d.renew("pg-2", ttl).await.unwrap(), "only the holder renews");
            clock.advance(Duration::from_secs(9));
            assert!(d.renew("pg-1", ttl).await.unwrap());
            clock.advance(Duration::from_secs(9));
            assert_eq!(d.leader().await.unwrap().as_deref(), Some("pg-1"), "renewal extended the lease");
            clock.advance(Duration::from_secs(2));
            assert_eq!(d.leader().await.unwrap(), None, "an unrenewed lease expires");
            assert!(!d.renew("pg-1", ttl).await.unwrap(), "a lost lease cannot be renewed: demote");
            assert!(d.acquire("pg-2", ttl).await.unwrap());
            d.release("pg-1").await.unwrap();
            assert_eq!(d.leader().await.unwrap().as_deref(), Some("pg-2"), "release only deletes our own lease");
        });
    }
}
