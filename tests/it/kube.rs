//! The Kubernetes plane, end to end: the real `labctl` binary against the project's test API
//! server (`labctl-testapi`). Every apply is followed by a plan that must say `No changes.`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{
    BARE, Labctl, Stack, assert_huge_pages_allowed_here, huge_pages_enabled, wait_for,
};
use labctl_testapi::{Options, TestApiServer};
use serde_json::{Value, json};

/// A kube-only test stack: the built-in components disabled, plus `[kube.extra.*]` tables.
fn stack(extra: &str) -> Stack {
    Stack::new(&format!("{BARE}\n{extra}"))
}

const WEB: &str = r#"[kube.extra.web]
values = { image = "nginx:1", replicas = 2, greeting = "hi", farewell = "bye" }
"#;

const WEB_TEMPLATE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: {{ c.values.greeting }}
  farewell: {{ c.values.farewell }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{ c.values.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/name: web
  template:
    metadata:
      labels:
        app.kubernetes.io/name: web
    spec:
      containers:
        - name: web
          image: {{ c.values.image }}
          ports:
            - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app.kubernetes.io/name: web
  ports:
    - port: 80
"#;

fn web() -> Stack {
    let s = stack(WEB);
    s.file("templates/web/web.yaml", WEB_TEMPLATE);
    s
}

fn server(auto_rollout: bool) -> TestApiServer {
    TestApiServer::start_blocking(Options {
        auto_rollout,
        ..Options::default()
    })
    .expect("test API server")
}

/// `labctl --kubeconfig <kubeconfig> <args> --plane kube` on a stack.
fn labctl(s: &Stack, kubeconfig: &Path, args: &[&str]) -> Labctl {
    s.labctl(&["--kubeconfig"])
        .arg(kubeconfig)
        .args(args)
        .args(["--plane", "kube"])
}

fn apply(s: &Stack, srv: &TestApiServer, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["apply", "--yes"];
    args.extend_from_slice(extra);
    labctl(s, srv.kubeconfig_path(), &args).run().parts()
}

fn plan(s: &Stack, srv: &TestApiServer, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["plan"];
    args.extend_from_slice(extra);
    labctl(s, srv.kubeconfig_path(), &args).run().parts()
}

/// Apply must succeed and a new plan must be empty.
#[track_caller]
fn converge(s: &Stack, srv: &TestApiServer, extra: &[&str]) -> String {
    let (code, out, err) = apply(s, srv, extra);
    assert_eq!(code, 0, "apply failed\nstdout:\n{out}\nstderr:\n{err}");
    assert_no_changes(s, srv);
    err
}

#[track_caller]
fn assert_no_changes(s: &Stack, srv: &TestApiServer) {
    let (code, out, err) = plan(s, srv, &["--detailed-exitcode"]);
    assert_eq!(
        code, 0,
        "plan after apply is not empty\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.starts_with("No changes."), "{out}");
}

#[test]
fn apply_to_an_empty_server_converges() {
    let srv = server(true);
    let s = web();
    let (code, out, _) = plan(&s, &srv, &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("Plan: 4 to add, 0 to change, 0 to destroy."),
        "{out}"
    );
    let err = converge(&s, &srv, &[]);
    assert!(err.contains("Deployment lab/web: rolled out"), "{err}");
    let cm = srv.get("v1", "ConfigMap", "lab", "web-config").unwrap();
    assert_eq!(cm["metadata"]["labels"]["app.kubernetes.io/part-of"], "lab");
    assert_eq!(
        cm["metadata"]["managedFields"][0]["manager"], "labctl",
        "applied with field manager labctl"
    );
    // A second apply is a no-op that sends nothing but the observation.
    let (code, out, _) = apply(&s, &srv, &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("No changes."), "{out}");
}

#[test]
fn observing_costs_one_list_per_kind_not_one_request_per_object() {
    let srv = server(true);
    let s = web();
    let many: String = (0..40)
        .map(|i| {
            format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra-{i}\ndata:\n  i: \"{i}\"\n")
        })
        .collect();
    s.file("templates/web/many.yaml", &many);
    converge(&s, &srv, &[]);
    srv.reset_requests();
    let (code, _, err) = plan(&s, &srv, &["-v"]);
    assert_eq!(code, 0);
    let requests = srv.requests();
    assert!(
        requests <= 15,
        "{requests} requests: {:?}",
        srv.request_counts()
    );
    assert!(
        err.contains(&format!("kube: {requests} API requests in ")),
        "-v reports what the server counted ({requests}):\n{err}"
    );
    assert_eq!(srv.requests_to("GET", "/api/v1/configmaps"), 1);
}

#[test]
fn a_changed_configmap_key_shows_only_that_key() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    s.file(
        "stack.toml",
        &format!(
            "{BARE}\n{}",
            WEB.replace("greeting = \"hi\"", "greeting = \"hello\"")
        ),
    );
    let (code, out, err) = plan(&s, &srv, &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    let changed: Vec<&str> = out
        .lines()
        .map(str::trim_start)
        .filter(|l| (l.starts_with("- ") || l.starts_with("+ ")) && !l.starts_with("+ create"))
        .collect();
    assert_eq!(
        changed,
        ["-   greeting: hi", "+   greeting: hello"],
        "{out}"
    );
    assert!(
        out.contains("# ConfigMap lab/web-config will be updated"),
        "{out}"
    );
    assert!(
        out.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{out}"
    );
    converge(&s, &srv, &[]);
    let cm = srv.get("v1", "ConfigMap", "lab", "web-config").unwrap();
    assert_eq!(cm["data"]["greeting"], "hello");
}

#[test]
fn server_set_fields_never_show_and_a_dropped_field_shows_as_removed() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    // A controller annotates and another tool labels: neither is labctl's.
    let mut d = srv.get("apps/v1", "Deployment", "lab", "web").unwrap();
    d["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "3"});
    srv.update_as("kube-controller-manager", d).unwrap();
    assert_no_changes(&s, &srv);
    // labctl stops setting `farewell`: it shows as removed, and apply removes it.
    s.file(
        "templates/web/web.yaml",
        &WEB_TEMPLATE.replace("  farewell: {{ c.values.farewell }}\n", ""),
    );
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(out.contains("-   farewell: bye"), "{out}");
    converge(&s, &srv, &[]);
    let cm = srv.get("v1", "ConfigMap", "lab", "web-config").unwrap();
    assert!(cm["data"].get("farewell").is_none(), "{cm}");
}

#[test]
fn a_conflict_names_the_other_manager_and_the_field() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    srv.apply_with(
        "other-tool",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "web-config", "namespace": "lab"},
               "data": {"greeting": "theirs"}}),
        true,
    )
    .unwrap();
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(
        out.contains("-   greeting: theirs") && out.contains("+   greeting: hi"),
        "{out}"
    );
    let (code, _, err) = apply(&s, &srv, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ConfigMap lab/web-config"), "{err}");
    assert!(
        err.contains("`.data.greeting` is owned by field manager `other-tool`"),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    converge(&s, &srv, &["--force-conflicts"]);
}

const DB: &str = r#"[kube.extra.db]
values = { size = "1Gi" }
"#;

const DB_TEMPLATE: &str = r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: db-data
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local-path
  resources:
    requests:
      storage: {{ c.values.size }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: db-config
data:
  max_connections: "100"
"#;

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

const SECRET_VALUE: &str = "hunter2-very-secret";

const SECRET_TEMPLATE: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
stringData:
  password: {{ secret("postgres-password") }}
  user: app
"#;

fn assert_no_secret(what: &str, text: &str, values: &[&str]) {
    for v in values {
        assert!(
            !text.contains(v),
            "{what} shows a secret value `{v}`:\n{text}"
        );
    }
}

#[test]
fn secret_values_appear_in_no_output() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let srv = server(true);
    let s = stack("[kube.extra.creds]\n");
    s.file("templates/creds/secret.yaml", SECRET_TEMPLATE);
    let first = SECRET_VALUE;
    let second = "correct-horse-battery";
    let values = [first, second, &b64(first), &b64(second)];
    let with = |c: Labctl, v: &str| c.env("LABCTL_SECRET_POSTGRES_PASSWORD", v);
    let mut outputs = Vec::new();
    for args in [
        &["plan"][..],
        &["plan", "-o", "json"],
        &["apply", "--yes", "-v"],
    ] {
        let (code, out, err) = with(labctl(&s, srv.kubeconfig_path(), args), first)
            .run()
            .parts();
        assert_eq!(code, 0, "{out}{err}");
        outputs.push((format!("{args:?}"), out, err));
    }
    let stored = srv.get("v1", "Secret", "lab", "db-credentials").unwrap();
    assert_eq!(stored["data"]["password"], b64(first));
    // Unchanged: no changes, and a changed value shows only as changed.
    let (code, out, err) = with(
        labctl(&s, srv.kubeconfig_path(), &["plan", "--detailed-exitcode"]),
        first,
    )
    .run()
    .parts();
    assert_eq!(code, 0, "{out}{err}");
    for args in [
        &["plan"][..],
        &["plan", "-o", "json"],
        &["plan", "--server-dry-run"],
        &["apply", "--yes"],
    ] {
        let (code, out, err) = with(labctl(&s, srv.kubeconfig_path(), args), second)
            .run()
            .parts();
        assert_eq!(code, 0, "{out}{err}");
        if args == ["plan"] {
            assert!(out.contains("password: (sensitive value changed)"), "{out}");
            assert!(out.contains("user: (sensitive value)"), "{out}");
        }
        outputs.push((format!("{args:?}"), out, err));
    }
    for (what, out, err) in &outputs {
        assert_no_secret(&format!("stdout of {what}"), out, &values);
        assert_no_secret(&format!("stderr of {what}"), err, &values);
    }
    let plan = labctl(&s, srv.kubeconfig_path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(with(plan, second).run().code, 0);
}

#[test]
fn an_unset_secret_is_refused_by_name() {
    let srv = server(true);
    let s = stack("[kube.extra.creds]\n");
    s.file("templates/creds/secret.yaml", SECRET_TEMPLATE);
    // No placeholder is ever planned: the plan fails before any output, naming the secret.
    let (code, out, err) = plan(&s, &srv, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("`postgres-password`: nothing provides it")
            && err.contains("LABCTL_SECRET_POSTGRES_PASSWORD"),
        "{err}"
    );
    let (code, _, err) = apply(&s, &srv, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`postgres-password`"), "{err}");
    assert!(srv.get("v1", "Secret", "lab", "db-credentials").is_none());
}

#[test]
fn apply_waits_for_a_rollout_the_test_completes() {
    let srv = server(false);
    let s = web();
    let child = labctl(&s, srv.kubeconfig_path(), &["apply", "--yes"]).spawn();
    wait_for("the Deployment", Duration::from_secs(20), || {
        srv.get("apps/v1", "Deployment", "lab", "web").is_some()
    });
    // Still waiting: the controller has not reported yet.
    std::thread::sleep(Duration::from_millis(600));
    srv.set_status(
        "apps/v1",
        "Deployment",
        "lab",
        "web",
        json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1,
               "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                               "message": "Deployment does not have minimum availability."}]}),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    srv.complete_rollout("apps/v1", "Deployment", "lab", "web")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("waiting on 1 workload rollout(s)"), "{err}");
    assert!(
        err.contains("Deployment lab/web: rolled out [1/1]"),
        "{err}"
    );
    assert_no_changes(&s, &srv);
}

#[test]
fn a_rollout_that_times_out_names_the_workload_and_its_condition() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    srv.set_auto_rollout(false);
    s.file(
        "stack.toml",
        &format!("{BARE}\n{}", WEB.replace("nginx:1", "nginx:2")),
    );
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(
        out.contains("# Deployment lab/web will be updated (rolls pods)"),
        "{out}"
    );
    let srv_ref = &srv;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            wait_for("generation 2", Duration::from_secs(20), || {
                srv_ref
                    .get("apps/v1", "Deployment", "lab", "web")
                    .is_some_and(|d| d["metadata"]["generation"] == 2)
            });
            srv_ref
                .set_status(
                    "apps/v1",
                    "Deployment",
                    "lab",
                    "web",
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
                           "availableReplicas": 2,
                           "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "ok"},
                                          {"type": "Progressing", "status": "Unknown", "reason": "ReplicaSetUpdated",
                                           "message": "ReplicaSet \"web-2\" is progressing."}]}),
                )
                .unwrap();
        });
        let started = Instant::now();
        let (code, _, err) = apply(&s, &srv, &["--wait-timeout", "2s"]);
        assert_eq!(code, 1, "{err}");
        assert!(started.elapsed() < Duration::from_secs(15));
        assert!(err.contains("kube: wait Deployment lab/web"), "{err}");
        assert!(err.contains("not rolled out after 2s"), "{err}");
        assert!(
            err.contains("Progressing=Unknown (ReplicaSetUpdated)"),
            "{err}"
        );
    });
    // The change itself was applied: only the rollout is pending.
    assert_no_changes(&s, &srv);
    // `--no-wait` does not wait at all.
    s.file(
        "stack.toml",
        &format!("{BARE}\n{}", WEB.replace("nginx:1", "nginx:3")),
    );
    converge(&s, &srv, &["--no-wait", "--wait-timeout", "1ms"]);
}

