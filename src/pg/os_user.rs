//! Who runs PostgreSQL. PostgreSQL refuses to run as root, so when pgrepl
//! is root every PostgreSQL program runs as `[cluster] os_user`; otherwise
//! everything runs as the invoking user. Also owns the check that this user
//! can reach the data root before anything is created.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use nix::unistd::{Gid, Uid, User};

use crate::error::{Error, Result};

/// The identity PostgreSQL programs run under.
#[derive(Debug, Clone)]
pub struct RunAs {
    /// OS user name; also the database superuser's name.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// True when pgrepl is root and must switch to `name` for every program.
    pub switch: bool,
}

impl RunAs {
    /// Decide from our own uid and the configured `os_user`.
    pub fn resolve(os_user: &str) -> Result<RunAs> {
        let me = Uid::effective();
        if me.is_root() {
            let u = User::from_name(os_user)
                .map_err(|e| Error::Other(format!("looking up OS user {os_user}: {e}")))?
                .ok_or_else(|| {
                    Error::Permission(format!(
                        "pgrepl runs as root, so PostgreSQL must run as [cluster] os_user = \"{os_user}\", but that OS user does not exist. Install the postgresql package (it creates `postgres`) or set os_user to an existing unprivileged user"
                    ))
                })?;
            if u.uid.is_root() {
                return Err(Error::Permission(format!(
                    "[cluster] os_user = \"{os_user}\" is root; PostgreSQL refuses to run as root. Set os_user to an unprivileged user such as postgres"
                )));
            }
            Ok(RunAs { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw(), switch: true })
        } else {
            let u = User::from_uid(me).ok().flatten();
            let name = u
                .as_ref()
                .map(|u| u.name.clone())
                .or_else(|| std::env::var("USER").ok())
                .ok_or_else(|| Error::Other(format!("cannot find the user name of uid {me}")))?;
            Ok(RunAs { name, uid: me.as_raw(), gid: Gid::effective().as_raw(), switch: false })
        }
    }

    /// Make `cmd` run as this identity (no-op unless switching from root).
    pub fn apply(&self, cmd: &mut std::process::Command) {
        if self.switch {
            // std drops supplementary groups (setgroups(0)) when gid is set as root.
            cmd.uid(self.uid).gid(self.gid);
        }
    }

    /// Same as [`RunAs::apply`], for tokio commands.
    pub fn apply_tokio(&self, cmd: &mut tokio::process::Command) {
        if self.switch {
            cmd.uid(self.uid).gid(self.gid);
        }
    }

    /// Give a path we created to this identity (only needed when root).
    pub fn chown(&self, path: &Path) -> Result<()> {
        if self.switch {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    /// Check that this user can traverse every existing ancestor of `path`.
    /// Runs before anything is created, so a blocked path costs nothing.
    pub fn check_reachable(&self, path: &Path) -> Result<()> {
        if !self.switch {
            return Ok(());
        }
        let groups = supplementary_groups(&self.name, self.gid);
        let mut cur = Some(path);
        let mut ancestors = Vec::new();
        while let Some(p) = cur {
            ancestors.push(p);
            cur = p.parent();
        }
        for dir in ancestors.into_iter().rev() {
            let Ok(md) = std::fs::metadata(dir) else {
                break;
            };
            let mode = md.mode();
            let bit = if md.uid() == self.uid {
                0o100
            } else if groups.contains(&md.gid()) {
                0o010
            } else {
                0o001
            };
            if mode & bit == 0 {
                return Err(Error::Permission(format!(
                    "PostgreSQL runs as OS user `{}`, which cannot reach {}: directory {} (mode {:o}) does not let it in. Fix: `chmod o+x {}`, or put data_root somewhere `{}` can reach, such as /var/lib/pgrepl",
                    self.name,
                    path.display(),
                    dir.display(),
                    mode & 0o7777,
                    dir.display(),
                    self.name
                )));
            }
        }
        Ok(())
    }
}

fn supplementary_groups(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return vec![gid];
    };
    nix::unistd::getgrouplist(&cname, Gid::from_raw(gid))
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![gid])
}
