//! The `pgutil` binary: parse the command line, run it, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pgutil::Cli::parse();
    match pgutil::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = error.to_string();
            if !message.is_empty() {
                eprintln!("{message}");
            }
            // ok: exit codes are 1 or 2, which fit in a u8.
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
        }
    }
}
