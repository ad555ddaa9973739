//! The order kube changes run in: kinds by rank (namespaces first, workloads last), and what a
//! change depends on (a workload on what its pods use), so that a failure skips only its
//! dependents.

use serde_json::Value;

use crate::plan::Change;
use crate::resource::{At, ResourceId, kind_spec};

/// Apply order of a kind (lower first); deletions run in the reverse order.
pub fn apply_rank(kind: &str) -> u8 {
    kind_spec(kind).tier
}

/// Whether change `c` needs change `on` to have been made first: its namespace, the definition
/// of its kind, or (for a workload) a ConfigMap, Secret, PersistentVolumeClaim or
/// ServiceAccount its pods use. Apply skips `c` when `on` failed: its pods would not start.
pub fn depends_on(c: &Change, on: &Change) -> bool {
    let (
        ResourceId::Kube {
            namespace,
            kind,
            api_version,
            ..
        },
        ResourceId::Kube {
            namespace: on_ns,
            kind: on_kind,
            name: on_name,
            ..
        },
    ) = (&c.id, &on.id)
    else {
        return false;
    };
    if on_kind == "Namespace" && namespace.as_ref() == Some(on_name) {
        return true;
    }
    let on_obj = on.after.as_ref().and_then(|b| b.content().as_kube());
    if on_kind == "CustomResourceDefinition" {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        return on_obj.is_some_and(|d| {
            d.at("/spec/group").and_then(Value::as_str) == Some(group)
                && d.at("/spec/names/kind").and_then(Value::as_str) == Some(kind.as_str())
        });
    }
    if on_ns != namespace {
        return false;
    }
    let Some(obj) = c.after.as_ref().and_then(|b| b.content().as_kube()) else {
        return false;
    };
    pod_refs(obj)
        .iter()
        .any(|(k, n)| k == on_kind && n == on_name)
}

/// The (kind, name) of what a workload's pods use in their namespace.
fn pod_refs(obj: &Value) -> Vec<(&'static str, String)> {
    let Some(pod) = obj
        .at("/spec/template/spec")
        .or_else(|| obj.at("/spec/jobTemplate/spec/template/spec"))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut add = |kind: &'static str, v: Option<&Value>| {
        if let Some(n) = v.and_then(Value::as_str) {
            out.push((kind, n.to_string()));
        }
    };
    add("ServiceAccount", pod.get("serviceAccountName"));
    let each = |p: &str| {
        pod.at(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for s in each("/imagePullSecrets") {
        add("Secret", s.get("name"));
    }
    for v in each("/volumes") {
        add("ConfigMap", v.at("/configMap/name"));
        add("Secret", v.at("/secret/secretName"));
        add(
            "PersistentVolumeClaim",
            v.at("/persistentVolumeClaim/claimName"),
        );
        for src in v
            .at("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add("ConfigMap", src.at("/configMap/name"));
            add("Secret", src.at("/secret/name"));
        }
    }
    for list in ["/containers", "/initContainers"] {
        for c in each(list) {
            for e in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                add("ConfigMap", e.at("/configMapRef/name"));
                add("Secret", e.at("/secretRef/name"));
            }
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                add("ConfigMap", e.at("/valueFrom/configMapKeyRef/name"));
                add("Secret", e.at("/valueFrom/secretKeyRef/name"));
            }
        }
    }
    out
}

/// Whether labctl waits for this kind to roll out.
pub fn is_workload(kind: &str) -> bool {
    kind_spec(kind).rollout.is_some()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plan::{Action, Body};
    use crate::resource::Content;

    #[test]
    fn namespaces_come_first_and_workloads_last() {
        let mut kinds = vec![
            "Deployment",
            "Service",
            "ConfigMap",
            "Namespace",
            "PersistentVolumeClaim",
            "ServiceAccount",
            "CustomResourceDefinition",
        ];
        kinds.sort_by_key(|k| apply_rank(k));
        assert_eq!(
            kinds,
            [
                "Namespace",
                "CustomResourceDefinition",
                "ServiceAccount",
                "ConfigMap",
                "PersistentVolumeClaim",
                "Service",
                "Deployment"
            ]
        );
    }

    #[test]
    fn a_workload_depends_on_what_its_pods_use_and_nothing_else() {
        let change = |kind: &str, name: &str, after: Value| Change {
            id: ResourceId::Kube {
                namespace: Some("lab".into()),
                kind: kind.into(),
                name: name.into(),
                api_version: if kind == "Deployment" {
                    "apps/v1"
                } else {
                    "v1"
                }
                .into(),
            },
            component: "c".into(),
            action: Action::Update,
            before: None,
            after: Some(Body::new(
                &ResourceId::unit(None, "x"),
                Content::kube(after),
            )),
            impact: Vec::new(),
            notes: Vec::new(),
            guards: Vec::new(),
            dry_run: None,
        };
        let app = change(
            "Deployment",
            "app",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a",
                "envFrom": [{"secretRef": {"name": "creds"}}]}],
                "volumes": [{"name": "c", "configMap": {"name": "app-config"}}]}}}}),
        );
        let cm = |n: &str| change("ConfigMap", n, json!({}));
        assert!(depends_on(&app, &cm("app-config")));
        assert!(depends_on(&app, &change("Secret", "creds", json!({}))));
        assert!(!depends_on(&app, &cm("other")));
        assert!(!depends_on(&cm("other"), &app));
        let mut ns = change("Namespace", "lab", json!({}));
        ns.id = ResourceId::Kube {
            namespace: None,
            kind: "Namespace".into(),
            name: "lab".into(),
            api_version: "v1".into(),
        };
        assert!(depends_on(&cm("other"), &ns));
    }
}
