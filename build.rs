//! Records the git commit pgrepl is built from and the build's date, for
//! `pgrepl --version`, the man pages and the `pgrepl_build_info` metric
//! ("unknown" outside a git checkout).

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PGREPL_COMMIT={commit}");
    // The build's date (UTC), or SOURCE_DATE_EPOCH's for a reproducible build.
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => std::process::Command::new("date").args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%d"]).output(),
        Err(_) => std::process::Command::new("date").args(["-u", "+%Y-%m-%d"]).output(),
    }
    .ok()
    .filter(|o| o.status.success())
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PGREPL_BUILD_DATE={date}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // A new commit changes HEAD or the branch it points at.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
