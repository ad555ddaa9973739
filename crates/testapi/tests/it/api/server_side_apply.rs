//! Server-side apply: merges, field managers, conflicts and shared ownership, dry runs, lists merged
//! by key, preconditions and the scale subresource.

use super::*;

#[test]
fn apply_creates_merges_and_removes_dropped_fields() {
    let srv = start();
    let r = apply(
        &srv,
        &format!("{CM}/c"),
        "labctl",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {a: '1', b: '2'}\ndata: {x: '1', y: '2'}\n",
    );
    assert_eq!(r.status, 201);
    let c = r.json();
    assert!(c["metadata"]["uid"].as_str().unwrap().len() == 36);
    assert!(c["metadata"]["creationTimestamp"].is_string());
    assert!(c["metadata"].get("generation").is_none());
    let rv1: u64 = c["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(managers(&c), [("labctl".into(), "Apply".into())]);
    let mf = &c["metadata"]["managedFields"][0];
    assert_eq!(mf["apiVersion"], "v1");
    assert_eq!(mf["fieldsType"], "FieldsV1");
    assert!(mf["time"].is_string());
    assert_eq!(
        mf["fieldsV1"],
        json!({"f:data": {"f:x": {}, "f:y": {}}, "f:metadata": {"f:labels": {"f:a": {}, "f:b": {}}}})
    );

    // Another manager adds a key (shared object, disjoint fields).
    srv.apply_as(
        "other",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"z": "3"}}),
    )
    .unwrap();

    // labctl stops applying y and label b: they go; z (other's) stays.
    let r = apply(
        &srv,
        &format!("{CM}/c"),
        "labctl",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {a: '1'}\ndata: {x: '1'}\n",
    );
    assert_eq!(r.status, 200);
    let c = r.json();
    assert_eq!(c["data"], json!({"x": "1", "z": "3"}));
    assert_eq!(c["metadata"]["labels"], json!({"a": "1"}));
    let rv2: u64 = c["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);

    // A no-op apply changes nothing, not even the resourceVersion.
    let again = apply(
        &srv,
        &format!("{CM}/c"),
        "labctl",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {a: '1'}\ndata: {x: '1'}\n",
    )
    .json();
    assert_eq!(again, c);

    // Removing all labels removes the labels map.
    let c = apply(
        &srv,
        &format!("{CM}/c"),
        "labctl",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata: {x: '1'}\n",
    )
    .json();
    assert!(c["metadata"].get("labels").is_none(), "{c:#}");
}

#[test]
fn apply_needs_a_field_manager_and_matching_names() {
    let srv = start();
    let r = request(
        &srv,
        "PATCH",
        &format!("{CM}/c"),
        &[("Content-Type", "application/apply-patch+yaml")],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["reason"], "BadRequest");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("fieldManager is required")
    );
    let r = apply(
        &srv,
        &format!("{CM}/c"),
        "m",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
    );
    assert_eq!(r.status, 400);
    // JSON bodies are accepted too.
    let r = apply(
        &srv,
        &format!("{CM}/c"),
        "m",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"b"}}"#,
    );
    assert_eq!(r.status, 201);
}

#[test]
fn conflicts_force_and_shared_ownership() {
    let srv = start();
    assert_eq!(
        apply(
            &srv,
            &format!("{DEPLOY}/web"),
            "labctl",
            &deployment(2, "nginx:1")
        )
        .status,
        201
    );
    // Same values from another manager: shared ownership, no conflict.
    let r = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "helm",
        &deployment(2, "nginx:1"),
    );
    assert_eq!(r.status, 200);
    let d = r.json();
    assert_eq!(fields_of(&d, "helm")["f:spec"]["f:replicas"], json!({}));
    assert_eq!(fields_of(&d, "labctl")["f:spec"]["f:replicas"], json!({}));

    // A different value: 409 with the real Status body.
    let r = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "other",
        &deployment(3, "nginx:1"),
    );
    assert_eq!(r.status, 409);
    let s = r.json();
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["status"], "Failure");
    assert_eq!(s["reason"], "Conflict");
    assert_eq!(s["code"], 409);
    let causes = s["details"]["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 2, "{s:#}");
    for c in causes {
        assert_eq!(c["reason"], "FieldManagerConflict");
        assert_eq!(c["field"], ".spec.replicas");
    }
    let msgs: Vec<&str> = causes
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert!(msgs.contains(&"conflict with \"helm\""));
    assert!(msgs.contains(&"conflict with \"labctl\""));
    assert_eq!(
        s["message"],
        "Apply failed with 2 conflicts: conflicts with \"helm\":\n- .spec.replicas\nconflicts with \"labctl\":\n- .spec.replicas"
    );
    assert_eq!(
        srv.get("apps/v1", "Deployment", "default", "web").unwrap()["spec"]["replicas"],
        2
    );

    // A conflict with an Update manager names its apiVersion, as the real message does.
    let mut d = srv.get("apps/v1", "Deployment", "default", "web").unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    srv.update_as("kubectl-client-side-apply", d).unwrap();
    let r = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(2, "nginx:1"),
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.template.spec.containers[name=\"web\"].image"
    );

    // force=true takes ownership away from the others.
    let r = apply_q(
        &srv,
        &format!("{DEPLOY}/web"),
        "fieldManager=other&force=true",
        &deployment(3, "nginx:2"),
    );
    assert_eq!(r.status, 200);
    let d = r.json();
    assert_eq!(d["spec"]["replicas"], 3);
    assert!(
        fields_of(&d, "labctl")["f:spec"]
            .get("f:replicas")
            .is_none()
    );
    assert!(fields_of(&d, "helm")["f:spec"].get("f:replicas").is_none());
    assert_eq!(fields_of(&d, "other")["f:spec"]["f:replicas"], json!({}));
    // The image was applied with the value the Update manager set: shared, not taken.
    assert_eq!(
        fields_of(&d, "kubectl-client-side-apply")["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"web\"}"]["f:image"],
        json!({})
    );
    // Apply entries sort before Update entries, as on the real server.
    let ops: Vec<String> = managers(&d).into_iter().map(|(_, o)| o).collect();
    let mut sorted = ops.clone();
    sorted.sort();
    assert_eq!(ops, sorted);
}

#[test]
fn dry_run_stores_nothing() {
    let srv = start();
    let rv0 = srv.resource_version();
    let r = apply_q(
        &srv,
        &format!("{DEPLOY}/web"),
        "fieldManager=labctl&dryRun=All",
        &deployment(2, "nginx:1"),
    );
    assert_eq!(r.status, 201);
    let d = r.json();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["generation"], 1);
    assert!(d["metadata"].get("resourceVersion").is_none());
    assert!(srv.get("apps/v1", "Deployment", "default", "web").is_none());
    assert_eq!(srv.resource_version(), rv0);

    apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(2, "nginx:1"),
    );
    let live = srv.get("apps/v1", "Deployment", "default", "web").unwrap();
    let d = apply_q(
        &srv,
        &format!("{DEPLOY}/web"),
        "fieldManager=labctl&dryRun=All",
        &deployment(5, "nginx:1"),
    )
    .json();
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(
        d["metadata"]["resourceVersion"],
        live["metadata"]["resourceVersion"]
    );
    assert_eq!(
        srv.get("apps/v1", "Deployment", "default", "web").unwrap(),
        live
    );
    // Dry-run delete.
    let r = request(
        &srv,
        "DELETE",
        &format!("{DEPLOY}/web?dryRun=All"),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    assert!(srv.get("apps/v1", "Deployment", "default", "web").is_some());
}

