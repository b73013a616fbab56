//! Command-line grammar (clap derive). Every value that can be checked without
//! a server is checked here, so that bad input is a usage error (exit 2) before
//! any request is made.

use clap::{ArgGroup, Args, Parser, Subcommand};
use proget_api::{Expiration, Logging, PackagePermission, SystemApi};

/// `pgutil`: a drop-in client for ProGet's API-key, sources, health and security commands.
#[derive(Debug, Parser)]
#[command(
    name = "pgutil",
    version,
    about = "Manages API keys, users, groups, permissions and sources of a ProGet-compatible server",
    arg_required_else_help = true,
    after_help = "Examples:
  $ pgutil sources add --name=Default --url=https://proget.corp.local/ --api-key=abc12345
  $ pgutil apikeys list
  $ pgutil apikeys delete --id=1000
  $ pgutil health --source=https://proget.corp.local/"
)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates, lists and deletes API keys.
    #[command(subcommand, arg_required_else_help = true)]
    Apikeys(ApiKeysCommand),
    /// Manages the sources (servers and credentials) in the config file.
    #[command(subcommand, arg_required_else_help = true)]
    Sources(SourcesCommand),
    /// Displays health and status information of a server.
    #[command(after_help = "Examples:
  $ pgutil health
  $ pgutil health --source=http://127.0.0.1:8624/")]
    Health(ServerOptions),
    /// Manages users, groups, permissions and tasks.
    #[command(subcommand, arg_required_else_help = true)]
    Security(SecurityCommand),
    /// Shows the server's audit trail: who changed what, and when.
    #[command(subcommand, arg_required_else_help = true)]
    Audit(crate::audit::AuditCommand),
}

/// Where to send a request and with which credential; shared by every command
/// that talks to a server.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerOptions {
    /// Named source from the config file, or a server URL (default: the source named Default).
    #[arg(long, value_name = "NAME|URL")]
    pub source: Option<String>,
    /// API key to authenticate with (overrides the source's credential).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// User name to authenticate with (overrides the source's credential).
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// Password of --username (asked for on a terminal when absent).
    #[arg(long, value_name = "PASSWORD", requires = "username")]
    pub password: Option<String>,
}

/// `--json` for a command that lists: flatten it into the command's options
/// and hand it to [`crate::listing::show`].
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonOption {
    /// Print the list as JSON (the array exactly as the server sent it) instead of text; for scripts and jq.
    #[arg(long)]
    pub json: bool,
}

/// Options of a command that lists from a server: server, credential and `--json`.
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
    /// Text or JSON.
    #[command(flatten)]
    pub output: JsonOption,
}

/// `pgutil apikeys …`
#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Creates an API key; the key is the only thing written to stdout.
    #[command(subcommand, arg_required_else_help = true)]
    Create(CreateCommand),
    /// Lists API keys.
    #[command(after_help = "Examples:
  $ pgutil apikeys list
  $ pgutil apikeys list --source=https://proget.corp.local/ --api-key=abc12345
  $ pgutil apikeys list --json | jq '.[].id'")]
    List(ListArgs),
    /// Deletes an API key.
    #[command(after_help = "Examples:
  $ pgutil apikeys delete --id=1000
  $ pgutil apikeys delete --id=1000 --source=https://proget.corp.local/ --username=Admin --password=secret

Find the id of a key with `pgutil apikeys list`.")]
    Delete(DeleteArgs),
    /// Gives an API key a new text (same id and permissions); the new key is the only thing written to stdout.
    #[command(after_help = "Examples:
  $ pgutil apikeys rotate --id=1000
  $ KEY=$(pgutil apikeys rotate --id=1000 --grace=3600)

Without --grace the old text stops working at once; with it, after that many seconds.")]
    Rotate(RotateArgs),
    /// Shows a key's access log, newest first (keys whose logging is not none).
    #[command(after_help = "Examples:
  $ pgutil apikeys logs --id=1000
  $ pgutil apikeys logs --id=1000 --limit=20 --bodies
  $ pgutil apikeys logs --id=1000 --json | jq '.[].status'")]
    Logs(LogsArgs),
}

/// Options of `apikeys logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Id of the API key whose log to show.
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    pub id: i32,
    /// Most entries to show (1 to 1000; the server's default is 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Show the recorded request and response bodies under each entry.
    #[arg(long)]
    pub bodies: bool,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
    /// Text or JSON.
    #[command(flatten)]
    pub output: JsonOption,
}