#[test]
fn an_immutable_change_is_a_replace_that_needs_allow_replace() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    let changed = WEB_TEMPLATE
        .replace(
            "    matchLabels:\n      app.kubernetes.io/name: web\n",
            "    matchLabels:\n      app.kubernetes.io/name: web\n      tier: front\n",
        )
        .replace(
            "      labels:\n        app.kubernetes.io/name: web\n    spec:",
            "      labels:\n        app.kubernetes.io/name: web\n        tier: front\n    spec:",
        );
    s.file("templates/web/web.yaml", &changed);
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(
        out.contains("# Deployment lab/web will be replaced"),
        "{out}"
    );
    assert!(
        out.contains("`spec.selector` cannot change in place"),
        "{out}"
    );
    assert!(
        out.contains("Plan: 1 to add, 0 to change, 1 to destroy."),
        "{out}"
    );
    let uid = srv.get("apps/v1", "Deployment", "lab", "web").unwrap()["metadata"]["uid"].clone();
    let (code, _, err) = apply(&s, &srv, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refusing to replace `Deployment lab/web`"),
        "{err}"
    );
    assert!(err.contains("--allow-replace"), "{err}");
    let err = converge(&s, &srv, &["--allow-replace"]);
    assert!(err.contains("Deployment lab/web: replaced"), "{err}");
    let after = srv.get("apps/v1", "Deployment", "lab", "web").unwrap();
    assert_ne!(after["metadata"]["uid"], uid, "a new object");
}

