//! `pgutil security users create|list|delete|passwd`,
//! `security permissions list|add|delete`,
//! `security groups list|add|edit|delete|add-member|remove-member` and
//! `security tasks list`.

use std::io::IsTerminal;

use proget_api::{paths, GroupInfo, PermissionInfo, TaskInfo, UserEdit, UserInfo};
use reqwest::Method;

use crate::cli::{
    GroupMemberArgs, GroupsCommand, PermissionsAddArgs, PermissionsCommand, SecurityCommand,
    ServerOptions, TasksCommand, UsersCommand, UsersCreateArgs, UsersPasswdArgs,
};
use crate::client::{resolve, ApiError, Client};
use crate::error::Error;
use crate::listing;
use crate::output::{
    group_list, permission_list, permission_text, print, printable, task_list, user_list,
};
use crate::prompt;

/// Runs a `security` command.
pub fn run(command: SecurityCommand) -> Result<(), Error> {
    match command {
        SecurityCommand::Users(users) => run_users(users),
        SecurityCommand::Permissions(permissions) => run_permissions(permissions),
        SecurityCommand::Groups(groups) => run_groups(groups),
        SecurityCommand::Tasks(TasksCommand::List(args)) => listing::show::<TaskInfo>(
            &client(&args.server)?,
            paths::TASKS_LIST,
            &[],
            args.output,
            "listing tasks",
            task_list,
        ),
    }
}

fn client(server: &ServerOptions) -> Result<Client, Error> {
    Client::new(&resolve(server)?)
}

/// Runs a `security users` command.
fn run_users(users: UsersCommand) -> Result<(), Error> {
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
            listing::show::<UserInfo>(
                &client,
                paths::USERS_LIST,
                &query,
                args.output,
                "listing users",
                user_list,
            )
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

/// Runs a `security permissions` command.
fn run_permissions(command: PermissionsCommand) -> Result<(), Error> {
    match command {
        PermissionsCommand::List(args) => listing::show::<PermissionInfo>(
            &client(&args.server)?,
            paths::PERMISSIONS_LIST,
            &[],
            args.output,
            "listing permissions",
            permission_list,
        ),
        PermissionsCommand::Add(args) => add_permission(args),
        PermissionsCommand::Delete(args) => {
            let client = client(&args.server)?;
            let id = args.id.to_string();
            print(&format!("Deleting permission (id={id})...\n"))?;
            client
                .send(Method::POST, paths::PERMISSIONS_DELETE, &[("id", &id)])
                .map_err(|e| {
                    if e.status() == Some(404) {
                        Error::Failed(format!(
                            "error: permission {id} was not found (404){}; see the ids with `pgutil security permissions list`",
                            e.server_said()
                        ))
                    } else {
                        e.describe(&format!("deleting permission {id}"))
                    }
                })?;
            print("Permission deleted.\n")
        }
    }
}

/// `security permissions add`: `POST /api/security/permissions/add`.
fn add_permission(args: PermissionsAddArgs) -> Result<(), Error> {
    let client = client(&args.server)?;
    let permission = PermissionInfo {
        id: None,
        user: args.user,
        group: args.group,
        task: args.task,
        feed: args.feed,
        feed_group: args.feed_group,
        deny: args.deny,
    };
    print(&format!(
        "Adding permission ({})...\n",
        permission_text(&permission)
    ))?;
    let stored: PermissionInfo = client
        .post_json(paths::PERMISSIONS_ADD, &permission)
        .map_err(|e| e.describe("adding the permission"))?;
    let id = stored
        .id
        .map_or_else(|| "unknown".into(), |id| id.to_string());
    print(&format!("Permission added (id={id}).\n"))
}

/// Runs a `security groups` command.
fn run_groups(command: GroupsCommand) -> Result<(), Error> {
    match command {
        GroupsCommand::List(args) => listing::show::<GroupInfo>(
            &client(&args.server)?,
            paths::GROUPS_LIST,
            &[],
            args.output,
            "listing groups",
            group_list,
        ),
        GroupsCommand::Add(args) => {
            let client = client(&args.server)?;
            let name = printable(&args.name);
            print(&format!("Creating group {name}...\n"))?;
            let group = GroupInfo {
                name: args.name,
                members: args.members.map(|m| m.0).unwrap_or_default(),
            };
            client
                .post_json_ignoring_answer(paths::GROUPS_ADD, &group)
                .map_err(|e| e.describe(&format!("creating group {name}")))?;
            print("Group created.\n")
        }
        GroupsCommand::Edit(args) => {
            let client = client(&args.server)?;
            let name = printable(&args.name);
            print(&format!("Setting the members of group {name}...\n"))?;
            let group = GroupInfo {
                name: args.name,
                members: args.members.0,
            };
            edit_group(
                &client,
                &group,
                &format!("setting the members of group {name}"),
            )?;
            print("Group changed.\n")
        }
        GroupsCommand::Delete(args) => {
            let client = client(&args.server)?;
            let name = printable(&args.name);
            print(&format!("Deleting group {name}...\n"))?;
            client
                .send(Method::POST, paths::GROUPS_DELETE, &[("group", &args.name)])
                .map_err(|e| e.describe(&format!("deleting group {name}")))?;
            print("Group deleted.\n")
        }
        GroupsCommand::AddMember(args) => change_member(args, true),
        GroupsCommand::RemoveMember(args) => change_member(args, false),
    }
}

fn list_groups(client: &Client) -> Result<Vec<GroupInfo>, Error> {
    client
        .get_json(paths::GROUPS_LIST, &[])
        .map_err(|e| e.describe("listing groups"))
}

/// `POST /api/security/groups/edit`; a `404` says the group does not exist.
fn edit_group(client: &Client, group: &GroupInfo, action: &str) -> Result<(), Error> {
    client
        .post_json_ignoring_answer(paths::GROUPS_EDIT, group)
        .map_err(|e: ApiError| {
            if e.status() == Some(404) {
                group_not_found(&group.name)
            } else {
                e.describe(action)
            }
        })
}

fn group_not_found(name: &str) -> Error {
    Error::Failed(format!(
        "error: group {} was not found; see the groups with `pgutil security groups list`",
        printable(name)
    ))
}

/// Names compare case-insensitively, as on the server.
fn same_name(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

/// `groups add-member` / `remove-member`: reads the group's members, then
/// writes them back with the user added or removed.
fn change_member(args: GroupMemberArgs, add: bool) -> Result<(), Error> {
    let client = client(&args.server)?;
    let (user, name) = (printable(&args.user), printable(&args.name));
    print(&if add {
        format!("Adding user {user} to group {name}...\n")
    } else {
        format!("Removing user {user} from group {name}...\n")
    })?;
    let mut group = list_groups(&client)?
        .into_iter()
        .find(|g| same_name(&g.name, &args.name))
        .ok_or_else(|| group_not_found(&args.name))?;
    let member = group.members.iter().any(|m| same_name(m, &args.user));
    if member == add {
        return print(if add {
            "Already a member; nothing changed.\n"
        } else {
            "Not a member; nothing changed.\n"
        });
    }
    if add {
        group.members.push(args.user.clone());
    } else {
        group.members.retain(|m| !same_name(m, &args.user));
    }
    let action = if add {
        format!("adding user {user} to group {name}")
    } else {
        format!("removing user {user} from group {name}")
    };
    edit_group(&client, &group, &action)?;
    print(if add {
        "User added.\n"
    } else {
        "User removed.\n"
    })
}
