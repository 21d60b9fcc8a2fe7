//! Where supervisor output goes: every postgres log line prefixed with its
//! node's name (coloured on a terminal unless `NO_COLOR` is set), and
//! pgrepl's own lines prefixed `[pgrepl]` with a timestamp and a level, or
//! one JSON object per line (`--log-format json`). Lines are written whole
//! so nodes never interleave mid-line. With `--quiet-postgres` postgres
//! lines go only to `<data_root>/log/<node>.log`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

/// How pgrepl's output is written, set once per process.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogSettings {
    pub json: bool,
    /// Postgres lines go to this directory (one file per node) instead of stdout.
    pub quiet_postgres: Option<PathBuf>,
}

static SETTINGS: OnceLock<LogSettings> = OnceLock::new();

/// Set the process's log settings (the first call wins; the default is text).
pub(crate) fn configure(s: LogSettings) {
    let _ = SETTINGS.set(s);
}

fn settings() -> &'static LogSettings {
    SETTINGS.get_or_init(LogSettings::default)
}

/// The shared output sink.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    color: bool,
    tty: bool,
    width: usize,
    /// pgrepl's own lines are also kept here: an agent doing something a
    /// command on another host asked for reports them back to it.
    capture: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
    /// pgrepl's own lines go to stderr: stdout carries a document (`--json`).
    stderr: bool,
}

const COLORS: &[&str] = &["\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m", "\x1b[34m", "\x1b[31m"];
const RESET: &str = "\x1b[0m";

/// A line's level: pgrepl's own from how the message starts, postgres's
/// from its severity word.
pub(crate) fn level_of(line: &str) -> &'static str {
    let has = |w: &str| line.starts_with(w) || line.contains(&format!(" {w}"));
    if has("error:") || has("FATAL:") || has("PANIC:") || has("ERROR:") {
        "error"
    } else if has("warning:") || has("WARNING:") {
        "warn"
    } else {
        "info"
    }
}

/// Colour on a terminal, unless `NO_COLOR` is set to anything non-empty
/// (no-color.org) or the lines are JSON.
fn use_color(tty: bool, no_color: Option<&std::ffi::OsStr>, json: bool) -> bool {
    tty && !json && no_color.is_none_or(|v| v.is_empty())
}

/// One JSON log object.
pub(crate) fn json_line(ts: &str, level: &str, source: &str, msg: &str) -> String {
    let v = serde_json::json!({"ts": ts, "level": level, "source": source, "msg": msg});
    format!("{v}\n")
}

impl Output {
    /// Colour only on a terminal and without `NO_COLOR`; `width` pads node names.
    pub(crate) fn new(width: usize) -> Self {
        let tty = std::io::stdout().is_terminal();
        let color = use_color(tty, std::env::var_os("NO_COLOR").as_deref(), settings().json);
        Output { color, tty, width, capture: None, stderr: false }
    }

    /// Like [`Output::new`], also keeping each of pgrepl's own lines.
    pub(crate) fn capturing() -> (Self, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        (Output { capture: Some(lines.clone()), ..Output::new(0) }, lines)
    }

    /// Like [`Output::new`], with pgrepl's own lines on stderr.
    pub(crate) fn to_stderr() -> Self {
        let tty = std::io::stderr().is_terminal();
        let color = use_color(tty, std::env::var_os("NO_COLOR").as_deref(), settings().json);
        Output { color, tty, width: 0, capture: None, stderr: true }
    }

    /// One line from a node's postgres.
    pub(crate) fn node_line(&self, node: &str, index: usize, line: &str) {
        let s = settings();
        let ts = crate::domain::time::rfc3339(crate::domain::time::now_unix());
        let text = if s.json {
            json_line(&ts, level_of(line), node, line)
        } else if self.color && s.quiet_postgres.is_none() {
            let tag = format!("{:<w$}", format!("[{node}]"), w = self.width + 2);
            format!("{}{tag}{RESET} {line}\n", COLORS[index % COLORS.len()])
        } else {
            format!("{:<w$} {line}\n", format!("[{node}]"), w = self.width + 2)
        };
        match &s.quiet_postgres {
            Some(dir) => {
                let path = dir.join(format!("{node}.log"));
                let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
                if let Ok(mut f) = file {
                    let _ = f.write_all(text.as_bytes());
                }
            }
            None => {
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
            }
        }
    }

    /// One line from pgrepl itself: `[pgrepl] <time> <LEVEL> message`.
    pub(crate) fn info(&self, msg: impl AsRef<str>) {
        let msg = msg.as_ref();
        if let Some(c) = &self.capture {
            c.lock().unwrap_or_else(|p| p.into_inner()).push(msg.to_string());
        }
        let ts = crate::domain::time::rfc3339(crate::domain::time::now_unix());
        let level = level_of(msg);
        // The level says it; `WARN  warning: ...` would say it twice.
        let msg = msg.strip_prefix("warning: ").or_else(|| msg.strip_prefix("error: ")).unwrap_or(msg);
        let text = if settings().json {
            json_line(&ts, level, "pgrepl", msg)
        } else if self.color {
            format!("\x1b[1m[pgrepl]{RESET} {ts} {:<5} {msg}\n", level.to_uppercase())
        } else {
            format!("[pgrepl] {ts} {:<5} {msg}\n", level.to_uppercase())
        };
        if self.stderr {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// True when output is a terminal (progress bars make sense).
    pub(crate) fn is_tty(&self) -> bool {
        self.tty && !settings().json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_come_from_the_message_or_postgres_severity() {
        assert_eq!(level_of("error: pg-3: could not start"), "error");
        assert_eq!(level_of("warning: the file is readable by others"), "warn");
        assert_eq!(level_of("ha: primary pg-1 is writable"), "info");
        assert_eq!(level_of("2026-11-30 06:26:25.404 GMT [18290] FATAL:  could not write"), "error");
        assert_eq!(level_of("2026-11-30 06:26:25.404 GMT [1] LOG:  ready"), "info");
    }

    #[test]
    fn no_color_and_json_turn_colour_off() {
        assert!(use_color(true, None, false));
        assert!(!use_color(true, Some(std::ffi::OsStr::new("1")), false));
        assert!(use_color(true, Some(std::ffi::OsStr::new("")), false), "an empty NO_COLOR does not count");
        assert!(!use_color(true, None, true));
        assert!(!use_color(false, None, false));
    }

    #[test]
    fn a_json_line_is_one_object_with_the_message_escaped() {
        let l = json_line("2026-11-30T06:00:00.000Z", "info", "pg-1", "say \"hi\"\tthere");
        assert!(l.ends_with('\n') && l.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["msg"], "say \"hi\"\tthere");
        assert_eq!(v["source"], "pg-1");
    }
}
