//! `labctl agent ingest`: placeholder until its issue lands (another branch replaces this file).

use super::runtime::Shutdown;
use crate::cli::IngestArgs;
use crate::error::Error;

/// Run the ingest until `shutdown`.
///
/// # Errors
/// Always, until the agent is built.
pub async fn run(_config: IngestArgs, _shutdown: Shutdown) -> Result<(), Error> {
    Err(Error::Agent {
        agent: "ingest",
        message: "not built yet".into(),
    })
}
