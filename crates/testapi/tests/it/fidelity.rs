//! The behaviours issue 12 adds to the test API server beyond the recorded exchanges: the
//! hooks labctl's tests use (admission refusals, namespace-limited accounts), OpenAPI v3
//! documents carrying the recorded merge extensions, merge by those extensions, and quota
//! accounting.

use crate::support::{apply, apply_q, get, request, start};
use labctl_testapi::ApiError;
use serde_json::{Value, json};

const SVC: &str = "/api/v1/namespaces/default/services";

fn service(name: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]},
    })
    .to_string()
}

#[test]
fn refusal_hook_answers_dry_runs_and_writes_alike() {
    let srv = start();
    let refusal = ApiError::custom(
        403,
        "Forbidden",
        "admission webhook \"policy.example.com\" denied the request: no public services",
        None,
    );
    srv.refuse("Service", "web", refusal.clone());
    let dry = apply_q(
        &srv,
        &format!("{SVC}/web"),
        "fieldManager=labctl&dryRun=All",
        &service("web"),
    );
    let real = apply(&srv, &format!("{SVC}/web"), "labctl", &service("web"));
    for r in [&dry, &real] {
        assert_eq!(r.status, 403);
        assert_eq!(r.json(), refusal.body());
    }
    assert_eq!(
        get(&srv, &format!("{SVC}/web")).status,
        404,
        "nothing written"
    );
    // Other objects are admitted; clearing lifts the refusal.
    assert_eq!(
        apply(&srv, &format!("{SVC}/api"), "labctl", &service("api")).status,
        201
    );
    srv.clear_refusals();
    assert_eq!(
        apply(&srv, &format!("{SVC}/web"), "labctl", &service("web")).status,
        201
    );
    // A refusal of an existing object's update, in one namespace only.
    srv.refuse_in(
        "default",
        "Service",
        "web",
        ApiError::custom(422, "Invalid", "denied", None),
    );
    let again = apply(&srv, &format!("{SVC}/web"), "labctl", &service("web"));
    assert_eq!(again.status, 422);
}

#[test]
fn namespaced_account_gets_the_real_rbac_refusals() {
    let srv = start();
    request(
        &srv,
        "POST",
        "/api/v1/namespaces",
        &[("Content-Type", "application/json")],
        Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"demo"}}"#),
    );
    let token = srv.namespaced_token("system:serviceaccount:demo:limited", &["demo"]);
    let bearer = format!("Bearer {token}");
    let as_limited = |method: &str, path: &str, body: Option<&str>| {
        let mut h = vec![("Authorization", bearer.as_str())];
        if body.is_some() {
            h.push(("Content-Type", "application/apply-patch+yaml"));
        }
        request(&srv, method, path, &h, body)
    };
    let all = as_limited("GET", "/api/v1/configmaps", None);
    assert_eq!(all.status, 403);
    assert_eq!(
        all.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
               "message":"configmaps is forbidden: User \"system:serviceaccount:demo:limited\" cannot list resource \"configmaps\" in API group \"\" at the cluster scope",
               "reason":"Forbidden","details":{"kind":"configmaps"},"code":403})
    );
    let ns = as_limited("GET", "/api/v1/namespaces/demo", None);
    assert_eq!(ns.status, 403);
    assert_eq!(
        ns.json()["message"],
        "namespaces \"demo\" is forbidden: User \"system:serviceaccount:demo:limited\" cannot get resource \"namespaces\" in API group \"\" in the namespace \"demo\""
    );
    assert_eq!(
        ns.json()["details"],
        json!({"name": "demo", "kind": "namespaces"})
    );
    let deploys = as_limited("GET", "/apis/apps/v1/namespaces/default/deployments", None);
    assert_eq!(deploys.status, 403);
    assert_eq!(
        deploys.json()["message"],
        "deployments.apps is forbidden: User \"system:serviceaccount:demo:limited\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"default\""
    );
    assert_eq!(
        as_limited("GET", "/api/v1/namespaces/demo/configmaps", None).status,
        200
    );
    let write = as_limited(
        "PATCH",
        "/api/v1/namespaces/demo/configmaps/c?fieldManager=labctl",
        Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1"}}"#),
    );
    assert_eq!(write.status, 201);
    assert_eq!(as_limited("GET", "/apis", None).status, 200, "discovery");
    let watch = as_limited("GET", "/api/v1/configmaps?watch=true", None);
    assert_eq!(watch.status, 403, "a cluster-wide watch is refused too");
    // A token the server never issued is not an account.
    let bad = request(
        &srv,
        "GET",
        "/api/v1/namespaces/demo/configmaps",
        &[("Authorization", "Bearer forged")],
        None,
    );
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["reason"], "Unauthorized");
    // The kubeconfig for the token carries it and the namespace.
    let kc = srv.kubeconfig_for_token(&token, "demo").unwrap();
    let text = std::fs::read_to_string(kc).unwrap();
    assert!(text.contains(&format!("token: {token}")) && text.contains("namespace: demo"));
}