#[test]
fn a_volume_claim_is_never_replaced() {
    let srv = server(true);
    let s = stack(DB);
    s.file("templates/db/db.yaml", DB_TEMPLATE);
    converge(&s, &srv, &[]);
    s.file(
        "templates/db/db.yaml",
        &DB_TEMPLATE.replace("storageClassName: local-path", "storageClassName: fast"),
    );
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(
        out.contains("PersistentVolumeClaim lab/db-data will be replaced"),
        "{out}"
    );
    assert!(out.contains("never replaced"), "{out}");
    let (code, _, err) = apply(&s, &srv, &["--allow-replace", "--prune-volumes"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refusing to replace `PersistentVolumeClaim lab/db-data`"),
        "{err}"
    );
    assert!(
        srv.get("v1", "PersistentVolumeClaim", "lab", "db-data")
            .is_some()
    );
}

#[test]
fn an_object_not_owned_needs_adopt() {
    let srv = server(true);
    let s = web();
    srv.apply_as(
        "kubectl",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}}),
    )
    .unwrap();
    srv.apply_as(
        "kubectl",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "web-config", "namespace": "lab"},
               "data": {"greeting": "hi"}}),
    )
    .unwrap();
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(out.contains("! ConfigMap lab/web-config (v1)"), "{out}");
    assert!(out.contains("not managed by this stack"), "{out}");
    let (code, _, err) = apply(&s, &srv, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`ConfigMap lab/web-config`") && err.contains("--adopt"),
        "{err}"
    );
    let before: Value = srv.get("v1", "ConfigMap", "lab", "web-config").unwrap();
    assert!(
        before["metadata"]["labels"]
            .get("app.kubernetes.io/part-of")
            .is_none()
    );
    converge(&s, &srv, &["--adopt"]);
    let after = srv.get("v1", "ConfigMap", "lab", "web-config").unwrap();
    assert_eq!(
        after["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "lab"
    );
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

#[test]
fn server_dry_run_costs_one_request_per_changed_object() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    srv.reset_requests();
    let (code, out, _) = plan(&s, &srv, &["--server-dry-run"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("No changes."), "{out}");
    let unchanged = srv.requests();
    assert_eq!(
        srv.requests_to("PATCH", "/api/v1/namespaces/lab/configmaps/web-config"),
        0
    );
    s.file(
        "stack.toml",
        &format!(
            "{BARE}\n{}",
            WEB.replace("greeting = \"hi\"", "greeting = \"yo\"")
        ),
    );
    srv.reset_requests();
    let (_, out, _) = plan(&s, &srv, &["--server-dry-run"]);
    assert!(out.contains("+   greeting: yo"), "{out}");
    assert_eq!(srv.requests(), unchanged + 1, "{:?}", srv.request_counts());
    assert_eq!(
        srv.requests_to("PATCH", "/api/v1/namespaces/lab/configmaps/web-config"),
        1
    );
    assert_eq!(
        srv.get("v1", "ConfigMap", "lab", "web-config").unwrap()["data"]["greeting"],
        "hi",
        "a dry run changes nothing"
    );
}

#[test]
fn kubeconfig_comes_from_the_environment_and_a_bad_context_is_named() {
    let srv = server(true);
    let s = web();
    let (code, out, err) = s
        .labctl(&["plan", "--plane", "kube"])
        .env("KUBECONFIG", srv.kubeconfig_path())
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Plan: 4 to add"), "{out}");
    let (code, _, err) = plan(&s, &srv, &["--context", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("kube: load kubeconfig"), "{err}");
    assert!(err.contains("nope"), "{err}");
}

/// Observing the cluster starts while the stack renders; a template error is still the plan's
/// error, at once, even against a cluster that never answers (the observation is dropped).
#[test]
fn a_template_error_does_not_wait_for_the_cluster() {
    // Bound but never accepting: connections complete in the backlog and no answer comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = web();
    s.file(
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n\
             users:\n- name: u\n  user:\n    token: t\n",
            silent.local_addr().unwrap()
        ),
    );
    s.file("templates/web/bad.yaml", "kind: [oops\n");
    let (code, _, err) = s
        .labctl(&["plan", "--plane", "kube", "--kubeconfig"])
        .arg(s.stack_file().with_file_name("kubeconfig"))
        // kube-rs waits 295 s for an answer: a plan that waited for the cluster would be stopped
        // here and fail.
        .timeout(Duration::from_secs(60))
        .run()
        .parts();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("error: template `templates/web/bad.yaml`, document 1: not valid YAML"),
        "{err}"
    );
}

