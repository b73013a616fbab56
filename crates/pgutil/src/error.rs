//! The one error type of the commands and its exit codes.

use std::fmt;

/// Why a command failed. The message is the complete line shown on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Bad input found before any request was made.
    Usage(String),
    /// The command could not do its work (server, network, files).
    Failed(String),
    /// Failed, and the details were already written to stderr.
    Reported,
}

impl Error {
    /// The process exit code for this error: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Failed(_) | Error::Reported => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) | Error::Failed(message) => f.write_str(message),
            Error::Reported => Ok(()),
        }
    }
}

impl std::error::Error for Error {}
