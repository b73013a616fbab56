//! `pgutil health`.

use proget_api::{paths, HealthInfo};

use crate::cli::ServerOptions;
use crate::client::{resolve, Client};
use crate::error::Error;
use crate::output::{health_report, print};

/// `health`: `GET /health/json`; fails unless every status is `OK`.
pub fn run(server: &ServerOptions) -> Result<(), Error> {
    let client = Client::new(&resolve(server)?)?;
    let url = client.display_url();
    let health: HealthInfo = client
        .get_json_any_status(paths::HEALTH_JSON)
        .map_err(|e| {
            // Keep stdout's report line complete before the reason goes to stderr.
            let _ = print(&format!("Checking {url}...not OK\n"));
            e.describe("checking health")
        })?;
    let (report, all_ok) = health_report(&url, &health);
    print(&report)?;
    if all_ok {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "error: {url} is not healthy; see the statuses above and the server's log"
        )))
    }
}
