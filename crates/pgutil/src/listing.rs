//! The one way a command lists what a server holds: as text, or with
//! `--json` as the server's own JSON array.
//!
//! A listing command flattens [`JsonOption`] into its options (or takes
//! [`crate::cli::ListArgs`]) and calls [`show`]; that is all `--json` needs:
//!
//! ```text
//! #[command(flatten)]
//! pub output: JsonOption,
//! …
//! listing::show::<Entry>(&client, PATH, &query, args.output, "listing access logs", entry_list)
//! ```

use serde::de::DeserializeOwned;

use crate::cli::JsonOption;
use crate::client::Client;
use crate::error::Error;
use crate::output::print;

/// `GET path?query` and prints the list. With `--json`: the answer's body
/// byte for byte (checked to be one JSON array, so properties pgutil does not
/// know are kept), then a line end if the body has none. Otherwise the items
/// read as `T` and printed by `render`. `action` names the work in error
/// messages, e.g. `listing API keys`.
pub fn show<T: DeserializeOwned>(
    client: &Client,
    path: &str,
    query: &[(&str, &str)],
    output: JsonOption,
    action: &str,
    render: impl FnOnce(&[T]) -> String,
) -> Result<(), Error> {
    if output.json {
        let body = client
            .get_json_array_text(path, query)
            .map_err(|e| e.describe(action))?;
        print(&with_line_end(body))
    } else {
        let items: Vec<T> = client
            .get_json(path, query)
            .map_err(|e| e.describe(action))?;
        print(&render(&items))
    }
}

/// `text`, ending with a line end.
pub fn with_line_end(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_end_is_added_only_when_missing() {
        assert_eq!(with_line_end("[]".into()), "[]\n");
        assert_eq!(with_line_end("[1]\n".into()), "[1]\n");
        assert_eq!(with_line_end(String::new()), "\n");
    }
}
