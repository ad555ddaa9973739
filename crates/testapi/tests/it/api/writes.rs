//! Other writes and what the server does with them: generation, immutable fields, POST/PUT/merge
//! patch/DELETE, namespace deletion, Secret `stringData`.

use super::*;

#[test]
fn generation_moves_with_spec_only() {
    let srv = start();
    let d = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(2, "nginx:1"),
    )
    .json();
    assert_eq!(d["metadata"]["generation"], 1);
    let rv = |v: &Value| -> u64 {
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let rv1 = rv(&d);
    // Spec change: generation and resourceVersion move.
    let d = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(2, "nginx:2"),
    )
    .json();
    assert_eq!(d["metadata"]["generation"], 2);
    let rv2 = rv(&d);
    assert!(rv2 > rv1);
    // Metadata change: resourceVersion moves, generation does not.
    let with_label = deployment(2, "nginx:2").replace(
        "labels: {app: web}\nspec",
        "labels: {app: web, x: why}\nspec",
    );
    let d = apply(&srv, &format!("{DEPLOY}/web"), "labctl", &with_label).json();
    assert_eq!(d["metadata"]["labels"]["x"], "why");
    assert_eq!(d["metadata"]["generation"], 2);
    let rv3 = rv(&d);
    assert!(rv3 > rv2);
    // Status change (a controller): resourceVersion moves, generation does not.
    let d = srv
        .set_status(
            "apps/v1",
            "Deployment",
            "default",
            "web",
            json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 1}),
        )
        .unwrap();
    assert_eq!(d["metadata"]["generation"], 2);
    assert!(rv(&d) > rv3);
    assert_eq!(d["status"]["readyReplicas"], 1);
    assert!(
        managers(&d).contains(&("kube-controller-manager".into(), "Update".into())),
        "{d:#}"
    );
    let status_entry = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kube-controller-manager")
        .unwrap();
    assert_eq!(status_entry["subresource"], "status");
    // Status in an applied body is ignored on the main resource.
    let with_status = format!("{}status: {{replicas: 9}}\n", deployment(2, "nginx:2"));
    let d = apply(&srv, &format!("{DEPLOY}/web"), "labctl", &with_status).json();
    assert_eq!(d["status"]["replicas"], 2);
    // Server-set fields in the body are ignored.
    let sneaky = deployment(2, "nginx:2").replace(
        "  name: web\n",
        "  name: web\n  uid: 123\n  generation: 99\n  creationTimestamp: \"2000-01-01T00:00:00Z\"\n",
    );
    let d2 = apply(&srv, &format!("{DEPLOY}/web"), "labctl", &sneaky).json();
    assert_eq!(d2["metadata"]["uid"], d["metadata"]["uid"]);
    assert_eq!(d2["metadata"]["generation"], 2);
    assert_eq!(
        d2["metadata"]["creationTimestamp"],
        d["metadata"]["creationTimestamp"]
    );
}

#[test]
fn immutable_fields_are_rejected() {
    let srv = start();
    apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(2, "nginx:1"),
    );
    let changed = deployment(2, "nginx:1").replace(
        "selector:\n    matchLabels: {app: web}",
        "selector:\n    matchLabels: {app: web2}",
    );
    let r = apply(&srv, &format!("{DEPLOY}/web"), "labctl", &changed);
    assert_eq!(r.status, 422);
    let s = r.json();
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(s["details"]["kind"], "Deployment");
    assert_eq!(s["details"]["group"], "apps");
    assert_eq!(s["details"]["causes"][0]["field"], "spec.selector");
    assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueInvalid");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .starts_with("Deployment.apps \"web\" is invalid: spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web2\"}}")
    );
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .ends_with("field is immutable")
    );

    // StatefulSet: only some spec fields may change.
    let sts = |svc: &str, replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\nspec:\n  serviceName: {svc}\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: db}}}}\n  template:\n    metadata: {{labels: {{app: db}}}}\n    spec: {{containers: [{{name: db, image: pg}}]}}\n  volumeClaimTemplates:\n  - metadata: {{name: data}}\n    spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n"
        )
    };
    let path = "/apis/apps/v1/namespaces/default/statefulsets/db";
    assert_eq!(apply(&srv, path, "labctl", &sts("db", 1)).status, 201);
    assert_eq!(apply(&srv, path, "labctl", &sts("db", 3)).status, 200);
    // The simulated controller creates the claims, labelled from the selector.
    srv.complete_rollout("apps/v1", "StatefulSet", "default", "db")
        .unwrap();
    for i in 0..3 {
        let pvc = srv
            .get(
                "v1",
                "PersistentVolumeClaim",
                "default",
                &format!("data-db-{i}"),
            )
            .unwrap();
        assert_eq!(pvc["metadata"]["labels"]["app"], "db");
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
    }
    let r = apply(&srv, path, "labctl", &sts("db2", 3));
    assert_eq!(r.status, 422);
    let s = r.json();
    assert_eq!(s["details"]["causes"][0]["field"], "spec");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("updates to statefulset spec for fields other than 'replicas'")
    );
    let bigger = sts("db", 3).replace("storage: 1Gi", "storage: 2Gi");
    assert_eq!(apply(&srv, path, "labctl", &bigger).status, 422);

    // Service clusterIP.
    let svc = "/api/v1/namespaces/default/services/web";
    let s = apply(
        &srv,
        svc,
        "labctl",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n",
    )
    .json();
    let ip = s["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.43."));
    assert_eq!(s["spec"]["type"], "ClusterIP");
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
    // Defaulted fields are not owned by the applier.
    let owned = fields_of(&s, "labctl");
    assert!(owned["f:spec"].get("f:clusterIP").is_none());
    assert!(owned["f:spec"].get("f:type").is_none());
    assert!(
        owned["f:spec"]["f:ports"]
            .get("k:{\"port\":80,\"protocol\":\"TCP\"}")
            .is_some()
    );
    let r = apply(
        &srv,
        svc,
        "labctl",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: 10.43.9.9\n  selector: {app: web}\n  ports: [{port: 80}]\n",
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "Service \"web\" is invalid: spec.clusterIPs[0]: Invalid value: [\"10.43.9.9\"]: may not change once set"
    );
    // Re-applying without clusterIP keeps the allocated one.
    let s = apply(
        &srv,
        svc,
        "labctl",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web2}\n  ports: [{port: 80}]\n",
    )
    .json();
    assert_eq!(s["spec"]["clusterIP"], ip.as_str());

    // PVC storage class and shrinking.
    let pvc = "/api/v1/namespaces/default/persistentvolumeclaims/data";
    let body = |sc: &str, size: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data}}\nspec:\n  storageClassName: {sc}\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n"
        )
    };
    assert_eq!(
        apply(&srv, pvc, "labctl", &body("local-path", "2Gi")).status,
        201
    );
    assert_eq!(
        apply(&srv, pvc, "labctl", &body("local-path", "3Gi")).status,
        200
    );
    let r = apply(&srv, pvc, "labctl", &body("fast", "3Gi"));
    assert_eq!(r.status, 422);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("spec is immutable after creation")
    );
    let r = apply(&srv, pvc, "labctl", &body("local-path", "1Gi"));
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["details"]["causes"][0]["field"],
        "spec.resources.requests.storage"
    );

    // Immutable ConfigMap.
    let imm = |v: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: imm}}\nimmutable: true\ndata: {{k: {v}}}\n"
        )
    };
    assert_eq!(
        apply(&srv, &format!("{CM}/imm"), "labctl", &imm("a")).status,
        201
    );
    let r = apply(&srv, &format!("{CM}/imm"), "labctl", &imm("b"));
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "ConfigMap \"imm\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
}

