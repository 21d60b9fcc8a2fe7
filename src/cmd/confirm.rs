//! Asking before a move a person starts: `failover`, `switchover` and
//! `reclone --discard` ask on a terminal; `--yes` skips the question, and
//! without a terminal (a script, cron) they refuse unless given `--yes`,
//! naming it, rather than act on no one's answer.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::{Error, Result};

/// Ask `question`; Ok to go on. `what` names the command for the refusal.
pub(crate) fn ask(question: &str, what: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Usage(format!(
            "`pgrepl {what}` asks for confirmation and no terminal is attached; add --yes to run it from a script"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| Error::Other(format!("reading the answer: {e}")))?;
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Error::Refused(format!("`pgrepl {what}` cancelled; nothing changed"))),
    }
}
