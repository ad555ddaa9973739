//! `labctl agent gate`: placeholder until its issue lands (another branch replaces this file).

use super::runtime::Shutdown;
use crate::cli::GateArgs;
use crate::error::Error;

/// Run the gate until `shutdown`.
///
/// # Errors
/// Always, until the agent is built.
pub async fn run(_config: GateArgs, _shutdown: Shutdown) -> Result<(), Error> {
    Err(Error::Agent {
        agent: "gate",
        message: "not built yet".into(),
    })
}
