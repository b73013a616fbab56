//! Passwords that are not on the command line: asked for on the terminal
//! (without echo), or read from standard input where a command says so.
//! Without a terminal a missing password is a usage error, never an empty one.

use std::io::{BufRead, IsTerminal, Read};

use crate::error::Error;
use crate::output::printable;

/// Longest password line read from standard input.
const MAX_LINE: u64 = 64 * 1024;

/// Whether standard input is a terminal to ask on.
fn on_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks once on the terminal for `user`'s password, to log in with. Without a
/// terminal, a usage error says what is `missing` (e.g. `--username=jsmith
/// without --password`) and gives the `advice`.
pub fn login_password(user: &str, missing: &str, advice: &str) -> Result<String, Error> {
    if !on_terminal() {
        return Err(Error::Usage(format!(
            "error: {missing} and standard input is not a terminal to ask for the password; {advice}"
        )));
    }
    let password = ask(&format!("Password for {}: ", printable(user)))?;
    if password.is_empty() {
        return Err(Error::Usage(
            "error: the password is empty; run the command again and type a non-empty password"
                .into(),
        ));
    }
    Ok(password)
}

/// Asks twice on the terminal for a new password of `user`; both must match.
pub fn new_password_on_terminal(user: &str) -> Result<String, Error> {
    let password = ask(&format!("New password for {}: ", printable(user)))?;
    if password.is_empty() {
        return Err(Error::Usage(
            "error: the password is empty; type a non-empty password".into(),
        ));
    }
    if ask("Confirm password: ")? != password {
        return Err(Error::Usage(
            "error: the passwords did not match; run the command again".into(),
        ));
    }
    Ok(password)
}

/// A new password for `user`: asked twice on a terminal, else the first line
/// of standard input without its line ending.
pub fn new_password(user: &str) -> Result<String, Error> {
    if on_terminal() {
        return new_password_on_terminal(user);
    }
    let mut line = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .map_err(|e| {
            Error::Failed(format!(
                "error: could not read the password from standard input ({e})"
            ))
        })?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    let password = String::from_utf8(line)
        .map_err(|_| Error::Usage("error: the password on standard input is not UTF-8".into()))?;
    if password.is_empty() {
        return Err(Error::Usage(
            "error: no password on standard input; write it as the first line".into(),
        ));
    }
    Ok(password)
}

/// Prompts on the terminal and reads a line without echo.
fn ask(prompt: &str) -> Result<String, Error> {
    rpassword::prompt_password(prompt).map_err(|e| {
        Error::Failed(format!(
            "error: could not read the password from the terminal ({e})"
        ))
    })
}
