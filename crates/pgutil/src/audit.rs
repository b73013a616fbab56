//! `pgutil audit list`: the server's audit trail, one line per entry.
//!
//! Format (newest first): time (UTC, to the second), id, actor, action,
//! target, address (`-` for the server's own changes), then the details as
//! compact JSON unless empty; fields separated by two spaces:
//!
//! ```text
//! 2026-12-01 10:00:01  42  key 1000  apikey.delete  key 1001  127.0.0.1  {"selfRevocation":true}
//! ```
//!
//! No entries: `No audit entries found.` With `--json`: the server's array as sent.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use proget_api::{paths, AuditEntry};

use crate::cli::{JsonOption, ServerOptions};
use crate::client::{resolve, Client};
use crate::error::Error;
use crate::listing;
use crate::output::printable;

/// `pgutil audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Lists audit entries, newest first, one line each.
    #[command(after_help = "Examples:
  $ pgutil audit list
  $ pgutil audit list --action=apikey.delete --limit=20
  $ pgutil audit list --target=\"key 1001\"
  2026-12-01 10:00:01  42  key 1000  apikey.delete  key 1001  127.0.0.1")]
    List(AuditListArgs),
}

/// Options of `audit list`.
#[derive(Debug, Args)]
pub struct AuditListArgs {
    /// Most entries to show, 1 to 1000 (the server's default: 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Only entries of this action, e.g. apikey.delete.
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// Only entries about this target, e.g. "key 1001" or "user jsmith".
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// `--json`: the server's JSON array as it sent it.
    #[command(flatten)]
    pub output: JsonOption,
    /// Server and credential.
    #[command(flatten)]
    pub server: ServerOptions,
}

/// Runs an `audit` command.
pub fn run(command: AuditCommand) -> Result<(), Error> {
    match command {
        AuditCommand::List(args) => {
            let client = Client::new(&resolve(&args.server)?)?;
            let limit = args.limit.map(|l| l.to_string());
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(limit) = &limit {
                query.push(("limit", limit));
            }
            if let Some(action) = &args.action {
                query.push(("action", action));
            }
            if let Some(target) = &args.target {
                query.push(("target", target));
            }
            listing::show::<AuditEntry>(
                &client,
                paths::AUDIT_LIST,
                &query,
                args.output,
                "listing audit entries",
                audit_list,
            )
        }
    }
}

/// The lines `audit list` prints.
pub fn audit_list(entries: &[AuditEntry]) -> String {
    if entries.is_empty() {
        return "No audit entries found.\n".into();
    }
    let mut out = String::new();
    for e in entries {
        let time = e.time.trim_end_matches('Z').replacen('T', " ", 1);
        let _ = write!(
            out,
            "{}  {}  {}  {}  {}  {}",
            printable(&time),
            e.id,
            printable(&e.actor),
            printable(&e.action),
            printable(&e.target),
            printable(e.address.as_deref().unwrap_or("-")),
        );
        let empty = e.details.as_object().is_some_and(|o| o.is_empty()) || e.details.is_null();
        if !empty {
            let _ = write!(out, "  {}", printable(&e.details.to_string()));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_entry_with_details_when_present() {
        let entries = vec![
            AuditEntry {
                id: 42,
                time: "2026-12-01T10:00:01Z".into(),
                actor: "key 1000".into(),
                action: "apikey.delete".into(),
                target: "key 1001".into(),
                address: Some("127.0.0.1".into()),
                details: serde_json::json!({"selfRevocation": true}),
            },
            AuditEntry {
                id: 1,
                time: "2026-12-01T09:00:00Z".into(),
                actor: "system".into(),
                action: "user.add".into(),
                target: "user Ad\u{1b}min".into(),
                address: None,
                details: serde_json::json!({}),
            },
        ];
        assert_eq!(
            audit_list(&entries),
            "2026-12-01 10:00:01  42  key 1000  apikey.delete  key 1001  127.0.0.1  {\"selfRevocation\":true}\n\
             2026-12-01 09:00:00  1  system  user.add  user Ad?min  -\n"
        );
        assert_eq!(audit_list(&[]), "No audit entries found.\n");
    }
}
