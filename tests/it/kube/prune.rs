//! What goes when the stack stops rendering it, and what never does: volumes, protected components,
//! other stacks' objects; the inventory that finds kinds no longer rendered.

use super::*;

#[test]
fn a_removed_component_is_pruned_but_its_volume_stays() {
    let srv = server(true);
    let s = stack(&format!("{WEB}{DB}"));
    s.file("templates/web/web.yaml", WEB_TEMPLATE);
    s.file("templates/db/db.yaml", DB_TEMPLATE);
    converge(&s, &srv, &[]);
    assert!(
        srv.get("v1", "PersistentVolumeClaim", "lab", "db-data")
            .is_some()
    );

    s.file("stack.toml", &format!("{BARE}\n{WEB}"));
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(
        out.contains("# ConfigMap lab/db-config will be destroyed"),
        "{out}"
    );
    assert!(
        !out.contains("PersistentVolumeClaim lab/db-data will be"),
        "{out}"
    );
    assert!(
        out.contains("Plan: 0 to add, 0 to change, 1 to destroy."),
        "{out}"
    );
    let err = converge(&s, &srv, &[]);
    assert!(err.contains("ConfigMap lab/db-config: deleted"), "{err}");
    assert!(srv.get("v1", "ConfigMap", "lab", "db-config").is_none());
    assert!(
        srv.get("v1", "PersistentVolumeClaim", "lab", "db-data")
            .is_some()
    );
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(out.contains("`--prune-volumes` deletes it"), "{out}");

    // Nothing else was touched, and the volume goes only when asked.
    assert!(srv.get("v1", "ConfigMap", "lab", "web-config").is_some());
    let (_, out, _) = plan(&s, &srv, &["--prune-volumes"]);
    assert!(
        out.contains("# PersistentVolumeClaim lab/db-data will be destroyed"),
        "{out}"
    );
    let (code, _, err) = apply(&s, &srv, &["--prune-volumes"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        srv.get("v1", "PersistentVolumeClaim", "lab", "db-data")
            .is_none()
    );
    assert_no_changes(&s, &srv);
}

#[test]
fn a_protected_component_needs_prune_volumes() {
    let srv = server(true);
    let s = stack(&format!("{WEB}{DB}"));
    s.file("templates/web/web.yaml", WEB_TEMPLATE);
    s.file("templates/db/db.yaml", DB_TEMPLATE);
    converge(&s, &srv, &[]);
    s.file(
        "stack.toml",
        &format!("{BARE}\n{WEB}[kube.extra.db]\nenabled = false\nprotect = true\n"),
    );
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(out.starts_with("No changes."), "{out}");
    assert!(out.contains("# ConfigMap lab/db-config: no longer rendered, but kept: its component is marked `protect`"), "{out}");
    converge(&s, &srv, &[]);
    assert!(srv.get("v1", "ConfigMap", "lab", "db-config").is_some());
}

#[test]
fn objects_of_other_stacks_are_never_touched() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    // Same labels but another stack; and an unlabelled object in the same namespace.
    for (name, labels) in [
        (
            "other-stack",
            json!({"app.kubernetes.io/managed-by": "labctl", "app.kubernetes.io/part-of": "other"}),
        ),
        ("hand-made", json!({})),
    ] {
        srv.apply_as(
            "kubectl",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "namespace": "lab", "labels": labels}, "data": {"a": "b"}}),
        )
        .unwrap();
    }
    assert_no_changes(&s, &srv);
    s.file("stack.toml", BARE);
    let (code, out, err) = apply(&s, &srv, &["--prune-volumes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(srv.get("v1", "ConfigMap", "lab", "other-stack").is_some());
    assert!(srv.get("v1", "ConfigMap", "lab", "hand-made").is_some());
    assert!(srv.get("v1", "ConfigMap", "lab", "web-config").is_none());
}

const ROLE_TEMPLATE: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list]
"#;

#[test]
fn the_inventory_finds_an_object_of_a_kind_the_stack_no_longer_renders() {
    let srv = server(true);
    let s = web();
    s.file("templates/web/role.yaml", ROLE_TEMPLATE);
    converge(&s, &srv, &[]);
    // The inventory (an ApplySet-style parent) records every group-kind and namespace.
    let parent = srv.get("v1", "ConfigMap", "lab", "labctl-lab").unwrap();
    let kinds = parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        kinds, "ConfigMap,Deployment.apps,Namespace,Role.rbac.authorization.k8s.io,Service",
        "{parent}"
    );
    let id = parent["metadata"]["labels"]["applyset.kubernetes.io/id"]
        .as_str()
        .unwrap();
    assert!(id.starts_with("applyset-") && id.ends_with("-v1"), "{id}");
    assert_eq!(
        parent["metadata"]["annotations"]["applyset.kubernetes.io/tooling"]
            .as_str()
            .unwrap(),
        format!("labctl/v{}", env!("CARGO_PKG_VERSION"))
    );

    // No template renders a Role any more, and Role is not a kind labctl always lists: the
    // inventory still leads the plan to it.
    std::fs::remove_file(s.path().join("templates/web/role.yaml")).unwrap();
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(out.contains("# Role lab/reader will be destroyed"), "{out}");
    converge(&s, &srv, &[]);
    assert!(
        srv.get("rbac.authorization.k8s.io/v1", "Role", "lab", "reader")
            .is_none()
    );
    let parent = srv.get("v1", "ConfigMap", "lab", "labctl-lab").unwrap();
    assert_eq!(
        parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"],
        "ConfigMap,Deployment.apps,Namespace,Service",
        "the kind leaves the inventory once its last object is gone"
    );
    // A converged stack costs no inventory write.
    srv.reset_requests();
    converge(&s, &srv, &[]);
    assert_eq!(
        srv.requests_to("PATCH", "/api/v1/namespaces/lab/configmaps/labctl-lab"),
        0
    );
}
