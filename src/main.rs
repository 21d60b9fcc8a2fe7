//! The `pgrepl` binary: parse arguments, run, print the error once, exit
//! with its code.

use clap::Parser;

fn main() {
    let cli = pgrepl::cli::Cli::parse();
    if let Err(e) = pgrepl::cli::run(cli) {
        if !matches!(e, pgrepl::error::Error::Exit(_)) {
            eprintln!("pgrepl: error: {e}");
        }
        std::process::exit(e.exit_code());
    }
}
