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
    let n = sock.recv(&mut buf).expect("a notification within a minute");
    let ready = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains("STATUS=supervising pg-1, pg-2, pg-3"), "{ready}");
    // Ready means the nodes are up in their roles: both replicas stream now.
    assert!(c.streaming("pg-2") && c.streaming("pg-3"), "READY=1 came before the replicas streamed");
    assert_eq!(c.nodes_writable(), ["pg-1"]);

    // systemd's stop (KillMode=mixed): SIGTERM to pgrepl alone.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(up.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let n = sock.recv(&mut buf).expect("a notification at the stop");
    assert!(String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "STOPPING=1"));
    let status = up.wait().unwrap();
    assert!(status.success(), "up exits 0 after a stop: {status}");
    wait_until("every postmaster gone", T, || ["pg-1", "pg-2", "pg-3"].iter().all(|n| c.postmaster_pid(n).is_none()));
}
