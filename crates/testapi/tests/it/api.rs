//! HTTP-level tests of the test API server against the real server's documented behaviour.

use crate::support::{apply, apply_q, get, request, start};
use labctl_testapi::{Options, TestApiServer};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CM: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments";

fn deployment(replicas: u32, image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: {image}
        ports:
        - containerPort: 80
"#
    )
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_string(),
                        e["operation"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn fields_of<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .map(|e| &e["fieldsV1"])
        .unwrap_or_else(|| panic!("no entry for {manager}: {obj:#}"))
}

#[test]
fn discovery_legacy_and_aggregated() {
    let srv = start();
    let v = get(&srv, "/version").json();
    assert_eq!(v["major"], "1");
    let api = get(&srv, "/api").json();
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], json!(["v1"]));
    let core = get(&srv, "/api/v1").json();
    assert_eq!(core["kind"], "APIResourceList");
    let res = core["resources"].as_array().unwrap();
    let find = |list: &[Value], n: &str| list.iter().find(|r| r["name"] == n).cloned().unwrap();
    let ns = find(res, "namespaces");
    assert_eq!(ns["namespaced"], false);
    assert_eq!(ns["kind"], "Namespace");
    assert_eq!(ns["shortNames"], json!(["ns"]));
    let cm = find(res, "configmaps");
    assert_eq!(cm["namespaced"], true);
    assert_eq!(cm["singularName"], "configmap");
    assert!(cm["verbs"].as_array().unwrap().contains(&json!("patch")));
    for n in [
        "secrets",
        "services",
        "serviceaccounts",
        "persistentvolumeclaims",
        "pods",
        "services/status",
    ] {
        find(res, n);
    }
    let groups = get(&srv, "/apis").json();
    assert_eq!(groups["kind"], "APIGroupList");
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for g in [
        "apps",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "networking.k8s.io",
    ] {
        assert!(names.contains(&g), "{g} missing from {names:?}");
    }
    let apps = get(&srv, "/apis/apps/v1").json();
    let deploy = find(apps["resources"].as_array().unwrap(), "deployments");
    assert_eq!(deploy["shortNames"], json!(["deploy"]));
    let rbac = get(&srv, "/apis/rbac.authorization.k8s.io/v1").json();
    assert_eq!(
        find(rbac["resources"].as_array().unwrap(), "clusterroles")["namespaced"],
        false
    );
    assert_eq!(get(&srv, "/apis/nope/v1").status, 404);

    // Aggregated discovery, as kube-rs and kubectl 1.32 ask for it.
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let r = request(&srv, "GET", "/apis", &[("Accept", accept)], None);
    assert_eq!(
        r.header("content-type"),
        Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    );
    let agg = r.json();
    assert_eq!(agg["kind"], "APIGroupDiscoveryList");
    let apps = agg["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "apps")
        .unwrap();
    let d = &apps["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "deployments")
        .unwrap();
    assert_eq!(d["scope"], "Namespaced");
    assert_eq!(d["responseKind"]["kind"], "Deployment");
    let core = request(&srv, "GET", "/api", &[("Accept", accept)], None).json();
    assert_eq!(core["items"][0]["versions"][0]["version"], "v1");
}

#[test]
fn not_found_is_a_real_status() {
    let srv = start();
    let r = get(&srv, &format!("{CM}/x"));
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "configmaps \"x\" not found", "reason": "NotFound",
               "details": {"name": "x", "kind": "configmaps"}, "code": 404})
    );
    let r = get(&srv, &format!("{DEPLOY}/web")).json();
    assert_eq!(r["message"], "deployments.apps \"web\" not found");
    assert_eq!(r["details"]["group"], "apps");
    // Apply into a namespace that does not exist.
    let r = apply(
        &srv,
        "/api/v1/namespaces/nope/configmaps/c",
        "t",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "namespaces \"nope\" not found");
}

fn cm_yaml(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {labels}\ndata: {{k: v}}\n"
    )
}

