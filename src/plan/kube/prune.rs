//! Objects that hold data (volumes, protected components) are never pruned by a plan unless it
//! is asked to.

use std::collections::BTreeSet;

use crate::plan::{Action, Guard, Plan};
use crate::resource::{ResourceId, kind_spec};

/// Whether an object's kind holds data (see [`crate::resource::KindSpec::holds_data`]).
pub fn holds_data(id: &ResourceId) -> bool {
    id.kind().is_some_and(|k| kind_spec(k).holds_data)
}

/// Keep volumes and protected components: unless `prune_volumes`, the deletion of a PVC, or of
/// anything whose component stack.toml marks `protect`, becomes "left as is" with a note saying
/// which flag deletes it. A PVC is never replaced: that is left to apply to refuse, but the plan
/// says so.
pub fn keep_volumes(plan: &mut Plan, protected: &BTreeSet<String>, prune_volumes: bool) {
    for c in &mut plan.changes {
        if c.id.plane() != crate::stack::Plane::Kube {
            continue;
        }
        let guarded = holds_data(&c.id) || protected.contains(&c.component);
        if c.action == Action::Delete && guarded && !prune_volumes {
            c.action = Action::NoOp;
            c.after = c.before.clone();
            c.guards.clear();
            let why = if c.id.kind() == Some("Namespace") {
                "deleting it deletes every claim in it"
            } else if holds_data(&c.id) {
                "it holds data"
            } else {
                "its component is marked `protect`"
            };
            c.notes = vec![format!(
                "no longer rendered, but kept: {why}; `--prune-volumes` deletes it"
            )];
        }
        if c.action == Action::Replace && holds_data(&c.id) {
            c.notes.push(
                "a PersistentVolumeClaim is never replaced (its data would be lost): apply refuses; \
                 change it back, or move the data and delete the claim by hand"
                    .into(),
            );
            c.guards.push(Guard::ReplaceData);
        }
    }
}