#[test]
fn quota_counts_admitted_creates() {
    let srv = start();
    let q = request(
        &srv,
        "POST",
        "/api/v1/namespaces/default/resourcequotas",
        &[("Content-Type", "application/json")],
        Some(
            r#"{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"two"},"spec":{"hard":{"configmaps":"2"}}}"#,
        ),
    );
    assert_eq!(q.status, 201);
    let cm = |n: &str| {
        apply(
            &srv,
            &format!("/api/v1/namespaces/default/configmaps/{n}"),
            "labctl",
            &format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{n}"}}}}"#),
        )
    };
    // Not enforced before the controller writes status.hard.
    assert_eq!(cm("a").status, 201);
    srv.set_status(
        "v1",
        "ResourceQuota",
        "default",
        "two",
        json!({"hard": {"configmaps": "2"}, "used": {"configmaps": "1"}}),
    )
    .unwrap();
    assert_eq!(cm("b").status, 201);
    let used =
        srv.get("v1", "ResourceQuota", "default", "two").unwrap()["status"]["used"]["configmaps"]
            .clone();
    assert_eq!(used, "2", "the admitted create is counted");
    let refused = cm("c");
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.json()["message"],
        "configmaps \"c\" is forbidden: exceeded quota: two, requested: configmaps=1, used: configmaps=2, limited: configmaps=2"
    );
}

#[test]
fn openapi_v3_serves_the_recorded_merge_extensions() {
    let srv = start();
    let index = get(&srv, "/openapi/v3");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "the real server's Content-Type for the index"
    );
    let index = index.json();
    let url = |p: &str| {
        index["paths"][p]["serverRelativeURL"]
            .as_str()
            .unwrap_or_else(|| panic!("no {p} in {index}"))
            .to_string()
    };
    let core = get(&srv, &url("api/v1"));
    assert_eq!(core.header("content-type"), Some("application/json"));
    let apps = get(&srv, &url("apis/apps/v1")).json();
    let core = core.json();
    let prop = |doc: &Value, schema: &str, p: &str| {
        doc["components"]["schemas"][schema]["properties"][p].clone()
    };
    let ports = prop(&core, "io.k8s.api.core.v1.ServiceSpec", "ports");
    assert_eq!(ports["type"], "array");
    assert_eq!(ports["x-kubernetes-list-type"], "map");
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        json!(["port", "protocol"])
    );
    assert_eq!(
        prop(&apps, "io.k8s.api.core.v1.PodSpec", "containers")["x-kubernetes-list-map-keys"],
        json!(["name"])
    );
    assert_eq!(
        core["components"]["schemas"]["io.k8s.api.core.v1.ObjectFieldSelector"]["x-kubernetes-map-type"],
        "atomic"
    );
    assert_eq!(
        apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"]
            [0]["kind"],
        "Deployment"
    );

    // Every entry of the recorded table whose schema a document carries is served as recorded.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/transcripts/13-list-semantics.json"
    ))
    .unwrap();
    let table: Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for (key, want) in table["properties"].as_object().unwrap() {
        let (schema, p) = match key.rsplit_once('.') {
            Some((s, p)) if p.chars().next().is_some_and(char::is_lowercase) => (s, Some(p)),
            _ => (key.as_str(), None),
        };
        let doc = [&core, &apps]
            .into_iter()
            .find(|d| d["components"]["schemas"].get(schema).is_some())
            .unwrap_or_else(|| panic!("no document carries {schema}"));
        let got = match p {
            Some(p) => prop(doc, schema, p),
            None => doc["components"]["schemas"][schema].clone(),
        };
        for ext in [
            "x-kubernetes-list-type",
            "x-kubernetes-list-map-keys",
            "x-kubernetes-map-type",
        ] {
            let got = got.get(ext).cloned().unwrap_or(Value::Null);
            assert_eq!(got, want[ext], "{key} {ext}");
        }
        checked += 1;
    }
    assert_eq!(checked, table["properties"].as_object().unwrap().len());
}

#[test]
fn atomic_map_from_the_table_conflicts_as_a_whole() {
    // PodSpec.nodeSelector is `map-type: atomic` in the recorded table: a second applier
    // setting another key replaces the whole map, so it conflicts with the first owner.
    let srv = start();
    let deploy = |sel: Value| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"nodeSelector": sel, "containers": [{"name": "web", "image": "nginx:1.27"}]}},
            },
        })
        .to_string()
    };
    let path = "/apis/apps/v1/namespaces/default/deployments/web";
    assert_eq!(
        apply(&srv, path, "labctl", &deploy(json!({"disk": "ssd"}))).status,
        201
    );
    let fields =
        get(&srv, path).json()["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:template"]
            ["f:spec"]["f:nodeSelector"]
            .clone();
    assert_eq!(fields, json!({}), "an atomic map is one leaf");
    let other = apply(&srv, path, "other", &deploy(json!({"zone": "a"})));
    assert_eq!(
        other.status,
        409,
        "{}",
        String::from_utf8_lossy(&other.body)
    );
    assert_eq!(
        other.json()["details"]["causes"][0]["field"],
        ".spec.template.spec.nodeSelector"
    );
}
