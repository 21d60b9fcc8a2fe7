//! What a package ships beside the binary, checked with the tools that
//! read it: completions loaded by bash, man pages rendered by `man -l`,
//! the systemd unit by `systemd-analyze verify`, and the agent's
//! readiness protocol (`Type=notify`) spoken to a socket of the test's.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use crate::harness::{text, wait_until, Cluster};

const T: Duration = Duration::from_secs(60);

fn pgrepl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgrepl")).args(args).output().expect("pgrepl")
}

#[test]
fn completions_load_in_bash_and_name_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let o = pgrepl(&["completions", shell]);
        assert!(o.status.success() && !o.stdout.is_empty(), "{shell}: {}", text(&o.stderr));
        std::fs::write(dir.path().join(shell), &o.stdout).unwrap();
    }
    let script = dir.path().join("bash");
    let n = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(n.status.success(), "bash -n: {}", text(&n.stderr));
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; complete -p pgrepl; COMP_WORDS=(pgrepl swi); COMP_CWORD=1; _pgrepl pgrepl swi pgrepl; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.contains("-F _pgrepl pgrepl"), "bash knows how to complete pgrepl: {out}");
    assert!(out.contains("switchover"), "completing `pgrepl swi` offers switchover: {out}");
}

#[test]
fn man_pages_render_without_warnings_one_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let o = pgrepl(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let pages: Vec<String> = text(&o.stdout).lines().map(str::to_string).collect();
    for sub in ["pgrepl.1", "pgrepl-up.1", "pgrepl-switchover.1", "pgrepl-archive-cleanup.1", "pgrepl-systemd.1"] {
        assert!(pages.iter().any(|p| p.ends_with(&format!("/{sub}"))), "no {sub} in {pages:?}");
    }
    for page in &pages {
        let o = Command::new("man").args(["-l", "--warnings"]).arg(page).env("MANWIDTH", "80").output().unwrap();
        assert!(o.status.success(), "man -l {page}: {}", text(&o.stderr));
        assert!(o.stderr.is_empty(), "man -l {page} warns: {}", text(&o.stderr));
        assert!(text(&o.stdout).contains("NAME"), "{page} renders");
    }
    let main =
        Command::new("man").args(["-l"]).arg(dir.path().join("pgrepl.1")).env("MANWIDTH", "80").output().unwrap();
    assert!(text(&main.stdout).contains("switchover"), "the main page lists the subcommands");
}

#[test]
fn the_generated_unit_and_the_template_pass_systemd_analyze_verify() {
    let c = Cluster::new(1);
    let o = c.pgrepl(&["systemd", "--user", "postgres"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let unit = text(&o.stdout);
    assert!(unit.contains(&format!("-c {} up", c.config().canonicalize().unwrap().display())), "{unit}");
    // The Documentation= pages, where a package puts them.
    let man = c.path("man");
    assert!(pgrepl(&["man", "--dir", man.join("man1").to_str().unwrap()]).status.success());
    let units = c.path("units");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("pgrepl-it.service"), &unit).unwrap();
    let verify = |name: &str| {
        Command::new("systemd-analyze").arg("verify").arg(units.join(name)).env("MANPATH", &man).output().unwrap()
    };
    let o = verify("pgrepl-it.service");
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    // The template names /usr/bin/pgrepl, which only the package installs:
    // verified here with that line pointed at this build.
    let t = pgrepl(&["systemd", "--template"]);
    let template = text(&t.stdout).replace("/usr/bin/pgrepl", env!("CARGO_BIN_EXE_pgrepl"));
    std::fs::write(units.join("pgrepl@.service"), template).unwrap();
    let o = verify("pgrepl@demo.service");
    assert!(o.status.success() && o.stderr.is_empty(), "template: {}{}", text(&o.stdout), text(&o.stderr));
}

/// One datagram. A signal meant for another test of this binary (they
/// share the process) interrupts the wait: that is not the answer, so wait
/// again.
fn recv(sock: &UnixDatagram, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match sock.recv(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

#[test]
fn a_foreground_up_tells_systemd_it_is_ready_once_the_replicas_stream_and_when_it_stops() {
    let c = Cluster::new(2);
    let sock_path = c.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let mut up = Command::new(env!("CARGO_BIN_EXE_pgrepl"))
        .arg("-c")
        .arg(c.config())
        .arg("up")
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = recv(&sock, &mut buf).expect("a notification within a minute");
    let ready = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains("STATUS=supervising pg-1, pg-2, pg-3"), "{ready}");
    // Ready means the nodes are up in their roles: both replicas stream now.
    assert!(c.streaming("pg-2") && c.streaming("pg-3"), "READY=1 came before the replicas streamed");
    assert_eq!(c.nodes_writable(), ["pg-1"]);

    // systemd's stop (KillMode=mixed): SIGTERM to pgrepl alone.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(up.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let n = recv(&sock, &mut buf).expect("a notification at the stop");
    assert!(String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "STOPPING=1"));
    let status = up.wait().unwrap();
    assert!(status.success(), "up exits 0 after a stop: {status}");
    wait_until("every postmaster gone", T, || ["pg-1", "pg-2", "pg-3"].iter().all(|n| c.postmaster_pid(n).is_none()));
}

/// `dpkg ARGS` (as root): its combined output, asserting success.
fn dpkg(args: &[&str]) -> String {
    let o = Command::new("dpkg").args(args).env("DEBIAN_FRONTEND", "noninteractive").output().expect("dpkg");
    let out = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "dpkg {args:?}: {out}");
    out
}

