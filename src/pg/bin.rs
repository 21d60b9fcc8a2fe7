//! Finding PostgreSQL's programs and their major version. Search order:
//! `[cluster] postgres_bin`, `$PATH`, `pg_config --bindir`, then Debian's
//! versioned layout (`/usr/lib/postgresql/<major>/bin`), highest major first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The server programs a bindir must hold. Client tools (pg_basebackup,
/// pg_rewind, psql, ...) may come from another installation: pgrepl has its
/// own base backup for servers no installed pg_basebackup can copy.
const SERVER: &[&str] = &["postgres", "initdb", "pg_ctl"];

/// A usable PostgreSQL installation.
#[derive(Debug, Clone)]
pub struct PgBin {
    pub dir: PathBuf,
    /// Major version, e.g. 15 (or 10 for 10.x).
    pub major: u32,
    /// Full version string, e.g. "15.18".
    pub version: String,
    /// Where client tools missing from `dir` come from, and their major.
    pub tools: Option<(PathBuf, u32)>,
}

impl PgBin {
    /// Path of one program: from the bindir, else from the tools dir.
    pub fn program(&self, name: &str) -> PathBuf {
        let own = self.dir.join(name);
        match &self.tools {
            Some((t, _)) if !own.is_file() => t.join(name),
            _ => own,
        }
    }

    /// The major of the program [`PgBin::program`] would run, if it exists.
    pub fn program_major(&self, name: &str) -> Option<u32> {
        if self.dir.join(name).is_file() {
            return Some(self.major);
        }
        self.tools.as_ref().filter(|(t, _)| t.join(name).is_file()).map(|(_, m)| *m)
    }

    /// Check that `programs` exist for exactly the server's major, as
    /// pg_rewind and pg_controldata must (they read the data dir's files).
    pub fn require_matched(&self, programs: &[&str], what: &str) -> Result<()> {
        let wrong: Vec<String> = programs
            .iter()
            .filter(|p| self.program_major(p) != Some(self.major))
            .map(|p| match self.program_major(p) {
                Some(m) => format!("{p} is from PostgreSQL {m}"),
                None => format!("{p} is missing"),
            })
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        Err(Error::BinariesNotFound(format!(
            "{what} needs {} of PostgreSQL {} (the server's major), but {} (bindir {}). Install that major's client programs into the bindir, or set [cluster] postgres_bin to a complete PostgreSQL {} installation",
            programs.join(" and "),
            self.major,
            wrong.join(", "),
            self.dir.display(),
            self.major
        )))
    }
}

/// Find the binaries, or explain everything that was searched.
pub fn find(configured: Option<&Path>) -> Result<PgBin> {
    let mut searched = Vec::new();
    if let Some(dir) = configured {
        return probe(dir).map_err(|why| {
            Error::BinariesNotFound(format!(
                "[cluster] postgres_bin = {} is not a usable PostgreSQL bindir: {why}. Point it at the directory holding `postgres`, `initdb` and `pg_ctl`, or remove it to search automatically",
                dir.display()
            ))
        });
    }
    for dir in candidates() {
        match probe(&dir) {
            Ok(b) => return Ok(b),
            Err(why) => searched.push(format!("  {}: {why}", dir.display())),
        }
    }
    if searched.is_empty() {
        searched
            .push("  (no candidate directories: nothing on $PATH, no pg_config, no /usr/lib/postgresql/*/bin)".into());
    }
    Err(Error::BinariesNotFound(format!(
        "no PostgreSQL server binaries found. Searched $PATH, `pg_config --bindir` and /usr/lib/postgresql/<major>/bin:\n{}\nInstall them with `sudo apt-get install -y postgresql-15` (Debian/Ubuntu), or set [cluster] postgres_bin to the directory holding `postgres`",
        searched.join("\n")
    )))
}

fn candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut add = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("postgres").is_file() {
                add(dir);
            }
        }
    }
    if let Ok(o) = Command::new("pg_config").arg("--bindir").stderr(Stdio::null()).output() {
        if o.status.success() {
            add(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        }
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|d| std::cmp::Reverse(d.0));
    for (_, p) in debian {
        add(p);
    }
    out
}

/// Check a directory: server programs present, `postgres --version`
/// parses. Client tools it lacks come from another installation, preferring
/// one of the same major, then the newest.
fn probe(dir: &Path) -> std::result::Result<PgBin, String> {
    let missing: Vec<&str> = SERVER.iter().copied().filter(|p| !dir.join(p).is_file()).collect();
    if !missing.is_empty() {
        return Err(format!("missing {}", missing.join(", ")));
    }
    let (major, version) = version_of(&dir.join("postgres"))?;
    // Resolve symlinks (e.g. /usr/local/bin/postgres -> /usr/lib/postgresql/15/bin)
    // so every program comes from one installation.
    let real = std::fs::canonicalize(dir.join("postgres")).ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let dir = match real {
        Some(r) if SERVER.iter().all(|p| r.join(p).is_file()) => r,
        _ => dir.to_path_buf(),
    };
    let tools = if dir.join("pg_basebackup").is_file() {
        None
    } else {
        let mut others: Vec<(PathBuf, u32)> = candidates()
            .into_iter()
            .filter(|c| c.join("pg_basebackup").is_file() && *c != dir)
            .filter_map(|c| version_of(&c.join("pg_basebackup")).ok().map(|(m, _)| (c, m)))
            .collect();
        others.sort_by_key(|(_, m)| (*m != major, std::cmp::Reverse(*m)));
        others.into_iter().next()
    };
    Ok(PgBin { dir, major, version, tools })
}

/// `PROGRAM --version`, parsed.
fn version_of(program: &Path) -> std::result::Result<(u32, String), String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {} --version: {e}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or_else(|| format!("cannot read version from `{}`", text.trim()))
}

/// Parse `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into (15, "15.18").
pub(crate) fn parse_version(text: &str) -> Option<(u32, String)> {
    let v = text.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let v: String = v.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let v = v.trim_end_matches('.');
    let mut parts = v.split('.');
    let first: u32 = parts.next()?.parse().ok()?;
    // Before 10, the major was two numbers (9.6); pgrepl supports 10+.
    Some((first, v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines_parse() {
        assert_eq!(parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), Some((15, "15.18".into())));
        assert_eq!(parse_version("postgres (PostgreSQL) 11.22"), Some((11, "11.22".into())));
        assert_eq!(parse_version("postgres (PostgreSQL) 18beta1"), Some((18, "18".into())));
        assert_eq!(parse_version("garbage"), None);
    }
}