/// Options of `apikeys delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Id of the API key to delete.
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    pub id: i32,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// Options of `apikeys rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Id of the API key to rotate.
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    pub id: i32,
    /// Seconds the old text keeps working (0 to 86400; default 0: it stops at once).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(0..=86_400))]
    pub grace: Option<u32>,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// `pgutil apikeys create …`
#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Creates a system API key.
    #[command(after_help = "Examples:
  $ pgutil apikeys create system
  $ pgutil apikeys create system --name=\"SBOM uploads\" --apis=sca,sbom-upload --expiration=2027-08-01
  $ KEY=$(pgutil apikeys create system --apis=feeds)")]
    System(SystemArgs),
    /// Creates a feed API key for one feed or feed group.
    #[command(after_help = "Examples:
  $ pgutil apikeys create feed --feed=public-npm --permissions=view,add --name=\"Build server\"
  $ pgutil apikeys create feed --group=internal --logging=both")]
    Feed(FeedArgs),
    /// Creates a personal API key that acts as a user.
    #[command(after_help = "Examples:
  $ pgutil apikeys create personal --user=jsmith --name=laptop
  $ pgutil apikeys create personal --username=jsmith --password=secret")]
    Personal(PersonalArgs),
}

/// Options every `apikeys create` command takes.
#[derive(Debug, Clone, Args)]
pub struct CommonKeyArgs {
    /// Key text to use (generated by the server when absent; the server may forbid custom keys).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Display name of the key.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Description of the key.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Expiration date: YYYY-MM-DD, YYYY/MM/DD or an ISO 8601 date-time.
    #[arg(long, value_name = "DATE", value_parser = parse_expiration)]
    pub expiration: Option<Expiration>,
    /// Request/response logging for the key: none, request, response or both.
    #[arg(long, value_name = "LOGGING", default_value = "none", value_parser = parse_logging)]
    pub logging: Logging,
}

/// Options of `apikeys create system`.
#[derive(Debug, Args)]
pub struct SystemArgs {
    /// Comma-separated APIs: full-control, or any of feeds, sca, sbom-upload.
    #[arg(long, value_name = "APIS", default_value = "full-control", value_parser = parse_system_apis)]
    pub apis: SystemApis,
    /// Options every key type takes.
    #[command(flatten)]
    pub key: CommonKeyArgs,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// Options of `apikeys create feed`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").args(["feed", "group"]).required(true).multiple(false)))]
pub struct FeedArgs {
    /// Feed the key acts on (exactly one of --feed and --group).
    #[arg(long, value_name = "NAME")]
    pub feed: Option<String>,
    /// Feed group the key acts on (exactly one of --feed and --group).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Comma-separated package permissions: any of view, add, promote, delete.
    #[arg(
        long,
        value_name = "PERMISSIONS",
        default_value = "view,add,promote,delete",
        value_parser = parse_permissions
    )]
    pub permissions: Permissions,
    /// Options every key type takes.
    #[command(flatten)]
    pub key: CommonKeyArgs,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// Options of `apikeys create personal`.
#[derive(Debug, Args)]
pub struct PersonalArgs {
    /// User the key acts as (default: --username, or the source's user name).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Options every key type takes.
    #[command(flatten)]
    pub key: CommonKeyArgs,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// A validated, non-empty `--apis` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemApis(pub Vec<SystemApi>);

/// A validated, non-empty `--permissions` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions(pub Vec<PackagePermission>);

/// `pgutil sources …`
#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Adds (or replaces) a source in the config file.
    #[command(after_help = "Examples:
  $ pgutil sources add --name=Default --url=https://proget.corp.local/ --api-key=abc12345
  $ pgutil sources add --name=main --url=https://inedo.corp.test/ --username=jsmith --password=secret

Credentials are obfuscated in the config file, not encrypted: protect the file.")]
    Add(SourcesAddArgs),
    /// Lists the sources in the config file (never their secrets).
    #[command(after_help = "Examples:
  $ pgutil sources list
  $ pgutil sources list --json | jq -r '.[].name'

--json prints an array of {name, url, defaultFeed, username, credential}:
credential is \"apiKey\", \"user\" or null; no secret is ever printed.")]
    List(SourcesListArgs),
    /// Removes a source from the config file.
    #[command(after_help = "Examples:
  $ pgutil sources remove --name=main")]
    Remove(SourcesRemoveArgs),
    /// Contacts each source (or one) and reports its version.
    #[command(after_help = "Examples:
  $ pgutil sources test
  $ pgutil sources test --name=Default")]
    Test(SourcesTestArgs),
}

