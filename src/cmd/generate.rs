//! What packages ship beside the binary, generated from the command-line
//! definitions so they never drift from it: shell completions
//! (`pgrepl completions bash|zsh|fish`) and man pages (`pgrepl man`).

use std::io::Write;
use std::path::Path;

use clap::Command;
use clap_complete::Shell;

use crate::error::{Error, Result};

/// The completion script for `shell`, on stdout.
pub(crate) fn completions(mut cmd: Command, shell: Shell) -> Result<()> {
    clap_complete::generate(shell, &mut cmd, "pgrepl", &mut std::io::stdout());
    Ok(())
}

/// `pgrepl.1` and a page per subcommand (`pgrepl-switchover.1`, ...) in
/// `dir`; prints each path written.
pub(crate) fn man(cmd: Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    cmd.build();
    for page in pages(&cmd, "") {
        let path = dir.join(format!("{}.1", page.get_name()));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page.clone())
            .date(env!("PGREPL_BUILD_DATE"))
            .source(concat!("pgrepl ", env!("CARGO_PKG_VERSION")))
            .manual("pgrepl manual")
            .render(&mut buf)
            .map_err(|e| Error::Other(format!("rendering {}: {e}", path.display())))?;
        std::fs::write(&path, buf).map_err(|e| Error::io(&path, e))?;
        // A closed stdout (`| head`) is no reason to stop writing pages.
        let _ = writeln!(std::io::stdout(), "{}", path.display());
    }
    Ok(())
}

/// `cmd` and every subcommand below it, each named as its man page
/// (`pgrepl-archive-cleanup`), skipping clap's own `help`.
fn pages(cmd: &Command, parent: &str) -> Vec<Command> {
    let name = if parent.is_empty() { cmd.get_name().to_string() } else { format!("{parent}-{}", cmd.get_name()) };
    let mut out = vec![cmd.clone().name(name.clone())];
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        out.extend(pages(sub, &name));
    }
    out
}
