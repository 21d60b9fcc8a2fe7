//! Where supervisor output goes: every postgres log line prefixed with its
//! node's name (coloured on a TTY), and pgrepl's own lines prefixed
//! `[pgrepl]`. Lines are written whole so nodes never interleave mid-line.

use std::io::{IsTerminal, Write};

/// The shared output sink.
#[derive(Debug, Clone)]
pub struct Output {
    color: bool,
    width: usize,
}

const COLORS: &[&str] = &["\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m", "\x1b[34m", "\x1b[31m"];
const RESET: &str = "\x1b[0m";

impl Output {
    /// Colour only when stdout is a terminal; `width` pads node names.
    pub fn new(width: usize) -> Self {
        Output { color: std::io::stdout().is_terminal(), width }
    }

    /// One line from a node's postgres.
    pub fn node_line(&self, node: &str, index: usize, line: &str) {
        let tag = format!("[{node}]");
        let tag = format!("{tag:<w$}", w = self.width + 2);
        let text = if self.color {
            format!("{}{tag}{RESET} {line}\n", COLORS[index % COLORS.len()])
        } else {
            format!("{tag} {line}\n")
        };
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }

    /// One line from pgrepl itself.
    pub fn info(&self, msg: impl AsRef<str>) {
        let text = if self.color {
            format!("\x1b[1m[pgrepl]{RESET} {}\n", msg.as_ref())
        } else {
            format!("[pgrepl] {}\n", msg.as_ref())
        };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// True when output is a terminal (progress bars make sense).
    pub fn is_tty(&self) -> bool {
        self.color
    }
}