/// Options of `sources add`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("credential").args(["api_key", "username"]).multiple(false)))]
pub struct SourcesAddArgs {
    /// Name of the source; unique, case-insensitive.
    #[arg(long, value_name = "NAME", default_value = "Default")]
    pub name: String,
    /// URL of the server.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Default feed for feed-specific commands.
    #[arg(long, value_name = "FEED")]
    pub feed: Option<String>,
    /// API key to store.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// User name to store.
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// Password to store with --username (asked for on a terminal when absent).
    #[arg(long, value_name = "PASSWORD", requires = "username")]
    pub password: Option<String>,
    /// Store the API key or password in plain text instead of obfuscated.
    #[arg(long)]
    pub plain_text: bool,
}

/// Options of `sources list`.
#[derive(Debug, Args)]
pub struct SourcesListArgs {
    /// Print the sources as a JSON array (never their secrets) instead of text; for scripts and jq.
    #[arg(long)]
    pub json: bool,
}

/// Options of `sources remove`.
#[derive(Debug, Args)]
pub struct SourcesRemoveArgs {
    /// Name of the source to remove.
    #[arg(long, value_name = "NAME")]
    pub name: String,
}

/// Options of `sources test`.
#[derive(Debug, Args)]
pub struct SourcesTestArgs {
    /// Name of the source to test (default: all).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// `pgutil security …`
#[derive(Debug, Subcommand)]
pub enum SecurityCommand {
    /// Creates, lists and deletes users and sets their passwords.
    #[command(subcommand, arg_required_else_help = true)]
    Users(UsersCommand),
    /// Lists, adds and deletes permissions: who may do which task where.
    #[command(subcommand, arg_required_else_help = true)]
    Permissions(PermissionsCommand),
    /// Lists, creates, changes and deletes groups of users.
    #[command(subcommand, arg_required_else_help = true)]
    Groups(GroupsCommand),
    /// Lists the built-in tasks and the feed permissions each grants.
    #[command(subcommand, arg_required_else_help = true)]
    Tasks(TasksCommand),
}

/// `pgutil security permissions …`
#[derive(Debug, Subcommand)]
pub enum PermissionsCommand {
    /// Lists every permission, one line each, by id.
    #[command(after_help = "Examples:
  $ pgutil security permissions list
  2: allow Administer globally for group Administrators
  7: deny Publish Packages on feed npm-internal for user jsmith
  $ pgutil security permissions list --json")]
    List(ListArgs),
    /// Grants (or with --deny, denies) a task to a user or group, globally or on one feed or feed group.
    #[command(after_help = "Examples:
  $ pgutil security permissions add --group=Developers --task=\"Publish Packages\" --feed=npm-internal
  $ pgutil security permissions add --user=jsmith --task=\"Publish Packages\" --feed=npm-internal --deny
  $ pgutil security permissions add --user=Anonymous --task=\"View & Download Packages\" --feed-group=public

See the task names with `pgutil security tasks list`.")]
    Add(PermissionsAddArgs),
    /// Deletes a permission.
    #[command(after_help = "Examples:
  $ pgutil security permissions delete --id=7

Find the id of a permission with `pgutil security permissions list`.")]
    Delete(PermissionsDeleteArgs),
}

/// Options of `security permissions add`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("subject").args(["user", "group"]).required(true).multiple(false)))]
#[command(group(ArgGroup::new("scope").args(["feed", "feed_group"]).multiple(false)))]
pub struct PermissionsAddArgs {
    /// User the permission applies to (exactly one of --user and --group; Anonymous means no credential).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Group the permission applies to (exactly one of --user and --group).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Task granted or denied, e.g. "Publish Packages" (see `pgutil security tasks list`).
    #[arg(long, value_name = "TASK")]
    pub task: String,
    /// Only on this feed (default: globally; at most one of --feed and --feed-group).
    #[arg(long, value_name = "NAME")]
    pub feed: Option<String>,
    /// Only on this feed group (default: globally; at most one of --feed and --feed-group).
    #[arg(long, value_name = "NAME")]
    pub feed_group: Option<String>,
    /// Deny the task instead of granting it (a deny wins over any grant).
    #[arg(long)]
    pub deny: bool,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// Options of `security permissions delete`.
#[derive(Debug, Args)]
pub struct PermissionsDeleteArgs {
    /// Id of the permission to delete.
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    pub id: i64,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// `pgutil security groups …`
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Lists every group and its members, one line each.
    #[command(after_help = "Examples:
  $ pgutil security groups list
  Administrators: Admin
  Developers: alice, bob
  $ pgutil security groups list --json")]
    List(ListArgs),
    /// Creates a group.
    #[command(after_help = "Examples:
  $ pgutil security groups add --name=Developers
  $ pgutil security groups add --name=Developers --members=alice,bob")]
    Add(GroupsAddArgs),
    /// Replaces the members of a group.
    #[command(after_help = "Examples:
  $ pgutil security groups edit --name=Developers --members=alice,carol
  $ pgutil security groups edit --name=Developers --members=

--members replaces every member; an empty value leaves the group without members.")]
    Edit(GroupsEditArgs),
    /// Deletes a group and its permissions.
    #[command(after_help = "Examples:
  $ pgutil security groups delete --name=Developers")]
    Delete(GroupsDeleteArgs),
    /// Adds one user to a group.
    #[command(after_help = "Examples:
  $ pgutil security groups add-member --name=Developers --user=alice

Reads the group's members, then writes them back with the user added: a
concurrent change of the same group in between is overwritten.")]
    AddMember(GroupMemberArgs),
    /// Removes one user from a group.
    #[command(after_help = "Examples:
  $ pgutil security groups remove-member --name=Developers --user=alice

Reads the group's members, then writes them back without the user: a
concurrent change of the same group in between is overwritten.")]
    RemoveMember(GroupMemberArgs),
}

/// Options of `security groups add`.
#[derive(Debug, Args)]
pub struct GroupsAddArgs {
    /// Name of the new group.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Comma-separated user names of its members (default: none).
    #[arg(long, value_name = "USERS", value_parser = parse_members)]
    pub members: Option<Members>,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// Options of `security groups edit`.
#[derive(Debug, Args)]
pub struct GroupsEditArgs {
    /// Name of the group.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Comma-separated user names that replace the group's members (empty for none).
    #[arg(long, value_name = "USERS", value_parser = parse_members)]
    pub members: Members,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// Options of `security groups delete`.
#[derive(Debug, Args)]
pub struct GroupsDeleteArgs {
    /// Name of the group to delete.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// Options of `security groups add-member` and `remove-member`.
#[derive(Debug, Args)]
pub struct GroupMemberArgs {
    /// Name of the group.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Name of the user to add or remove.
    #[arg(long, value_name = "NAME")]
    pub user: String,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// A `--members` value: user names, possibly none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members(pub Vec<String>);

/// `pgutil security tasks …`
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Lists the tasks and the feed permissions each grants, one line each.
    #[command(after_help = "Examples:
  $ pgutil security tasks list
  Publish Packages: view, add
  $ pgutil security tasks list --json")]
    List(ListArgs),
}

/// Where to send a request when `--username`/`--password` name the user being
/// managed rather than the caller. A pseudo-key `--api-key=USER:PASSWORD` still works.
#[derive(Debug, Clone, Default, Args)]
pub struct SourceOnlyOptions {
    /// Named source from the config file, or a server URL (default: the source named Default).
    #[arg(long, value_name = "NAME|URL")]
    pub source: Option<String>,
    /// API key (or USER:PASSWORD) to authenticate with (overrides the source's credential).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
}

impl From<SourceOnlyOptions> for ServerOptions {
    fn from(o: SourceOnlyOptions) -> Self {
        ServerOptions {
            source: o.source,
            api_key: o.api_key,
            username: None,
            password: None,
        }
    }
}

/// `pgutil security users …`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Creates a user; prompts for the password when --password is absent.
    #[command(after_help = "Examples:
  $ pgutil security users create --username=jsmith --displayname=\"John Smith\" --email=jsmith@kramerica.com
  $ pgutil security users create --username=ci --password=secret --groups=Developers --api-key=Admin:adminpassword

Here --username and --password describe the new user; authenticate with the
source's credential or --api-key (which also takes USER:PASSWORD).")]
    Create(UsersCreateArgs),
    /// Lists users.
    #[command(after_help = "Examples:
  $ pgutil security users list
  $ pgutil security users list --search-term=smith
  $ pgutil security users list --json")]
    List(UsersListArgs),
    /// Deletes a user and their personal API keys.
    #[command(after_help = "Examples:
  $ pgutil security users delete --username=jsmith

Here --username names the user to delete; authenticate with the source's
credential or --api-key (which also takes USER:PASSWORD).")]
    Delete(UsersDeleteArgs),
    /// Sets a user's password: asked twice on a terminal, else the first line of stdin.
    #[command(after_help = "Examples:
  $ pgutil security users passwd --username=jsmith
  $ printf '%s\\n' \"$NEW_PASSWORD\" | pgutil security users passwd --username=ci --api-key=Admin:adminpassword

Here --username names the user whose password changes; authenticate with the
source's credential or --api-key (which also takes USER:PASSWORD).")]
    Passwd(UsersPasswdArgs),
}

/// Options of `security users passwd`.
#[derive(Debug, Args)]
pub struct UsersPasswdArgs {
    /// Login name of the user whose password changes.
    #[arg(long, value_name = "NAME")]
    pub username: String,
    /// Server and credential.
    #[command(flatten)]
    pub server: SourceOnlyOptions,
}

/// Options of `security users create`.
#[derive(Debug, Args)]
pub struct UsersCreateArgs {
    /// Login name of the new user.
    #[arg(long, value_name = "NAME")]
    pub username: String,
    /// Display name of the new user (default: the login name).
    #[arg(long, value_name = "NAME")]
    pub displayname: Option<String>,
    /// E-mail address of the new user.
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// Password of the new user (prompted for when absent and stdin is a terminal).
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Comma-separated groups of the new user (Administrators makes an administrator).
    #[arg(long, value_name = "GROUPS", value_delimiter = ',')]
    pub groups: Option<Vec<String>>,
    /// Server and credential.
    #[command(flatten)]
    pub server: SourceOnlyOptions,
}

/// Options of `security users list`.
#[derive(Debug, Args)]
pub struct UsersListArgs {
    /// Only users whose name or display name contains this text.
    #[arg(long, value_name = "TEXT")]
    pub search_term: Option<String>,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
    /// Text or JSON.
    #[command(flatten)]
    pub output: JsonOption,
}

/// Options of `security users delete`.
#[derive(Debug, Args)]
pub struct UsersDeleteArgs {
    /// Login name of the user to delete.
    #[arg(long, value_name = "NAME")]
    pub username: String,
    /// Server and credential.
    #[command(flatten)]
    pub server: SourceOnlyOptions,
}

/// Splits a comma-separated list, trimming entries and dropping empty ones.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Parses `--apis`: `full-control` alone, or a non-empty subset of the others.
pub fn parse_system_apis(value: &str) -> Result<SystemApis, String> {
    let mut apis = Vec::new();
    for item in split_list(value) {
        let api: SystemApi = item.parse().map_err(|_| {
            format!("\"{item}\" is not an API; use full-control, or any of feeds, sca, sbom-upload")
        })?;
        if !apis.contains(&api) {
            apis.push(api);
        }
    }
    if apis.is_empty() {
        return Err(
            "give at least one API: full-control, or any of feeds, sca, sbom-upload".into(),
        );
    }
    if apis.len() > 1 && apis.contains(&SystemApi::FullControl) {
        return Err("full-control already includes every API; give it alone".into());
    }
    Ok(SystemApis(apis))
}

/// Parses `--permissions`: a non-empty subset of view, add, promote, delete.
pub fn parse_permissions(value: &str) -> Result<Permissions, String> {
    let mut permissions = Vec::new();
    for item in split_list(value) {
        let permission: PackagePermission = item.parse().map_err(|_| {
            format!("\"{item}\" is not a permission; use any of view, add, promote, delete")
        })?;
        if !permissions.contains(&permission) {
            permissions.push(permission);
        }
    }
    if permissions.is_empty() {
        return Err("give at least one of view, add, promote, delete".into());
    }
    Ok(Permissions(permissions))
}

/// Parses `--members`: comma-separated names, blanks dropped; empty for none.
pub fn parse_members(value: &str) -> Result<Members, String> {
    let mut members: Vec<String> = Vec::new();
    for name in split_list(value) {
        if !members
            .iter()
            .any(|m| m.to_lowercase() == name.to_lowercase())
        {
            members.push(name.to_owned());
        }
    }
    Ok(Members(members))
}

/// Parses `--logging`.
pub fn parse_logging(value: &str) -> Result<Logging, String> {
    value.trim().parse().map_err(|_| {
        format!("\"{value}\" is not a logging mode; use none, request, response or both")
    })
}

/// Parses `--expiration` with the same rules as the server.
pub fn parse_expiration(value: &str) -> Result<Expiration, String> {
    Expiration::parse(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    /// An expiration the request body could not carry (found by fuzzing
    /// the server's reader of the same type) is a usage error.
    #[test]
    fn an_expiration_outside_years_0000_to_9999_is_refused() {
        assert!(parse_expiration("2027-08-01").is_ok());
        for bad in ["-0001-01-01", "9999-12-31T23:59:59-01:00"] {
            assert!(parse_expiration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn apis_take_full_control_alone_or_a_subset_of_the_rest() {
        assert_eq!(
            parse_system_apis("full-control"),
            Ok(SystemApis(vec![SystemApi::FullControl]))
        );
        assert_eq!(
            parse_system_apis("feeds, sbom-upload"),
            Ok(SystemApis(vec![SystemApi::Feeds, SystemApi::SbomUpload]))
        );
        assert!(parse_system_apis("").is_err());
        assert!(parse_system_apis("feeds,admin").is_err());
        assert!(parse_system_apis("full-control,sca").is_err());
    }

    #[test]
    fn permissions_are_a_non_empty_subset() {
        assert_eq!(
            parse_permissions("view,add,view"),
            Ok(Permissions(vec![
                PackagePermission::View,
                PackagePermission::Add
            ]))
        );
        assert!(parse_permissions(",").is_err());
        assert!(parse_permissions("view,own").is_err());
    }

    #[test]
    fn id_takes_both_option_forms_and_rejects_non_integers() {
        for args in [
            ["pgutil", "apikeys", "delete", "--id=1000"].as_slice(),
            &["pgutil", "apikeys", "delete", "--id", "1000"],
        ] {
            let cli = Cli::try_parse_from(args).map_err(|e| e.to_string());
            assert!(matches!(
                cli,
                Ok(Cli {
                    command: Command::Apikeys(ApiKeysCommand::Delete(DeleteArgs { id: 1000, .. }))
                })
            ));
        }
        for bad in ["--id=abc", "--id=1e3", "--id=10.0", "--id=2147483648"] {
            assert!(
                Cli::try_parse_from(["pgutil", "apikeys", "delete", bad]).is_err(),
                "{bad}"
            );
        }
        assert!(Cli::try_parse_from(["pgutil", "apikeys", "delete"]).is_err());
    }

    #[test]
    fn feed_keys_need_exactly_one_of_feed_and_group() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["pgutil", "apikeys", "create", "feed"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).is_ok()
        };
        assert!(parse(&["--feed=npm"]));
        assert!(parse(&["--group=internal"]));
        assert!(!parse(&[]));
        assert!(!parse(&["--feed=npm", "--group=internal"]));
    }

    #[test]
    fn permissions_need_one_subject_and_at_most_one_scope() {
        let parse = |extra: &[&str]| {
            let mut args = vec![
                "pgutil",
                "security",
                "permissions",
                "add",
                "--task=Administer",
            ];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).is_ok()
        };
        assert!(parse(&["--user=jsmith"]));
        assert!(parse(&["--group=Developers", "--feed=npm", "--deny"]));
        assert!(parse(&["--group=Developers", "--feed-group=public"]));
        assert!(!parse(&[]));
        assert!(!parse(&["--user=a", "--group=b"]));
        assert!(!parse(&["--user=a", "--feed=f", "--feed-group=g"]));
        assert!(
            Cli::try_parse_from(["pgutil", "security", "permissions", "add", "--user=a"]).is_err(),
            "--task is required"
        );
    }

    #[test]
    fn members_are_a_list_possibly_empty() {
        assert_eq!(
            parse_members("alice, bob,,ALICE"),
            Ok(Members(vec!["alice".into(), "bob".into()]))
        );
        assert_eq!(parse_members(""), Ok(Members(vec![])));
        let edit = Cli::try_parse_from([
            "pgutil",
            "security",
            "groups",
            "edit",
            "--name=D",
            "--members=",
        ]);
        assert!(edit.is_ok(), "{edit:?}");
        assert!(
            Cli::try_parse_from(["pgutil", "security", "groups", "edit", "--name=D"]).is_err(),
            "edit needs --members"
        );
    }

    #[test]
    fn password_needs_a_username() {
        assert!(Cli::try_parse_from(["pgutil", "apikeys", "list", "--password=x"]).is_err());
        assert!(
            Cli::try_parse_from(["pgutil", "apikeys", "list", "--username=u", "--password=x"])
                .is_ok()
        );
    }
}
