//! Applying: a converged plan, what a diff shows, conflicts, replaces, adoption and partial failures.

use super::*;

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