#[test]
fn associative_lists_merge_by_key() {
    let srv = start();
    apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(1, "nginx:1"),
    );
    // Another manager adds a sidecar container; labctl's container stays.
    srv.apply_as(
        "mesh",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}}),
    )
    .unwrap();
    let d = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(1, "nginx:2"),
    )
    .json();
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "proxy"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    // Defaults inside list items stay (unowned), e.g. imagePullPolicy.
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    // The mesh manager drops its container: it goes.
    let d = srv
        .apply_as(
            "mesh",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
        )
        .unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn preconditions_and_managed_fields_rewrites() {
    let srv = start();
    let c = apply(&srv, &format!("{CM}/c"), "a", &cm_yaml("c", "{x: one}")).json();
    // An applied resourceVersion is a precondition.
    let stale =
        cm_yaml("c", "{x: two}").replace("  name: c\n", "  name: c\n  resourceVersion: \"1\"\n");
    assert_eq!(apply(&srv, &format!("{CM}/c"), "a", &stale).status, 409);
    let rv = c["metadata"]["resourceVersion"].as_str().unwrap();
    let fresh = cm_yaml("c", "{x: two}").replace(
        "  name: c\n",
        &format!("  name: c\n  resourceVersion: \"{rv}\"\n"),
    );
    assert_eq!(apply(&srv, &format!("{CM}/c"), "a", &fresh).status, 200);
    // `managedFields: [{}]` in a merge patch clears ownership, as documented upstream.
    let r = request(
        &srv,
        "PATCH",
        &format!("{CM}/c"),
        &[("Content-Type", "application/merge-patch+json")],
        Some(r#"{"metadata":{"managedFields":[{}]}}"#),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.json()["metadata"].get("managedFields").is_none(),
        "{:#}",
        r.json()
    );
    // ... and an empty list changes nothing.
    apply(&srv, &format!("{CM}/c"), "a", &cm_yaml("c", "{x: two}"));
    let r = request(
        &srv,
        "PATCH",
        &format!("{CM}/c"),
        &[("Content-Type", "application/merge-patch+json")],
        Some(r#"{"metadata":{"managedFields":[]}}"#),
    );
    assert_eq!(managers(&r.json()), [("a".into(), "Apply".into())]);
}

#[test]
fn scale_subresource_takes_replicas_ownership() {
    let srv = start();
    apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(2, "nginx"),
    );
    let s = get(&srv, &format!("{DEPLOY}/web/scale")).json();
    assert_eq!(s["kind"], "Scale");
    assert_eq!(s["apiVersion"], "autoscaling/v1");
    assert_eq!(s["spec"]["replicas"], 2);
    assert_eq!(s["status"]["selector"], "app=web");
    let r = request(
        &srv,
        "PATCH",
        &format!("{DEPLOY}/web/scale"),
        &[
            ("Content-Type", "application/merge-patch+json"),
            ("User-Agent", "kubectl/v1.32.4 (linux/amd64) kubernetes/abc"),
        ],
        Some(r#"{"spec":{"replicas":4}}"#),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["spec"]["replicas"], 4);
    let d = srv.get("apps/v1", "Deployment", "default", "web").unwrap();
    assert_eq!(d["metadata"]["generation"], 2);
    let r = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(2, "nginx"),
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
}
