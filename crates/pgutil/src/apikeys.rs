//! `pgutil apikeys create|list|delete|rotate|logs`.

use proget_api::{paths, AccessLogEntry, ApiKeyInfo, ApiKeyType};
use reqwest::Method;

use crate::cli::{
    ApiKeysCommand, CommonKeyArgs, CreateCommand, DeleteArgs, ListArgs, LogsArgs, RotateArgs,
};
use crate::client::{resolve, Client};
use crate::error::Error;
use crate::listing;
use crate::output::{access_log, api_key_list, print};

/// Runs an `apikeys` command.
pub fn run(command: ApiKeysCommand) -> Result<(), Error> {
    match command {
        ApiKeysCommand::Create(create) => self::create(create),
        ApiKeysCommand::List(args) => list(&args),
        ApiKeysCommand::Delete(args) => delete(&args),
        ApiKeysCommand::Rotate(args) => rotate(&args),
        ApiKeysCommand::Logs(args) => logs(&args),
    }
}

/// `apikeys logs --id=N [--limit=N] [--bodies] [--json]`: `GET /api/api-keys/logs`.
fn logs(args: &LogsArgs) -> Result<(), Error> {
    let client = Client::new(&resolve(&args.server)?)?;
    let id = args.id.to_string();
    let limit = args.limit.map(|n| n.to_string());
    let mut query = vec![("id", id.as_str())];
    if let Some(n) = &limit {
        query.push(("limit", n));
    }
    listing::show::<AccessLogEntry>(
        &client,
        paths::API_KEYS_LOGS,
        &query,
        args.output,
        &format!("reading the access log of API key {id}"),
        |entries| access_log(args.id, entries, args.bodies),
    )
}

/// `apikeys delete --id=N`: `POST /api/api-keys/delete?id=N`.
fn delete(args: &DeleteArgs) -> Result<(), Error> {
    let client = Client::new(&resolve(&args.server)?)?;
    let id = args.id.to_string();
    print(&format!("Deleting API key (id={id})...\n"))?;
    client
        .send(Method::POST, paths::API_KEYS_DELETE, &[("id", &id)])
        .map_err(|e| {
            if e.status() == Some(404) {
                Error::Failed(format!(
                "error: API key {id} was not found (404){}; see the ids with `pgutil apikeys list`",
                e.server_said()
            ))
            } else {
                e.describe(&format!("deleting API key {id}"))
            }
        })?;
    print("API key deleted.\n")
}

/// `apikeys rotate --id=N [--grace=S]`: `POST /api/api-keys/rotate`; prints only the new key.
fn rotate(args: &RotateArgs) -> Result<(), Error> {
    let client = Client::new(&resolve(&args.server)?)?;
    let id = args.id.to_string();
    let grace = args.grace.map(|g| g.to_string());
    let mut query = vec![("id", id.as_str())];
    if let Some(g) = &grace {
        query.push(("grace", g));
    }
    let action = format!("rotating API key {id}");
    let rotated: ApiKeyInfo = client
        .post_query_json(paths::API_KEYS_ROTATE, &query)
        .map_err(|e| {
            if e.status() == Some(404) {
                Error::Failed(format!(
                    "error: API key {id} was not found (404){}; see the ids with `pgutil apikeys list`",
                    e.server_said()
                ))
            } else {
                e.describe(&action)
            }
        })?;
    match rotated.key.filter(|k| !k.is_empty()) {
        Some(key) => print(&format!("{key}\n")),
        None => Err(Error::Failed(format!(
            "error: {action}: the server did not return the new text; rotate the key again"
        ))),
    }
}

/// `apikeys list [--json]`: `GET /api/api-keys/list`.
fn list(args: &ListArgs) -> Result<(), Error> {
    let client = Client::new(&resolve(&args.server)?)?;
    listing::show::<ApiKeyInfo>(
        &client,
        paths::API_KEYS_LIST,
        &[],
        args.output,
        "listing API keys",
        api_key_list,
    )
}

/// `apikeys create system|feed|personal`: `POST /api/api-keys/create`; prints only the key.
fn create(command: CreateCommand) -> Result<(), Error> {
    let server = match &command {
        CreateCommand::System(args) => &args.server,
        CreateCommand::Feed(args) => &args.server,
        CreateCommand::Personal(args) => &args.server,
    };
    let target = resolve(server)?;
    let (kind, info) = match command {
        CreateCommand::System(args) => {
            let info = ApiKeyInfo {
                key_type: Some(ApiKeyType::System),
                system_apis: Some(args.apis.0),
                ..common(args.key)
            };
            ("system", info)
        }
        CreateCommand::Feed(args) => {
            let info = ApiKeyInfo {
                key_type: Some(ApiKeyType::Feed),
                feed: args.feed,
                feed_group: args.group,
                package_permissions: Some(args.permissions.0),
                ..common(args.key)
            };
            ("feed", info)
        }
        CreateCommand::Personal(args) => {
            let user = args
                .user
                .filter(|u| !u.is_empty())
                .or_else(|| target.credential.as_ref().and_then(|c| c.user_name()).map(str::to_owned))
                .ok_or_else(|| {
                    Error::Usage(
                        "error: personal keys need a user; give --user=NAME, or authenticate with --username/--password or a source that has a user name".into(),
                    )
                })?;
            let info = ApiKeyInfo {
                key_type: Some(ApiKeyType::Personal),
                user: Some(user),
                ..common(args.key)
            };
            ("personal", info)
        }
    };
    let client = Client::new(&target)?;
    let action = format!("creating a {kind} API key");
    let created: ApiKeyInfo = client
        .post_json(paths::API_KEYS_CREATE, &info)
        .map_err(|e| e.describe(&action))?;
    match created.key.filter(|k| !k.is_empty()) {
        Some(key) => print(&format!("{key}\n")),
        None => Err(Error::Failed(format!(
            "error: {action}: the server created key {} but did not return its text; delete it and try again",
            created.id.map_or_else(|| "(unknown id)".into(), |id| id.to_string())
        ))),
    }
}

/// The body fields every key type shares.
fn common(args: CommonKeyArgs) -> ApiKeyInfo {
    ApiKeyInfo {
        key: args.key,
        display_name: args.name,
        description: args.description,
        expiration: args.expiration,
        logging: Some(args.logging),
        ..Default::default()
    }
}
