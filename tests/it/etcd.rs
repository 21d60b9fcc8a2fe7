//! The leader lease on a real etcd (Debian's `etcd-server`), through its
//! JSON gateway: the store contract the HA loop relies on, with lease
//! expiry on etcd's own clock.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pgrepl::{Dcs, EtcdDcs};

use crate::harness::{free_port, http_get, wait_until};

/// One etcd member on loopback, in a temp dir, stopped on drop.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let (curl, purl) = (format!("http://127.0.0.1:{client}"), format!("http://127.0.0.1:{peer}"));
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &curl, "--advertise-client-urls", &curl])
            .args(["--listen-peer-urls", &purl, "--initial-advertise-peer-urls", &purl])
            .args(["--initial-cluster", &format!("t={purl}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server; bash scripts/install-deps.sh --test installs it)");
        let e = Etcd { child, url: curl, _dir: dir };
        wait_until("etcd answers /health", Duration::from_secs(30), || {
            http_get(client, "/health").is_some_and(|(code, body)| code == 200 && body.contains("true"))
        });
        e
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_leader_lease_on_etcd_is_create_if_absent_renewed_by_its_holder_and_expires_on_its_own() {
    let etcd = Etcd::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (a, b) = (EtcdDcs::new(&etcd.url, "/pgrepl", "c").unwrap(), EtcdDcs::new(&etcd.url, "/pgrepl", "c").unwrap());
    let ttl = Duration::from_secs(2);
    rt.block_on(async {
        assert!(a.acquire("pg-1", ttl).await.unwrap());
        assert!(!b.acquire("pg-2", ttl).await.unwrap(), "a live lease blocks others");
        assert_eq!(b.leader().await.unwrap().as_deref(), Some("pg-1"));
        assert!(a.acquire("pg-1", ttl).await.unwrap(), "the holder renews");
        assert!(!b.renew("pg-2", ttl).await.unwrap(), "only the holder renews");
    });
    // pg-1 stops renewing: etcd revokes its lease by itself.
    wait_until("pg-1's lease expires", Duration::from_secs(10), || rt.block_on(b.leader()).unwrap().is_none());
    rt.block_on(async {
        assert!(b.acquire("pg-2", ttl).await.unwrap(), "a free lease is taken");
        assert!(!a.renew("pg-1", ttl).await.unwrap(), "a lost lease cannot be renewed: demote");
        a.release("pg-1").await.unwrap();
        assert_eq!(a.leader().await.unwrap().as_deref(), Some("pg-2"), "release deletes only our own key");
        b.release("pg-2").await.unwrap();
        assert_eq!(a.leader().await.unwrap(), None);
    });
}
