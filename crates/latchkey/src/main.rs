//! The `latchkey` binary: parses arguments, runs the server, maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use latchkey::config::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = latchkey::logging::init(); // dropped last, after the runtime: flushes
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result =
        match cli.command {
            Command::Serve(args) => runtime.block_on(latchkey::server::serve(args)),
            Command::RotateSecret { data_dir } => {
                latchkey::server::rotate_secret(&data_dir).map(|()| {
                    println!("rotated the installation secret; restart latchkey to use it");
                })
            }
            Command::CheckConfig(args) => runtime
                .block_on(latchkey::check::check_config(&args))
                .map(|notes| {
                    for note in notes {
                        eprintln!("note: {note}");
                    }
                    println!("configuration ok");
                }),
            Command::ResetAdmin(args) => runtime.block_on(latchkey::server::reset_admin(args)),
        };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
