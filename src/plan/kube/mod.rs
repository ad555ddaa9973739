//! The Kubernetes side of planning, all pure: what of a live object labctl compares (its own
//! managed fields plus the fields it wants), how desired objects are put in the form the server
//! stores, which kinds are observed, and which deletions need `--prune-volumes`.
//!
//! The comparison follows server-side apply's own model. The API server records, per field
//! manager, the set of fields each one applied (`metadata.managedFields`, `FieldsV1`). labctl
//! compares the desired object with the live object *projected* onto the union of
//! - the fields labctl's entry owns (so a field labctl used to set and no longer does shows as
//!   removed), and
//! - the fields present in the desired object (so a field another manager changed shows).
//!
//! Everything else (status, resourceVersion, uid, server defaults, controllers' annotations) is
//! outside the projection and can never show as a change.

//!
//! One room per subject: [`inventory`] (what the stack has and what to observe), [`stored`] (the
//! form the server stores), [`merge_types`] (how lists merge), [`projection`] (what is compared,
//! and the live set), [`prune`] (what a plan keeps), [`order`] (the order changes run in),
//! [`rollout`] (whether a workload rolled out), [`dry_run`] (`--server-dry-run`), and
//! [`observe`] (the cluster's part of building a plan).

mod compiled;
mod dry_run;
mod inventory;
mod merge_types;
pub(super) mod observe;
mod order;
mod projection;
mod prune;
mod rollout;
mod stored;

pub use crate::observed::{DryRun, DryRunError, FIELD_MANAGER, Observed};
pub use dry_run::check_with_server;
pub use inventory::{
    APPLYSET_GROUP_KINDS, APPLYSET_ID, APPLYSET_NAMESPACES, APPLYSET_TOOLING, Inventory,
    InventoryPlan, applyset_id, group_kind, inventory_object, inventory_parent, kinds_to_observe,
    namespaces_of, owned_by, selector,
};
pub use merge_types::{ListType, ListTypes, ListTypesSource, openapi_paths};
pub use order::{apply_rank, depends_on, is_workload};
pub use projection::{comparable, comparable_by, labctl_fields, live_set, note_merges};
pub use prune::{holds_data, keep_volumes};
pub use rollout::{Rollout, rollout};
pub use stored::{prepare, prepare_all};
