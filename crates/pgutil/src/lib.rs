//! `pgutil`: a drop-in Rust client for the documented `pgutil` commands that
//! manage API keys, users and sources of a ProGet-compatible server such as
//! `latchkey`.
//!
//! Results go to stdout, everything else to stderr; see [`run`].

#![warn(missing_docs)]

pub mod apikeys;
pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod health;
pub mod listing;
pub mod output;
pub mod prompt;
pub mod security;
pub mod sources;

pub use cli::Cli;
pub use error::Error;

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        cli::Command::Apikeys(command) => apikeys::run(command),
        cli::Command::Sources(command) => sources::run(command),
        cli::Command::Health(server) => health::run(&server),
        cli::Command::Security(command) => security::run(command),
        cli::Command::Audit(command) => audit::run(command),
    }
}
