//! Apply runs a [`Plan`](crate::plan::Plan) exactly as planned: it never re-diffs and never
//! changes an action. Each plane has its own sequence ([`kube::apply`]); what they share lives
//! here: the `--adopt` gate.

pub mod kube;

use crate::error::Error;
use crate::plan::{Action, Plan};

/// Refuse a plan that takes over resources this stack does not own, unless `--adopt` allows it.
///
/// # Errors
/// [`Error::NotOwned`] naming every such resource.
pub fn check_adopt(plan: &Plan, adopt: bool) -> Result<(), Error> {
    let foreign: Vec<String> = plan
        .actionable()
        .filter(|c| c.action == Action::Adopt)
        .map(|c| c.id.to_string())
        .collect();
    if foreign.is_empty() || adopt {
        Ok(())
    } else {
        Err(Error::NotOwned { resources: foreign })
    }
}
