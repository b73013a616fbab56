//! `pgutil security users create|list|delete|passwd`.

use std::io::IsTerminal;

use proget_api::{paths, UserEdit, UserInfo};
use reqwest::Method;

use crate::cli::{SecurityCommand, UsersCommand, UsersCreateArgs, UsersPasswdArgs};
use crate::client::{resolve, Client};
use crate::error::Error;
use crate::output::{print, printable, user_list};
use crate::prompt;

/// Runs a `security` command.
pub fn run(command: SecurityCommand) -> Result<(), Error> {
    let SecurityCommand::Users(users) = command;
    match users {
        UsersCommand::Create(args) => create(args),
        UsersCommand::Passwd(args) => passwd(args),
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
        None => prompt_new_password(&args.username)?,
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

/// Asks for the new user's password twice on the terminal, without echo.
fn prompt_new_password(user: &str) -> Result<String, Error> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "error: no --password given and standard input is not a terminal to ask for one; give --password=PASSWORD".into(),
        ));
    }
    prompt::new_password_on_terminal(user)
}

/// `security users passwd`: `POST /api/security/users/edit` with only the new password.
fn passwd(args: UsersPasswdArgs) -> Result<(), Error> {
    let client = Client::new(&resolve(&args.server.into())?)?;
    let password = prompt::new_password(&args.username)?;
    let name = printable(&args.username);
    print(&format!("Changing the password of user {name}...\n"))?;
    let edit = UserEdit {
        name: args.username.clone(),
        password: Some(password),
        ..Default::default()
    };
    client
        .post_json_ignoring_answer(paths::USERS_EDIT, &edit)
        .map_err(|e| e.describe(&format!("changing the password of user {name}")))?;
    print("Password changed.\n")
}
