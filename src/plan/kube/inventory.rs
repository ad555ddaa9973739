//! What the stack has in the cluster, as its ApplySet-style parent records it, and what a plan
//! therefore observes: the kinds and namespaces to LIST, the selector that finds the stack's
//! objects, and who owns an object.

use std::collections::BTreeSet;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::plan::{Action, Plan};
use crate::resource::{At, Desired, KINDS, MANAGED_BY, MANAGER, PART_OF, ResourceId};

/// The namespaces the stack's objects live in (an account limited to namespaces LISTs there).
pub fn namespaces_of(desired: &Desired) -> BTreeSet<String> {
    desired
        .objects
        .keys()
        .filter_map(|id| match id {
            ResourceId::Kube {
                namespace: Some(ns),
                ..
            } => Some(ns.clone()),
            _ => None,
        })
        .collect()
}

/// The ApplySet parent's own label: its id (see [`applyset_id`]).
pub const APPLYSET_ID: &str = "applyset.kubernetes.io/id";

/// The ApplySet parent's annotation naming the tool that manages it, as `labctl/v0.1.0`.
pub const APPLYSET_TOOLING: &str = "applyset.kubernetes.io/tooling";

/// The ApplySet parent's annotation listing the group-kinds of its members, as
/// `ConfigMap,Deployment.apps` (sorted, comma-separated).
pub const APPLYSET_GROUP_KINDS: &str = "applyset.kubernetes.io/contains-group-kinds";

/// The ApplySet parent's annotation listing the namespaces of its members besides its own.
pub const APPLYSET_NAMESPACES: &str = "applyset.kubernetes.io/additional-namespaces";

/// What a stack has in the cluster, as its ApplySet-style parent records it: every group-kind
/// (`Deployment.apps`, `ConfigMap`) and namespace of its objects. Planning lists these kinds
/// too, so an object of a kind the stack no longer renders is still found and pruned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Group-kinds, as Kubernetes writes them (`Kind.group`, `Kind` for the core group).
    pub group_kinds: BTreeSet<String>,
    /// Namespaces of namespaced members.
    pub namespaces: BTreeSet<String>,
}

/// The inventory for apply: where its parent is, what the cluster holds now, and what the
/// plan leaves there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryPlan {
    /// The parent object (a ConfigMap in the stack's namespace).
    pub parent: ResourceId,
    /// What the parent records now; `None` when there is none yet.
    pub stored: Option<Inventory>,
    /// What it records once the plan is applied.
    pub wanted: Inventory,
}

/// `Kind.group`, or `Kind` for the core group (Kubernetes' `GroupKind.String()`).
pub fn group_kind(api_version: &str, kind: &str) -> String {
    match api_version.rsplit_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind.to_string(),
    }
}

