//! The slice of the Kubernetes OpenAPI schema that server-side apply needs: which lists are
//! associative (and by which keys), which are sets, and which maps are atomic.
//!
//! Positions are identified by the kind and the field names from the object root (list
//! item elements are skipped), e.g. `["spec", "template", "spec", "containers", "ports"]`.
//!
//! For the types the real server's core/v1 and apps/v1 OpenAPI v3 documents carry (core,
//! apps and meta/v1 types), the answer comes from the recorded table of their extensions
//! ([`crate::list_semantics`]): the type at a position is found by walking the declared
//! fields from the kind's root type. Other kinds (RBAC, networking, custom resources) use a
//! built-in rule set by field name.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::list_semantics::{Extensions, PROPERTIES};
use crate::schema_fields::{ROOTS, TYPES};

type Fields = HashMap<&'static str, &'static str>;

fn types() -> &'static HashMap<&'static str, Fields> {
    static T: OnceLock<HashMap<&'static str, Fields>> = OnceLock::new();
    T.get_or_init(|| {
        TYPES
            .iter()
            .map(|(t, f)| (*t, f.iter().copied().collect()))
            .collect()
    })
}

fn extensions() -> &'static HashMap<&'static str, &'static Extensions> {
    static E: OnceLock<HashMap<&'static str, &'static Extensions>> = OnceLock::new();
    E.get_or_init(|| PROPERTIES.iter().map(|e| (e.key, e)).collect())
}

/// Whether the recorded table speaks for this type (it covers every schema of the core/v1
/// and apps/v1 documents).
fn covered(ty: &str) -> bool {
    ty.starts_with("api.core.v1.")
        || ty.starts_with("api.apps.v1.")
        || ty.starts_with("apimachinery.pkg.apis.meta.v1.")
}

/// What is known about a position: the declared type there (`None` for plain values and map
/// entries of them), and the extensions on the property that leads there.
struct At {
    ty: Option<&'static str>,
    prop: Option<&'static Extensions>,
    parent_covered: bool,
}

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

    /// Walks the declared types from the kind's root along `fields`; `None` for kinds or
    /// positions the generated type table does not know.
    fn at<S: AsRef<str>>(&self, fields: &[S]) -> Option<At> {
        let root = ROOTS
            .iter()
            .find(|(g, k, _)| *g == self.group && *k == self.kind)
            .map(|(_, _, t)| *t)?;
        let mut at = At {
            ty: Some(root),
            prop: None,
            parent_covered: false,
        };
        let mut map_of: Option<Option<&'static str>> = None;
        for f in fields {
            let f = f.as_ref();
            if let Some(inner) = map_of.take() {
                // A map key: the value's type is the map's element type.
                at = At {
                    ty: inner,
                    prop: None,
                    parent_covered: false,
                };
                continue;
            }
            let ty = at.ty?;
            let child = *types().get(ty)?.get(f)?;
            let prop = extensions()
                .get(format!("io.k8s.{ty}.{f}").as_str())
                .copied();
            let (child_ty, is_map) = match child.strip_prefix("map:") {
                Some(inner) => (Some(inner).filter(|t| !t.is_empty()), true),
                None => (Some(child).filter(|t| !t.is_empty()), false),
            };
            if is_map {
                map_of = Some(child_ty);
            }
            at = At {
                ty: if is_map { None } else { child_ty },
                prop,
                parent_covered: covered(ty),
            };
        }
        Some(at)
    }

    /// The merge type of the list at `fields`.
    pub fn list_type<S: AsRef<str>>(&self, fields: &[S]) -> ListType {
        if let Some(at) = self.at(fields)
            && at.parent_covered
        {
            return match at.prop {
                Some(e) if e.list_type == Some("map") => ListType::Map(e.list_map_keys.to_vec()),
                Some(e) if e.list_type == Some("set") => ListType::Set,
                _ => ListType::Atomic,
            };
        }
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
        if let Some(at) = self.at(fields)
            && (at.parent_covered || at.ty.is_some_and(covered))
        {
            let on_type = at
                .ty
                .and_then(|t| extensions().get(format!("io.k8s.{t}").as_str()))
                .is_some_and(|e| e.map_type == Some("atomic"));
            let on_prop = at.prop.is_some_and(|e| e.map_type == Some("atomic"));
            return on_type || on_prop;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn f(p: &str) -> Vec<&str> {
        p.split('.').collect()
    }

    #[test]
    fn merge_types_come_from_the_recorded_table() {
        let svc = Schema::new("", "Service");
        assert_eq!(
            svc.list_type(&f("spec.ports")),
            ListType::Map(vec!["port", "protocol"])
        );
        assert!(svc.map_atomic(&f("spec.selector")));
        assert_eq!(svc.list_type(&f("spec.clusterIPs")), ListType::Atomic);
        let d = Schema::new("apps", "Deployment");
        let pod = "spec.template.spec";
        assert_eq!(
            d.list_type(&f(&format!("{pod}.containers.ports"))),
            ListType::Map(vec!["containerPort", "protocol"])
        );
        assert_eq!(
            d.list_type(&f(&format!("{pod}.containers.env"))),
            ListType::Map(vec!["name"])
        );
        assert_eq!(
            d.list_type(&f(&format!("{pod}.tolerations"))),
            ListType::Atomic
        );
        assert_eq!(d.list_type(&f("metadata.finalizers")), ListType::Set);
        assert_eq!(
            d.list_type(&f("metadata.ownerReferences")),
            ListType::Map(vec!["uid"])
        );
        // Atomic structs: the selector, a fieldRef, the items of imagePullSecrets
        // (LocalObjectReference); a plain struct is not.
        assert!(d.map_atomic(&f("spec.selector")));
        assert!(d.map_atomic(&f(&format!("{pod}.containers.env.valueFrom.fieldRef"))));
        assert!(d.map_atomic(&f(&format!("{pod}.imagePullSecrets"))));
        assert!(d.map_atomic(&f(&format!("{pod}.nodeSelector"))));
        assert!(!d.map_atomic(&f(&format!("{pod}.containers.env.valueFrom"))));
        assert!(!d.map_atomic(&f("spec.strategy")));
        // Kinds the table does not cover keep the built-in rules.
        let rb = Schema::new("rbac.authorization.k8s.io", "RoleBinding");
        assert!(rb.map_atomic(&f("roleRef")));
        let crd = Schema::new("example.com", "Widget");
        assert_eq!(
            crd.list_type(&f("status.conditions")),
            ListType::Map(vec!["type"])
        );
    }
}