#[test]
fn list_with_every_selector_operator() {
    let srv = start();
    for (n, l) in [
        ("a", "{app: web, tier: front}"),
        ("b", "{app: db, tier: back}"),
        ("c", "{app: cache}"),
        ("d", "{}"),
    ] {
        assert_eq!(
            apply(&srv, &format!("{CM}/{n}"), "t", &cm_yaml(n, l)).status,
            201
        );
    }
    let names = |sel: &str| -> Vec<String> {
        let enc = sel
            .replace('%', "%25")
            .replace(' ', "+")
            .replace('=', "%3D")
            .replace('!', "%21")
            .replace('(', "%28")
            .replace(')', "%29")
            .replace(',', "%2C");
        let r = get(&srv, &format!("{CM}?labelSelector={enc}"));
        assert_eq!(r.status, 200, "{sel}: {}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["kind"], "ConfigMapList");
        assert_eq!(v["apiVersion"], "v1");
        assert!(v["metadata"]["resourceVersion"].is_string());
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("app=web"), ["a"]);
    assert_eq!(names("app==db"), ["b"]);
    assert_eq!(names("app!=web"), ["b", "c", "d"]);
    assert_eq!(names("app in (web,cache)"), ["a", "c"]);
    assert_eq!(names("app notin (web,cache)"), ["b", "d"]);
    assert_eq!(names("tier"), ["a", "b"]);
    assert_eq!(names("!tier"), ["c", "d"]);
    assert_eq!(names("app in (web,db),tier=back"), ["b"]);
    assert_eq!(names(""), ["a", "b", "c", "d"]);
    // All namespaces, and field selectors.
    let all = get(&srv, "/api/v1/configmaps?labelSelector=app%3Dweb").json();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    // Items of typed lists carry no apiVersion/kind, as on the real server.
    assert!(all["items"][0].get("kind").is_none());
    assert!(all["items"][0].get("apiVersion").is_none());
    let f = get(&srv, &format!("{CM}?fieldSelector=metadata.name%3Dc")).json();
    assert_eq!(f["items"][0]["metadata"]["name"], "c");
    // Cluster-scoped list.
    let ns = get(&srv, "/api/v1/namespaces").json();
    assert_eq!(ns["kind"], "NamespaceList");
    assert_eq!(ns["items"].as_array().unwrap().len(), 4);
    // A malformed selector is a 400.
    assert_eq!(
        get(&srv, &format!("{CM}?labelSelector=app+in+web")).status,
        400
    );
}

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

#[test]
fn hooks_counters_latency_and_auto_rollout() {
    let srv = TestApiServer::start_blocking(Options {
        auto_rollout: true,
        latency: Duration::from_millis(30),
        ..Options::default()
    })
    .unwrap();
    srv.reset_requests();
    let t = Instant::now();
    get(&srv, "/api/v1/namespaces");
    get(&srv, "/api/v1/namespaces");
    assert!(t.elapsed() >= Duration::from_millis(60));
    assert_eq!(srv.requests(), 2);
    assert_eq!(srv.requests_to("GET", "/api/v1/namespaces"), 2);
    srv.set_latency(Duration::ZERO);
    srv.reset_requests();
    assert_eq!(srv.requests(), 0);

    let d = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(3, "nginx:1"),
    )
    .json();
    assert_eq!(d["status"]["observedGeneration"], 1);
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(d["status"]["availableReplicas"], 3);
    let rev = |d: &Value| d["metadata"]["annotations"]["deployment.kubernetes.io/revision"].clone();
    assert_eq!(rev(&d), "1");
    assert_eq!(
        d["spec"]["template"]["metadata"]["creationTimestamp"],
        Value::Null
    );
    let d = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(3, "nginx:2"),
    )
    .json();
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["status"]["observedGeneration"], 2);
    assert_eq!(rev(&d), "2");
    let d = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(4, "nginx:2"),
    )
    .json();
    assert_eq!(d["status"]["observedGeneration"], 3);
    assert_eq!(d["status"]["readyReplicas"], 4);
    assert_eq!(rev(&d), "2");
    // The controller's annotation is not labctl's: re-applying keeps it, and owns nothing new.
    assert!(
        fields_of(&d, "labctl")["f:metadata"]
            .get("f:annotations")
            .is_none()
    );

    srv.set_auto_rollout(false);
    let d = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(3, "nginx:3"),
    )
    .json();
    assert_eq!(d["status"]["observedGeneration"], 3);
    let d = srv
        .complete_rollout("apps/v1", "Deployment", "default", "web")
        .unwrap();
    assert_eq!(d["status"]["observedGeneration"], 4);
    assert_eq!(rev(&d), "3");

    // Objects stored directly, listed back.
    srv.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "raw", "namespace": "default"}}))
        .unwrap();
    assert_eq!(srv.list("v1", "ConfigMap", Some("default")).len(), 1);
    assert!(srv.objects().len() >= 6);
    srv.delete("v1", "ConfigMap", "default", "raw").unwrap();
    assert!(srv.get("v1", "ConfigMap", "default", "raw").is_none());
}

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
fn async_start_serves_on_the_callers_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let srv = TestApiServer::start(Options::default()).await.unwrap();
        let addr = srv.addr();
        let body = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert!(body.contains("APIVersions"));
        let kc = std::fs::read_to_string(srv.kubeconfig_path()).unwrap();
        assert!(kc.contains(&format!("server: http://{addr}")));
    });
}

