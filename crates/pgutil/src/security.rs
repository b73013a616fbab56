//! `pgutil security users create|list|delete`.

use std::io::IsTerminal;

use proget_api::{paths, UserEdit, UserInfo};
use reqwest::Method;

use crate::cli::{SecurityCommand, UsersCommand, UsersCreateArgs};
use crate::client::{resolve, Client};
use crate::error::Error;
use crate::output::{print, printable, user_list};

/// Runs a `security` command.
pub fn run(command: SecurityCommand) -> Result<(), Error> {
    let SecurityCommand::Users(users) = command;
    match users {
        UsersCommand::Create(args) => create(args),
        UsersCommand::List(args) => {
            let client = Client::new(&resolve(&args.server)?)?;
            let query: Vec<(&str, &str)> = args
                .search_term
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| ("search-term", t))
                .into_iter()
                .collect();
            let users: Vec<UserInfo> = client
                .get_json(paths::USERS_LIST, &query)
                .map_err(|e| e.describe("listing users"))?;
            print(&user_list(&users))
        }
        UsersCommand::Delete(args) => {
            let client = Client::new(&resolve(&args.server.into())?)?;
            print(&format!("Deleting user {}...\n", printable(&args.username)))?;
            client
                .send(
                    Method::DELETE,
                    paths::USERS_DELETE,
                    &[("user", &args.username)],
                )
                .map_err(|e| e.describe(&format!("deleting user {}", printable(&args.username))))?;
            print("User deleted.\n")
        }
    }
}

/// `security users create`: `POST /api/security/users/add`.
fn create(args: UsersCreateArgs) -> Result<(), Error> {
    let client = Client::new(&resolve(&args.server.clone().into())?)?;
    let password = match args.password {
        Some(password) => password,
        None => prompt_new_password()?,
    };
    if password.is_empty() {
        return Err(Error::Usage(
            "error: the password is empty; give a non-empty --password".into(),
        ));
    }
    let display_name = args.displayname.unwrap_or_else(|| args.username.clone());
    print(&format!(
        "Creating user {} ({})...\n",
        printable(&args.username),
        printable(&display_name)
    ))?;
    let user = UserEdit {
        name: args.username.clone(),
        display_name: Some(display_name),
        email: args.email,
        password: Some(password),
        groups: args.groups,
    };
    client
        .post_json_ignoring_answer(paths::USERS_ADD, &user)
        .map_err(|e| e.describe(&format!("creating user {}", printable(&args.username))))?;
    print("User created.\n")
}

/// Asks for the new password twice on the terminal, without echo.
fn prompt_new_password() -> Result<String, Error> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "error: no --password given and standard input is not a terminal to ask for one; give --password=PASSWORD".into(),
        ));
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt).map_err(|e| {
            Error::Failed(format!("error: could not read the password from the terminal ({e}); give --password=PASSWORD"))
        })
    };
    let password = ask("Enter password for user: ")?;
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
