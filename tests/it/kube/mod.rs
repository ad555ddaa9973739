//! The Kubernetes plane, end to end: the real `labctl` binary against the project's test API
//! server (`labctl-testapi`). Every apply is followed by a plan that must say `No changes.`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{
    BARE, Labctl, Stack, assert_huge_pages_allowed_here, huge_pages_enabled, wait_for,
};
use labctl_testapi::{Options, TestApiServer};
use serde_json::{Value, json};

mod apply;
mod cluster;
mod prune;
mod rollout;
mod secrets;
mod server_side;

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