#[test]
fn watch_streams_events() {
    let srv = start();
    apply(&srv, &format!("{CM}/a"), "t", &cm_yaml("a", "{x: y}"));
    let rv = srv.resource_version();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            get(
                &srv,
                &format!("{CM}?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
            )
        });
        std::thread::sleep(Duration::from_millis(200));
        apply(&srv, &format!("{CM}/b"), "t", &cm_yaml("b", "{x: z}"));
        let r = h.join().unwrap();
        let text = String::from_utf8(r.body).unwrap();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 1, "{text}");
        assert_eq!(events[0]["type"], "ADDED");
        assert_eq!(events[0]["object"]["metadata"]["name"], "b");
    });
}

#[test]
fn lists_page_with_limit_and_continue() {
    let srv = start();
    for i in 0..5 {
        apply(
            &srv,
            &format!("{CM}/c{i}"),
            "t",
            &cm_yaml(&format!("c{i}"), "{}"),
        );
    }
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = get(&srv, &format!("{CM}?limit=2&continue={token}")).json();
        pages += 1;
        for i in r["items"].as_array().unwrap() {
            names.push(i["metadata"]["name"].as_str().unwrap().to_string());
        }
        match r["metadata"]["continue"].as_str() {
            Some(t) => {
                if pages == 1 {
                    assert_eq!(r["metadata"]["remainingItemCount"], 3);
                }
                token = t.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    assert_eq!(get(&srv, &format!("{CM}?limit=2&continue=zz")).status, 400);
    // An unpaged LIST is written straight from the store; one page holding every object is
    // built as a value: the two give the same body, typed items included.
    let whole = get(&srv, CM).json();
    let one_page = get(&srv, &format!("{CM}?limit=10")).json();
    // Compared as text: the order of every object's fields too.
    assert_eq!(whole.to_string(), one_page.to_string());
    assert_eq!(whole["kind"], "ConfigMapList");
    assert!(whole["items"][0].get("kind").is_none(), "{whole}");
    assert_eq!(whole["items"].as_array().unwrap().len(), 5);
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
fn request_log_and_injected_errors() {
    let srv = start();
    srv.reset_requests();
    srv.inject_error(
        "GET",
        "/api/v1/namespaces/default/configmaps",
        labctl_testapi::ApiError::internal("etcdserver: request timed out".into()),
        1,
    );
    let r = get(&srv, &format!("{CM}?labelSelector=a%3Db"));
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["message"], "etcdserver: request timed out");
    assert_eq!(get(&srv, CM).status, 200);
    assert_eq!(
        srv.request_log(),
        [format!("GET {CM}?labelSelector=a%3Db"), format!("GET {CM}"),]
    );
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TestApiServer>();
}

#[test]
fn yaml_seeding_and_control_endpoints() {
    let srv = start();
    let n = srv
        .apply_yaml(
            "labctl",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: seed}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: seed}\n---\n",
        )
        .unwrap();
    assert_eq!(n, 2);
    assert!(srv.get("v1", "ConfigMap", "seed", "a").is_some());
    srv.reset_requests();
    get(&srv, "/api");
    let c = get(&srv, "/testapi/requests").json();
    assert_eq!(c["total"], 1);
    assert_eq!(c["routes"]["GET /api"], 1);
    request(&srv, "POST", "/testapi/latency?ms=20", &[], None);
    let t = Instant::now();
    get(&srv, "/api");
    assert!(t.elapsed() >= Duration::from_millis(20));
    request(&srv, "POST", "/testapi/reset", &[], None);
    assert_eq!(srv.requests(), 0);
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