#[test]
fn post_put_merge_patch_and_delete() {
    let srv = start();
    let r = request(
        &srv,
        "POST",
        CM,
        &[
            ("Content-Type", "application/json"),
            ("User-Agent", "kubectl/v1.32.4 (linux/amd64)"),
        ],
        Some(
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"p","labels":{"a":"b"}},"data":{"k":"v"}}"#,
        ),
    );
    assert_eq!(r.status, 201);
    let c = r.json();
    assert_eq!(managers(&c), [("kubectl".into(), "Update".into())]);
    assert_eq!(
        fields_of(&c, "kubectl"),
        &json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
    );
    let r = request(
        &srv,
        "POST",
        CM,
        &[("Content-Type", "application/json")],
        Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"p"}}"#),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "AlreadyExists");

    let r = request(
        &srv,
        "PATCH",
        &format!("{CM}/p?fieldManager=patcher"),
        &[("Content-Type", "application/merge-patch+json")],
        Some(r#"{"data":{"k":null,"n":"1"}}"#),
    );
    assert_eq!(r.status, 200);
    let c = r.json();
    assert_eq!(c["data"], json!({"n": "1"}));
    assert_eq!(fields_of(&c, "patcher"), &json!({"f:data": {"f:n": {}}}));
    assert!(fields_of(&c, "kubectl")["f:data"].get("f:k").is_none());

    // PUT with a stale resourceVersion is a conflict.
    let mut stale = c.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let r = request(
        &srv,
        "PUT",
        &format!("{CM}/p"),
        &[("Content-Type", "application/json")],
        Some(&stale.to_string()),
    );
    assert_eq!(r.status, 409);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );
    let mut fresh = c.clone();
    fresh["data"]["n"] = json!("2");
    let r = request(
        &srv,
        "PUT",
        &format!("{CM}/p?fieldManager=putter"),
        &[("Content-Type", "application/json")],
        Some(&fresh.to_string()),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["n"], "2");

    let r = request(
        &srv,
        "DELETE",
        &format!("{CM}/p"),
        &[],
        Some(r#"{"propagationPolicy":"Background"}"#),
    );
    assert_eq!(r.status, 200);
    let s = r.json();
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["status"], "Success");
    assert_eq!(s["details"]["name"], "p");
    assert_eq!(get(&srv, &format!("{CM}/p")).status, 404);
    assert_eq!(
        request(&srv, "DELETE", &format!("{CM}/p"), &[], None).status,
        404
    );
}

#[test]
fn namespace_deletion_terminates_then_removes_contents() {
    let srv = start();
    apply(
        &srv,
        "/api/v1/namespaces/demo",
        "labctl",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n",
    );
    apply(
        &srv,
        "/api/v1/namespaces/demo/configmaps/c",
        "labctl",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    let ns = request(&srv, "DELETE", "/api/v1/namespaces/demo", &[], None).json();
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string());
    // New content is refused while terminating.
    let r = apply(
        &srv,
        "/api/v1/namespaces/demo/configmaps/d",
        "labctl",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n",
    );
    assert_eq!(r.status, 403);
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.get("v1", "Namespace", "", "demo").is_some() {
        assert!(Instant::now() < deadline, "namespace never finalized");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(srv.get("v1", "ConfigMap", "demo", "c").is_none());
}

#[test]
fn secrets_string_data_becomes_data() {
    let srv = start();
    let s = apply(
        &srv,
        "/api/v1/namespaces/default/secrets/s",
        "labctl",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: s3cret}\n",
    )
    .json();
    assert_eq!(s["data"]["password"], "czNjcmV0");
    assert_eq!(s["type"], "Opaque");
    assert!(s.get("stringData").is_none());
    assert!(
        fields_of(&s, "labctl")["f:stringData"]
            .get("f:password")
            .is_some()
    );
}
