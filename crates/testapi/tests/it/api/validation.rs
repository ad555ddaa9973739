//! Validation as the real server words it, and CRDs becoming served resources.

use super::*;

#[test]
fn crds_become_served_resources() {
    let srv = start();
    let crd = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;
    let r = apply(
        &srv,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        "labctl",
        crd,
    );
    assert_eq!(r.status, 201);
    let crd = r.json();
    let established = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established, "{crd:#}");
    assert_eq!(crd["status"]["acceptedNames"]["listKind"], "WidgetList");
    let list = get(&srv, "/apis/example.com/v1").json();
    assert_eq!(list["resources"][0]["name"], "widgets");
    let r = apply(
        &srv,
        "/apis/example.com/v1/namespaces/default/widgets/w",
        "labctl",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 3}\n",
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["metadata"]["generation"], 1);
    let widgets = get(&srv, "/apis/example.com/v1/widgets").json();
    assert_eq!(widgets["kind"], "WidgetList");
    assert_eq!(widgets["items"][0]["kind"], "Widget");

    // The group's OpenAPI v3 document is served (from memory after the first read) while the
    // CRD exists, and no longer once it is gone.
    let doc = "/openapi/v3/apis/example.com/v1";
    for _ in 0..2 {
        let r = get(&srv, doc);
        assert_eq!(r.status, 200);
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert!(text.contains("com.example.v1.Widget"), "{text}");
    }
    let crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com";
    assert_eq!(request(&srv, "DELETE", crd_path, &[], None).status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&srv, doc).status != 404 {
        assert!(
            Instant::now() < deadline,
            "{doc} still served after the CRD went"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn validation_messages_match_the_real_server() {
    let srv = start();
    let r = apply(
        &srv,
        &format!("{CM}/Bad_Name"),
        "t",
        &cm_yaml("Bad_Name", "{}"),
    );
    assert_eq!(r.status, 422);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{}",
        r.json()["message"]
    );
    let r = apply(
        &srv,
        &format!("{CM}/c"),
        "t",
        &cm_yaml("c", "{app: 'has space'}"),
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["causes"][0]["field"], "metadata.labels");

    let mismatch = deployment(1, "nginx").replace(
        "    metadata:\n      labels: {app: web}",
        "    metadata:\n      labels: {app: other}",
    );
    let r = apply(&srv, &format!("{DEPLOY}/web"), "t", &mismatch);
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "Deployment.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`"
    );

    let svc = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: NodePort\n  ports: [{{port: 80, nodePort: 30080}}]\n"
        )
    };
    assert_eq!(
        apply(
            &srv,
            "/api/v1/namespaces/default/services/a",
            "t",
            &svc("a")
        )
        .status,
        201
    );
    let r = apply(
        &srv,
        "/api/v1/namespaces/default/services/b",
        "t",
        &svc("b"),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "Service \"b\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );
    // Re-applying the owner of the port is fine.
    assert_eq!(
        apply(
            &srv,
            "/api/v1/namespaces/default/services/a",
            "t",
            &svc("a")
        )
        .status,
        200
    );
}

#[test]
fn duplicate_list_keys_fail_like_the_real_server() {
    let srv = start();
    let dup = deployment(1, "nginx").replace(
        "        - containerPort: 80\n",
        "        - containerPort: 80\n        env: [{name: FOO, value: a}, {name: FOO, value: b}]\n",
    );
    let r = apply(&srv, &format!("{DEPLOY}/web"), "t", &dup);
    assert_eq!(r.status, 500);
    let s = r.json();
    assert!(s.get("reason").is_none());
    assert_eq!(
        s["message"],
        "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers[name=\"web\"].env: duplicate entries for key [name=\"FOO\"]"
    );
}

#[test]
fn undeclared_fields_are_rejected_like_the_real_server() {
    let srv = start();
    let typo = deployment(1, "nginx")
        .replace("  replicas: 1\n", "  replica: 1\n")
        .replace(
            "        image: nginx\n",
            "        image: nginx\n        imagePullPolicyy: Always\n",
        );
    let r = apply(&srv, &format!("{DEPLOY}/web"), "t", &typo);
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["message"],
        "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): errors:\n  .spec.replica: field not declared in schema\n  .spec.template.spec.containers[name=\"web\"].imagePullPolicyy: field not declared in schema"
    );
    // Maps with free-form keys (labels, data, resources) are not checked.
    let ok = deployment(1, "nginx").replace(
        "        image: nginx\n",
        "        image: nginx\n        resources: {limits: {cpu: 100m, example.com/gpu: 1}}\n",
    );
    assert_eq!(apply(&srv, &format!("{DEPLOY}/web"), "t", &ok).status, 201);

    // Strict decoding for create/update: 400; without Strict: accepted.
    let body =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labelz":{}},"datta":{}}"#;
    let r = request(
        &srv,
        "POST",
        &format!("{CM}?fieldValidation=Strict"),
        &[("Content-Type", "application/json")],
        Some(body),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"metadata.labelz\", unknown field \"datta\""
    );
    let r = request(
        &srv,
        "POST",
        CM,
        &[("Content-Type", "application/json")],
        Some(body),
    );
    assert_eq!(r.status, 201);
}