impl Inventory {
    /// What the parent `obj` records (its annotations); its own namespace counts as one.
    pub fn read(obj: &Value) -> Self {
        let list = |key: &str| -> BTreeSet<String> {
            obj.at("/metadata/annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut namespaces = list(APPLYSET_NAMESPACES);
        if let Some(ns) = obj.at("/metadata/namespace").and_then(Value::as_str) {
            namespaces.insert(ns.to_string());
        }
        Inventory {
            group_kinds: list(APPLYSET_GROUP_KINDS),
            namespaces,
        }
    }

    /// What the cluster holds of the stack once `plan` is applied: every kube object it keeps
    /// (created, changed, left as is, kept from pruning), not what it deletes.
    pub fn after(plan: &Plan) -> Self {
        let mut inv = Inventory::default();
        for c in &plan.changes {
            if c.action == Action::Delete {
                continue;
            }
            if let ResourceId::Kube {
                namespace,
                kind,
                api_version,
                ..
            } = &c.id
            {
                inv.group_kinds.insert(group_kind(api_version, kind));
                if let Some(ns) = namespace {
                    inv.namespaces.insert(ns.clone());
                }
            }
        }
        inv
    }

    /// Both together.
    pub fn union(&self, other: &Inventory) -> Self {
        Inventory {
            group_kinds: self
                .group_kinds
                .union(&other.group_kinds)
                .cloned()
                .collect(),
            namespaces: self.namespaces.union(&other.namespaces).cloned().collect(),
        }
    }
}

/// The id of a stack's inventory parent: ConfigMap `labctl-<stack>` in the stack's namespace.
pub fn inventory_parent(stack: &str, namespace: &str) -> ResourceId {
    ResourceId::Kube {
        namespace: Some(namespace.to_string()),
        kind: "ConfigMap".into(),
        name: format!("labctl-{stack}"),
        api_version: "v1".into(),
    }
}

/// An ApplySet's id, as the ApplySet specification (KEP-3659) derives it from its parent:
/// `applyset-` + unpadded URL-safe base64 of the SHA-256 of `<name>.<namespace>.<kind>.<group>`
/// + `-v1`.
pub fn applyset_id(parent: &ResourceId) -> String {
    use sha2::Digest as _;
    let ResourceId::Kube {
        namespace,
        kind,
        name,
        api_version,
    } = parent
    else {
        return String::new();
    };
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let key = format!(
        "{name}.{}.{kind}.{group}",
        namespace.as_deref().unwrap_or_default()
    );
    let hash = sha2::Sha256::digest(key.as_bytes());
    format!(
        "applyset-{}-v1",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash)
    )
}

/// The parent object recording `inv`, as apply writes it. It carries `managed-by=labctl` but
/// not the stack's `part-of` label: it is bookkeeping, never a change in a plan.
pub fn inventory_object(parent: &ResourceId, inv: &Inventory) -> Value {
    let ResourceId::Kube {
        namespace, name, ..
    } = parent
    else {
        return Value::Null;
    };
    let others: Vec<&str> = inv
        .namespaces
        .iter()
        .filter(|n| Some(*n) != namespace.as_ref())
        .map(String::as_str)
        .collect();
    let kinds: Vec<&str> = inv.group_kinds.iter().map(String::as_str).collect();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                MANAGED_BY: MANAGER,
                APPLYSET_ID: applyset_id(parent),
            },
            "annotations": {
                APPLYSET_TOOLING: format!("labctl/v{}", env!("CARGO_PKG_VERSION")),
                APPLYSET_GROUP_KINDS: kinds.join(","),
                APPLYSET_NAMESPACES: others.join(","),
            }
        }
    })
}

/// The label selector that finds this stack's objects.
pub fn selector(stack: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{PART_OF}={stack}")
}

/// Whether a live object carries this stack's ownership labels.
pub fn owned_by(obj: &Value, stack: &str) -> bool {
    let labels = obj.at("/metadata/labels");
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    label(MANAGED_BY) == Some(MANAGER) && label(PART_OF) == Some(stack)
}

/// The (apiVersion, kind) pairs to LIST: the desired set's kinds, and every kind whose
/// [`crate::resource::KindSpec::always_observed`] is set, so that the last object of such a kind,
/// removed from the stack, is still found and pruned. (An object of another kind whose last
/// template is removed is no longer seen: delete it with the component still present, or mark
/// its kind in [`KINDS`].)
pub fn kinds_to_observe(desired: &Desired) -> BTreeSet<(String, String)> {
    let mut kinds: BTreeSet<(String, String)> = KINDS
        .iter()
        .filter_map(|k| Some((k.always_observed?.to_string(), k.kind.to_string())))
        .collect();
    for id in desired.objects.keys() {
        if let ResourceId::Kube {
            kind, api_version, ..
        } = id
        {
            kinds.insert((api_version.clone(), kind.clone()));
        }
    }
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_applyset_id_follows_the_specification() {
        let parent = inventory_parent("lab", "lab");
        // sha256("labctl-lab.lab.ConfigMap."), unpadded URL-safe base64.
        assert_eq!(
            applyset_id(&parent),
            "applyset-xzT4aMhp_qMNyoIM8ioCmoImO4Lcd06JMfIj-ic3sGE-v1"
        );
        let inv = Inventory {
            group_kinds: ["Role.rbac.authorization.k8s.io", "ConfigMap"]
                .map(String::from)
                .into(),
            namespaces: ["lab", "other"].map(String::from).into(),
        };
        let obj = inventory_object(&parent, &inv);
        assert_eq!(
            obj["metadata"]["annotations"][APPLYSET_GROUP_KINDS],
            "ConfigMap,Role.rbac.authorization.k8s.io"
        );
        assert_eq!(obj["metadata"]["annotations"][APPLYSET_NAMESPACES], "other");
        assert_eq!(Inventory::read(&obj), inv);
        assert_eq!(group_kind("apps/v1", "Deployment"), "Deployment.apps");
        assert_eq!(group_kind("v1", "Secret"), "Secret");
    }
}
