//! `labctl agent proxy`: placeholder until its issue lands (another branch replaces this file).

use super::runtime::Shutdown;
use crate::cli::ProxyArgs;
use crate::error::Error;

/// Run the proxy until `shutdown`.
///
/// # Errors
/// Always, until the agent is built.
pub async fn run(_config: ProxyArgs, _shutdown: Shutdown) -> Result<(), Error> {
    Err(Error::Agent {
        agent: "proxy",
        message: "not built yet".into(),
    })
}
