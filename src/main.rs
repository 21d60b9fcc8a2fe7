//! The `pgrepl` binary: parse arguments, run, print the error once, exit
//! with its code.

use std::io::Write;

use clap::Parser;

fn main() {
    let cli = pgrepl::Cli::parse_from(pgrepl::psql_args(std::env::args_os().collect()));
    if let Err(e) = pgrepl::run(cli) {
        if !matches!(e, pgrepl::Error::Exit(_)) {
            // One write: a detached supervisor's stderr is a log file other
            // processes append to, and `eprintln!` writes in pieces.
            let _ = std::io::stderr().lock().write_all(format!("pgrepl: error: {e}\n").as_bytes());
        }
        std::process::exit(e.exit_code());
    }
}
