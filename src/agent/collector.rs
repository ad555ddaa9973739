//! `labctl agent collector`: placeholder until its issue lands (another branch replaces this file).

use super::runtime::Shutdown;
use crate::cli::CollectorArgs;
use crate::error::Error;

/// Run the collector until `shutdown`.
///
/// # Errors
/// Always, until the agent is built.
pub async fn run(_config: CollectorArgs, _shutdown: Shutdown) -> Result<(), Error> {
    Err(Error::Agent {
        agent: "collector",
        message: "not built yet".into(),
    })
}