/// The package of this build at `version`, by the README's script.
fn build_deb(version: &str, out: &std::path::Path) -> std::path::PathBuf {
    let o = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-deb.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_pgrepl"), "--version", version, "--out"])
        .arg(out)
        .output()
        .expect("bash");
    assert!(o.status.success(), "build-deb.sh: {}", text(&o.stderr));
    std::path::PathBuf::from(text(&o.stdout).trim())
}

/// Installs, upgrades and removes the system's pgrepl package: root only,
/// and the one test that touches dpkg, so nothing else races it.
#[test]
fn the_deb_installs_upgrades_under_a_serving_cluster_and_removes_cleanly() {
    if !crate::harness::is_root() {
        eprintln!("skipped: installing a package needs root");
        return;
    }
    let debs = tempfile::tempdir().unwrap();
    let old = build_deb("0.1.0~it1", debs.path());
    let new = build_deb("0.1.0~it2", debs.path());
    let installed = || -> Option<String> {
        let o = Command::new("dpkg-query").args(["-W", "-f", "${Status} ${Version}", "pgrepl"]).output().ok()?;
        let s = text(&o.stdout);
        s.starts_with("install ok installed").then(|| s.rsplit(' ').next().unwrap_or_default().to_string())
    };
    // A leftover from an interrupted run would hide what this run installs.
    if installed().is_some() {
        dpkg(&["--purge", "pgrepl"]);
    }

    dpkg(&["-i", old.to_str().unwrap()]);
    assert_eq!(installed().as_deref(), Some("0.1.0~it1"));
    let v = Command::new("/usr/bin/pgrepl").arg("--version").output().unwrap();
    assert!(text(&v.stdout).starts_with("pgrepl 0.1.0 (commit "), "{}", text(&v.stdout));
    // What came with it is where the tools look.
    let man = Command::new("man").args(["-w", "pgrepl-switchover"]).output().unwrap();
    assert_eq!(text(&man.stdout).trim(), "/usr/share/man/man1/pgrepl-switchover.1.gz");
    let bash = Command::new("bash")
        .args(["-c", "source /usr/share/bash-completion/completions/pgrepl && complete -p pgrepl"])
        .output()
        .unwrap();
    assert!(text(&bash.stdout).contains("-F _pgrepl pgrepl"), "{}", text(&bash.stderr));
    assert!(std::path::Path::new("/usr/share/doc/pgrepl/examples/pgrepl.toml").exists());
    let o =
        Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/pgrepl@demo.service"]).output().unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "the installed template: {}", text(&o.stderr));

    // An upgrade without database downtime, as the README says: the agent
    // lets go of its nodes, the package is replaced, a new agent takes
    // them over. The postmasters stay the same processes, and a writer's
    // commits are acknowledged throughout.
    let c = Cluster::with_extra(1, crate::moves::APP_DB);
    c.write("secrets/app.password", "app-secret\n");
    let sys = |args: &[&str]| {
        let o = Command::new("/usr/bin/pgrepl")
            .arg("-c")
            .arg(c.config())
            .args(args)
            .current_dir(c.dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "/usr/bin/pgrepl {args:?}: {}", text(&o.stderr));
    };
    sys(&["up", "--detach"]);
    c.sql_db("pg-1", "app", "CREATE TABLE w (id bigint PRIMARY KEY); ALTER TABLE w OWNER TO app").unwrap();
    wait_until("pg-2 streams", T, || c.streaming("pg-2"));
    let pids = (c.postmaster_pid("pg-1"), c.postmaster_pid("pg-2"));
    let nodes: Vec<(String, u16)> = c.ports.iter().map(|p| ("127.0.0.1".to_string(), *p)).collect();
    let w = crate::moves::Writer::start_at(&nodes, Some(Duration::from_secs(5)));
    w.wait_more(20);
    let before = std::time::Instant::now();
    sys(&["down", "--leave-running"]);
    dpkg(&["-i", new.to_str().unwrap()]);
    assert_eq!(installed().as_deref(), Some("0.1.0~it2"));
    sys(&["up", "--detach"]);
    w.wait_more(20);
    assert_eq!((c.postmaster_pid("pg-1"), c.postmaster_pid("pg-2")), pids, "the same postmasters serve");
    let gap = w.longest_gap_since(before);
    let acked = w.finish();
    let on_primary: i64 = c.sql_db("pg-1", "app", "SELECT count(*) FROM w").unwrap().trim().parse().unwrap();
    assert!(on_primary >= acked.len() as i64, "every acknowledged write is there: {on_primary} < {}", acked.len());
    eprintln!("upgrade under a writer: longest write gap {gap:?}");
    assert!(gap < Duration::from_secs(2), "writes went on through the upgrade (longest gap {gap:?})");
    sys(&["down"]);

    dpkg(&["-r", "pgrepl"]);
    assert!(!std::path::Path::new("/usr/bin/pgrepl").exists(), "removed");
    assert!(!std::path::Path::new("/lib/systemd/system/pgrepl@.service").exists(), "its unit too");
    dpkg(&["--purge", "pgrepl"]);
    assert_eq!(installed(), None);
}