/// The bundled stack's kube plane converges on the test server.
#[test]
fn the_bundled_stack_converges() {
    let srv = server(true);
    let s = Stack::bundled();
    let envs: Vec<(String, &str)> = [
        ("GRAFANA_ADMIN_PASSWORD", "g-secret-1"),
        ("MINIO_ROOT_PASSWORD", "m-secret-1"),
        ("POSTGRES_PASSWORD", "p-secret-1"),
        ("WEBHOOK_SECRET", "w-secret-1"),
    ]
    .into_iter()
    .map(|(name, value)| (format!("LABCTL_SECRET_{name}"), value))
    .collect();
    let (code, out, err) = labctl(&s, srv.kubeconfig_path(), &["apply", "--yes"])
        .envs(envs.clone())
        .run()
        .parts();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for v in ["g-secret-1", "m-secret-1", "p-secret-1", "w-secret-1"] {
        assert!(!out.contains(v) && !err.contains(v));
    }
    let (code, out, err) = labctl(&s, srv.kubeconfig_path(), &["plan", "--detailed-exitcode"])
        .envs(envs)
        .run()
        .parts();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
}

/// Against a real cluster: `LABCTL_E2E_KUBECONFIG` names its kubeconfig.
#[test]
#[ignore = "needs a real cluster: set LABCTL_E2E_KUBECONFIG and run with --ignored"]
fn real_cluster_apply_converges() {
    let kubeconfig = std::env::var("LABCTL_E2E_KUBECONFIG")
        .expect("LABCTL_E2E_KUBECONFIG must name a real cluster's kubeconfig");
    let name = format!("labctl-e2e-{}", std::process::id());
    let s = Stack::new(&BARE.replace("name = \"lab\"", &format!("name = \"{name}\"")));
    s.file(
        "stack.toml",
        &format!(
            "{}\n{WEB}",
            BARE.replace("name = \"lab\"", &format!("name = \"{name}\""))
        ),
    );
    s.file("templates/web/web.yaml", WEB_TEMPLATE);
    let k = |args: &[&str]| labctl(&s, Path::new(&kubeconfig), args).run().parts();
    let (code, _, err) = k(&["apply", "--yes", "--wait-timeout", "3m"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = k(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}");
    s.file(
        "stack.toml",
        &BARE.replace("name = \"lab\"", &format!("name = \"{name}\"")),
    );
    let (code, _, err) = k(&["apply", "--yes", "--prune-volumes"]);
    assert_eq!(code, 0, "{err}");
}

const STORE: &str = r#"[kube.extra.store]
values = { port = 9000 }
"#;

const STORE_TEMPLATE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: minio
spec:
  selector:
    app: minio
  ports:
    - name: api
      port: {{ c.values.port }}
      targetPort: api
    - name: console
      port: 9001
      targetPort: console
"#;

/// `kubectl -n lab patch svc minio --type=json -p '[{"op":"replace","path":"/spec/ports/0/port","value":9999}]'`:
/// an update by another field manager that renumbers the first port.
fn renumber_first_port(srv: &TestApiServer) {
    let mut svc = srv.get("v1", "Service", "lab", "minio").unwrap();
    svc["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    svc["spec"]["ports"][0]["port"] = json!(9999);
    srv.update_as("kubectl-patch", svc).unwrap();
}

#[test]
fn a_keyed_list_is_compared_by_key_and_a_refused_dry_run_is_a_failing_change() {
    let srv = server(true);
    let s = stack(STORE);
    s.file("templates/store/svc.yaml", STORE_TEMPLATE);
    converge(&s, &srv, &[]);
    renumber_first_port(&srv);

    // The local diff merges by (port, protocol) as the server does: port 9000 comes back as a
    // new item, and kubectl-patch's 9999 stays; nothing shows as renumbered.
    let (code, out, err) = plan(&s, &srv, &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains(
            "`spec.ports` is merged by key (port, protocol): adds port 9000 `api`; \
             port 9999 `api` owned by `kubectl-patch` stays"
        ),
        "{out}"
    );
    assert!(
        !out.contains("9999 →") && !out.contains("-       port: 9999"),
        "{out}"
    );
    assert!(
        out.contains("+   - name: api\n      +     port: 9000"),
        "{out}"
    );
    let (_, _, err) = plan(&s, &srv, &["-v"]);
    assert!(
        err.contains("kube: list merge types from the server's OpenAPI v3 (api/v1)"),
        "{err}"
    );
    // A server whose OpenAPI cannot be read: the recorded table says the same.
    srv.inject_error(
        "GET",
        "/openapi/v3",
        labctl_testapi::ApiError::internal("openapi unavailable".into()),
        1,
    );
    let (_, fallback, err) = plan(&s, &srv, &["-v"]);
    assert!(
        err.contains("kube: list merge types from the recorded table"),
        "{err}"
    );
    assert_eq!(fallback, out, "the compiled table merges the same way");

    // The server refuses the merge (two ports named `api`): with `--server-dry-run` that is a
    // failing change, with the server's own message, counted, and never a clean exit.
    let (code, out, err) = plan(&s, &srv, &["--server-dry-run"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(
            "# FAILS: the server refuses it (dry run): Service \"minio\" is invalid: \
             spec.ports[1].name: Duplicate value: \"api\" (422)"
        ),
        "{out}"
    );
    assert!(
        out.contains("Failing: 1 of these changes would fail"),
        "{out}"
    );
    let (code, _, _) = plan(&s, &srv, &["--server-dry-run", "--detailed-exitcode"]);
    assert_eq!(code, 3, "its own code with --detailed-exitcode");
    let (_, json, _) = plan(&s, &srv, &["--server-dry-run", "-o", "json"]);
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["changes_failing"], 1, "{json}");
    let svc = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "Service lab/minio")
        .unwrap();
    assert!(
        svc["failure"].as_str().unwrap().contains("Duplicate value"),
        "{svc}"
    );

    // Apply fails the same way and says what to do; nothing is written.
    let (code, _, err) = apply(&s, &srv, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`Service lab/minio`: "), "{err}");
    assert!(err.contains("Duplicate value: \"api\""), "{err}");
    assert!(err.contains("fix it in the stack"), "{err}");
    let live = srv.get("v1", "Service", "lab", "minio").unwrap();
    assert_eq!(live["spec"]["ports"][0]["port"], 9999);
    // With `--server-dry-run`, apply does not send what the server already refused.
    let (code, _, err) = apply(&s, &srv, &["--server-dry-run"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`Service lab/minio`: refused in the dry run: Service \"minio\" is invalid"),
        "{err}"
    );

    // Naming the first port after its new number converges.
    s.file(
        "stack.toml",
        &format!("{BARE}\n{}", STORE.replace("9000", "9999")),
    );
    converge(&s, &srv, &[]);
}

#[test]
fn the_server_dry_run_shows_what_the_server_would_store_and_its_refusals() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    s.file(
        "stack.toml",
        &format!(
            "{BARE}\n{}",
            WEB.replace("greeting = \"hi\"", "greeting = \"hey\"")
        ),
    );
    let (code, out, err) = plan(&s, &srv, &["--server-dry-run", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("+   greeting: hey"), "{out}");
    // An admission webhook refuses the ConfigMap: a failing change, dry run and all.
    srv.refuse(
        "ConfigMap",
        "web-config",
        labctl_testapi::ApiError::custom(
            403,
            "Forbidden",
            "admission webhook \"policy.example.com\" denied the request: greetings are frozen",
            None,
        ),
    );
    let (code, out, _) = plan(&s, &srv, &["--server-dry-run"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("greetings are frozen (403)") && out.contains("Failing: 1"),
        "{out}"
    );
    // Without asking the server, the plan cannot know: it shows the change as planned.
    let (code, out, _) = plan(&s, &srv, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FAILS"), "{out}");
    srv.clear_refusals();
    // A new object is checked too: a quota-style refusal of a create.
    let extra =
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  a: \"1\"\n";
    s.file("templates/web/extra.yaml", extra);
    srv.refuse(
        "ConfigMap",
        "extra",
        labctl_testapi::ApiError::custom(
            422,
            "Invalid",
            "ConfigMap \"extra\" is invalid: data: Too many: 1: must have at most 0 items",
            None,
        ),
    );
    let (code, out, _) = plan(&s, &srv, &["--server-dry-run"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("# ConfigMap lab/extra will be created"),
        "{out}"
    );
    assert!(out.contains("must have at most 0 items (422)"), "{out}");
    srv.clear_refusals();
    converge(&s, &srv, &[]);
}

const APPS: &str = r#"[kube.extra.apps]
values = { replicas = 1, level = "info", greeting = "hi" }
"#;

const APPS_TEMPLATE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  level: {{ c.values.level }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: app
  template:
    metadata:
      labels:
        app.kubernetes.io/name: app
        level: {{ c.values.level }}
    spec:
      containers:
        - name: app
          image: app:1
          volumeMounts:
            - name: config
              mountPath: /etc/app
      volumes:
        - name: config
          configMap:
            name: app-config
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: other
data:
  greeting: {{ c.values.greeting }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{ c.values.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/name: web
  template:
    metadata:
      labels:
        app.kubernetes.io/name: web
    spec:
      containers:
        - name: web
          image: nginx:1
"#;

#[test]
fn an_apply_with_one_failing_object_makes_every_independent_change_and_lists_the_failure() {
    let srv = server(true);
    let s = stack(APPS);
    s.file("templates/apps/apps.yaml", APPS_TEMPLATE);
    converge(&s, &srv, &[]);
    s.file(
        "stack.toml",
        &format!(
            "{BARE}\n{}",
            APPS.replace("replicas = 1", "replicas = 3")
                .replace("\"info\"", "\"debug\"")
                .replace("\"hi\"", "\"hello\"")
        ),
    );
    srv.refuse(
        "ConfigMap",
        "app-config",
        labctl_testapi::ApiError::custom(
            403,
            "Forbidden",
            "admission webhook \"policy.example.com\" denied the request: log level is frozen",
            None,
        ),
    );
    let (code, _, err) = apply(&s, &srv, &["--concurrency", "4"]);
    assert_eq!(code, 1, "{err}");
    // Every failure is listed with the server's message and what to do; the workload that
    // mounts the failed ConfigMap is skipped, and says so.
    assert!(
        err.contains("`ConfigMap lab/app-config`: kube: apply ConfigMap lab/app-config: admission webhook \"policy.example.com\" denied the request: log level is frozen (403)"),
        "{err}"
    );
    assert!(err.contains("ask for the permission or the quota"), "{err}");
    assert!(
        err.contains("`Deployment lab/app`: skipped: it depends on `ConfigMap lab/app-config`, which was not applied"),
        "{err}"
    );
    // Everything independent was done.
    assert_eq!(
        srv.get("v1", "ConfigMap", "lab", "other").unwrap()["data"]["greeting"],
        "hello"
    );
    assert_eq!(
        srv.get("apps/v1", "Deployment", "lab", "web").unwrap()["spec"]["replicas"],
        3
    );
    assert!(err.contains("Deployment lab/web: rolled out"), "{err}");
    assert_eq!(
        srv.get("v1", "ConfigMap", "lab", "app-config").unwrap()["data"]["level"],
        "info"
    );
    assert_eq!(
        srv.get("apps/v1", "Deployment", "lab", "app").unwrap()["spec"]["template"]["metadata"]["labels"]
            ["level"],
        "info"
    );
    // What is left is exactly what failed; once the cause is gone, a re-run converges.
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(
        out.contains("Plan: 0 to add, 2 to change, 0 to destroy."),
        "{out}"
    );
    srv.clear_refusals();
    converge(&s, &srv, &[]);
}

#[test]
fn an_account_limited_to_one_namespace_lists_there_instead() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    let token = srv.namespaced_token("system:serviceaccount:lab:deployer", &["lab"]);
    let kubeconfig = srv.kubeconfig_for_token(&token, "lab").unwrap();

    let (code, out, err) = labctl(&s, &kubeconfig, &["plan", "-v", "--detailed-exitcode"])
        .run()
        .parts();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("No changes."), "{out}");
    assert!(
        err.contains("kube: listing `configmaps` across namespaces is forbidden for this account"),
        "{err}"
    );
    assert!(err.contains("listing in `lab` instead"), "{err}");
    assert!(
        err.contains("system:serviceaccount:lab:deployer"),
        "the server's own 403 is quoted: {err}"
    );
    // The Namespace itself cannot be read by this account: said, and left alone.
    assert!(
        err.contains("kube: `Namespace lab` left out of the plan: "),
        "{err}"
    );
    srv.reset_requests();
    labctl(&s, &kubeconfig, &["plan"]).run();
    assert_eq!(
        srv.requests_to("GET", "/api/v1/namespaces/lab/configmaps"),
        1
    );

    // A change applies through the same account, and re-plans clean.
    s.file(
        "stack.toml",
        &format!(
            "{BARE}\n{}",
            WEB.replace("greeting = \"hi\"", "greeting = \"hello\"")
        ),
    );
    let (code, out, err) = labctl(&s, &kubeconfig, &["apply", "--yes"]).run().parts();
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = labctl(&s, &kubeconfig, &["plan", "--detailed-exitcode"])
        .run()
        .parts();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        srv.get("v1", "ConfigMap", "lab", "web-config").unwrap()["data"]["greeting"],
        "hello"
    );
    assert_no_changes(&s, &srv);
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

/// labctl holds transparent huge pages back from start-up on, and gives them back only to a
/// command that reads live state (see `hold_huge_pages`): a plan against the cluster has them
/// while it waits for the server, an offline plan does not. The last reading taken while the
/// process lived counts: the first ones may come before labctl's start-up hook has run.
#[test]
fn huge_pages_go_to_a_plan_that_reads_the_cluster() {
    assert_huge_pages_allowed_here();
    let s = web();
    let srv = server(false);
    // Slow enough answers that the plan is still running when its status is read.
    srv.set_latency(Duration::from_millis(300));
    let last_seen = |args: &[&str]| {
        let mut child = s
            .labctl(&["--kubeconfig"])
            .arg(srv.kubeconfig_path())
            .args(args)
            .spawn();
        let mut last = None;
        while child.try_wait().expect("wait").is_none() {
            last = huge_pages_enabled(child.id()).or(last);
            std::thread::sleep(Duration::from_millis(5));
        }
        last
    };
    assert_eq!(
        last_seen(&["plan", "--plane", "kube"]),
        Some(true),
        "live plan"
    );
    assert_eq!(
        last_seen(&["plan", "--offline"]),
        Some(false),
        "offline plan"
    );
}
