//! The slice of the Kubernetes OpenAPI schema that server-side apply needs: which lists are
//! associative (and by which keys), which are sets, and which maps are atomic.
//!
//! Positions are identified by the kind and the field names from the object root (list
//! item elements are skipped), e.g. `["spec", "template", "spec", "containers", "ports"]`.

use serde_json::Value;

/// How a list merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole (`x-kubernetes-list-type: atomic`, the default).
    Atomic,
    /// A set of scalars (`x-kubernetes-list-type: set`).
    Set,
    /// An associative list keyed by these fields (`x-kubernetes-list-map-keys`).
    Map(Vec<&'static str>),
}

/// Schema facts for one kind.
#[derive(Debug, Clone)]
pub struct Schema {
    /// API group ("" for core).
    pub group: String,
    /// Kind.
    pub kind: String,
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

impl Schema {
    /// Schema for a group and kind.
    pub fn new(group: &str, kind: &str) -> Self {
        Schema {
            group: group.to_string(),
            kind: kind.to_string(),
        }
    }

    /// The merge type of the list at `fields`.
    pub fn list_type<S: AsRef<str>>(&self, fields: &[S]) -> ListType {
        let f: Vec<&str> = fields.iter().map(AsRef::as_ref).collect();
        let Some((&last, parent)) = f.split_last() else {
            return ListType::Atomic;
        };
        let parent_last = parent.last().copied().unwrap_or("");
        match last {
            "finalizers" if f == ["metadata", "finalizers"] => ListType::Set,
            "ownerReferences" if f == ["metadata", "ownerReferences"] => ListType::Map(vec!["uid"]),
            "containers" | "initContainers" | "ephemeralContainers" => ListType::Map(vec!["name"]),
            "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates"
                if parent_last == "spec" =>
            {
                ListType::Map(vec!["name"])
            }
            "env" if CONTAINER_LISTS.contains(&parent_last) => ListType::Map(vec!["name"]),
            "ports" if CONTAINER_LISTS.contains(&parent_last) => {
                ListType::Map(vec!["containerPort", "protocol"])
            }
            "ports" if self.kind == "Service" && f == ["spec", "ports"] => {
                ListType::Map(vec!["port", "protocol"])
            }
            "volumeMounts" if CONTAINER_LISTS.contains(&parent_last) => {
                ListType::Map(vec!["mountPath"])
            }
            "volumeDevices" if CONTAINER_LISTS.contains(&parent_last) => {
                ListType::Map(vec!["devicePath"])
            }
            "hostAliases" => ListType::Map(vec!["ip"]),
            "topologySpreadConstraints" => ListType::Map(vec!["topologyKey", "whenUnsatisfiable"]),
            "conditions" if f.first() == Some(&"status") => ListType::Map(vec!["type"]),
            _ => ListType::Atomic,
        }
    }

    /// Defaults the schema gives to key fields of the list at `fields` (so that an item
    /// without `protocol` is keyed with `"protocol":"TCP"`, as the real server does).
    pub fn key_defaults<S: AsRef<str>>(&self, fields: &[S]) -> Vec<(&'static str, Value)> {
        match fields.last().map(AsRef::as_ref) {
            Some("ports") => vec![("protocol", Value::String("TCP".into()))],
            _ => Vec::new(),
        }
    }

    /// Whether the map at `fields` is atomic (`x-kubernetes-map-type: atomic`, or a
    /// `LabelSelector`, which is `structType=atomic`).
    pub fn map_atomic<S: AsRef<str>>(&self, fields: &[S]) -> bool {
        let f: Vec<&str> = fields.iter().map(AsRef::as_ref).collect();
        match f.last() {
            Some(&"selector") => {
                // Service spec.selector is an atomic map; workload/PVC selectors are
                // LabelSelectors (atomic structs).
                true
            }
            Some(&"labelSelector") | Some(&"namespaceSelector") | Some(&"podSelector") => true,
            Some(&"roleRef") => true,
            Some(&"configMapKeyRef")
            | Some(&"secretKeyRef")
            | Some(&"fieldRef")
            | Some(&"resourceFieldRef") => true,
            _ => false,
        }
    }
}
