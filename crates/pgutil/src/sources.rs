//! `pgutil sources add|list|remove|test`: the config file's named servers.

use proget_api::{paths, HealthInfo};

use crate::cli::{SourcesAddArgs, SourcesCommand};
use crate::client::{parse_server_url, Client, Target, URL_HINT};
use crate::config::{config_path, obfuscate, Config, Source};
use crate::error::Error;
use crate::output::{note, print, printable, source_list, source_list_json};
use crate::prompt::login_password;

/// Runs a `sources` command.
pub fn run(command: SourcesCommand) -> Result<(), Error> {
    let path = config_path()?;
    match command {
        SourcesCommand::Add(args) => {
            let source = new_source(args)?;
            let mut config = Config::load(&path)?;
            let name = printable(&source.name);
            let existing = config.sources.iter().position(|s| s.is_named(&source.name));
            config.sources.retain(|s| !s.is_named(&source.name));
            // A replaced source keeps its place in the file.
            config
                .sources
                .insert(existing.unwrap_or(config.sources.len()), source);
            let replaced = existing.is_some();
            config.save(&path)?;
            print(&format!(
                "{} {name} source.\n",
                if replaced { "Replaced" } else { "Added" }
            ))
        }
        SourcesCommand::List(args) => {
            let sources = Config::load(&path)?.sources;
            print(&if args.json {
                source_list_json(&sources)?
            } else {
                source_list(&sources)
            })
        }
        SourcesCommand::Remove(args) => {
            let mut config = Config::load(&path)?;
            let before = config.sources.len();
            config.sources.retain(|s| !s.is_named(&args.name));
            if config.sources.len() == before {
                return Err(Error::Failed(format!(
                    "Source {} not found.\nerror: see the configured names with `pgutil sources list`",
                    printable(&args.name)
                )));
            }
            config.save(&path)?;
            print(&format!("Removed {} source.\n", printable(&args.name)))
        }
        SourcesCommand::Test(args) => test(&Config::load(&path)?, args.name.as_deref()),
    }
}

/// Validates `sources add` and builds the source, secrets obfuscated unless `--plain-text`.
fn new_source(args: SourcesAddArgs) -> Result<Source, Error> {
    if args.name.trim().is_empty() || args.name.trim() != args.name {
        return Err(Error::Usage(
            "--name error: Name cannot start or end with whitespace.".into(),
        ));
    }
    if parse_server_url(&args.url).is_none() {
        return Err(Error::Usage(format!(
            "--url error: Invalid url.\n{URL_HINT}"
        )));
    }
    if let Some(feed) = &args.feed {
        if feed.trim().is_empty() || feed.trim() != feed {
            return Err(Error::Usage(
                "--feed error: Feed cannot start or end with whitespace.".into(),
            ));
        }
    }
    let mut source = Source {
        name: args.name,
        url: args.url.trim().to_owned(),
        default_feed: args.feed,
        username: args.username.filter(|u| !u.is_empty()),
        ..Default::default()
    };
    let token = args.api_key.filter(|k| !k.is_empty());
    let password = match (&source.username, args.password.filter(|p| !p.is_empty())) {
        (Some(name), None) => Some(login_password(
            name,
            &format!("--username={} without --password", printable(name)),
            "give --password=PASSWORD",
        )?),
        (_, password) => password,
    };
    if token.is_none() && password.is_none() {
        return Ok(source);
    }
    if args.plain_text {
        note("Storing credentials in plain text.");
        source.token = token;
        source.password = password;
    } else {
        note("Storing credentials. Note: sensitive values are obfuscated, not securely encrypted; protect the config file.");
        source.encrypted_token = token.as_deref().map(obfuscate).transpose()?;
        source.encrypted_password = password.as_deref().map(obfuscate).transpose()?;
    }
    Ok(source)
}

/// `sources test`: `GET /health/json` on each source (or the one named).
fn test(config: &Config, name: Option<&str>) -> Result<(), Error> {
    let sources: Vec<&Source> = match name {
        Some(name) => {
            let found: Vec<&Source> = config.sources.iter().filter(|s| s.is_named(name)).collect();
            if found.is_empty() {
                return Err(Error::Failed(format!(
                    "--name error: Source {} not found.",
                    printable(name)
                )));
            }
            found
        }
        None => config.sources.iter().collect(),
    };
    if sources.is_empty() {
        return Err(Error::Failed(
            "error: no sources are configured; add one with `pgutil sources add --name=NAME --url=URL`".into(),
        ));
    }
    let mut all_ok = true;
    for source in sources {
        let name = printable(&source.name);
        match contact(source) {
            Ok(version) => print(&format!(
                "[{name}] Successfully contacted ProGet-compatible server {}.\n",
                printable(&version)
            ))?,
            Err(reason) => {
                all_ok = false;
                note(&format!("[{name}] Error contacting server: {reason}"));
            }
        }
    }
    if all_ok {
        Ok(())
    } else {
        Err(Error::Reported)
    }
}

/// The server's release number, or why it could not be had.
fn contact(source: &Source) -> Result<String, String> {
    let url = parse_server_url(&source.url).ok_or("the source's url is not a valid http(s) URL")?;
    let credential = source.credential().map_err(|e| e.to_string())?;
    let client = Client::new(&Target { url, credential }).map_err(|e| e.to_string())?;
    let health: HealthInfo = client
        .get_json(paths::HEALTH_JSON, &[])
        .map_err(|e| e.reason())?;
    Ok(health.release_number)
}
