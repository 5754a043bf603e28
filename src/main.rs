//! `crashpoint`: parse the command line, call the library, map errors to exit
//! statuses (0 certified / as expected, 1 failures, 2 unusable input, 128 +
//! the signal when interrupted by SIGINT, SIGTERM or SIGHUP).

#![deny(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = crashpoint::cli::Cli::parse();
    let code = match crashpoint::cli::main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            e.exit_code()
        }
    };
    std::process::exit(code);
}
