//! Fidelity check: the real `kubectl` (v1.32) against the test API server.

use std::path::Path;
use std::process::{Command, Output};

use labctl_testapi::{Options, TestApiServer};
use serde_json::Value;

const KUBECTL: &str = "kubectl";

const MANIFEST: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: demo
  labels:
    app.kubernetes.io/managed-by: labctl
data:
  a: "1"
  b: "2"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
        env:
        - name: MODE
          value: prod
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
    nodePort: 30080
"#;

/// The real kubectl must be there: a fidelity check that cannot run is a failure, not a pass.
#[track_caller]
fn need_kubectl() {
    let found = Command::new(KUBECTL)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`kubectl` is not on PATH: install kubectl 1.32 (.ci/run does)"
    );
}

struct Kubectl<'a> {
    kubeconfig: &'a Path,
    cache: &'a Path,
    dir: &'a Path,
}

impl Kubectl<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache)
            .args(args)
            .current_dir(self.dir)
            .env_remove("KUBECONFIG")
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .output()
            .expect("run kubectl");
        eprintln!(
            "$ kubectl {}\n[exit {:?}]\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn real_kubectl_get_apply_diff_conflict_delete() {
    need_kubectl();
    let srv = TestApiServer::start_blocking(Options {
        auto_rollout: true,
        ..Options::default()
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let k = Kubectl {
        kubeconfig: srv.kubeconfig_path(),
        cache: &cache,
        dir: tmp.path(),
    };
    std::fs::write(tmp.path().join("app.yaml"), MANIFEST).unwrap();
    let changed = MANIFEST
        .replace("replicas: 2", "replicas: 3")
        .replace("b: \"2\"", "b: \"20\"");
    std::fs::write(tmp.path().join("changed.yaml"), &changed).unwrap();

    // get
    let ns = k.ok(&["get", "ns"]);
    assert!(ns.contains("default") && ns.contains("Active"), "{ns}");

    // apply --server-side
    let out = k.ok(&["apply", "--server-side", "-f", "app.yaml"]);
    for line in [
        "namespace/demo serverside-applied",
        "configmap/cfg serverside-applied",
        "deployment.apps/web serverside-applied",
        "service/web serverside-applied",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let listed = k.ok(&["get", "deploy,cm,svc", "-n", "demo"]);
    assert!(listed.contains("deployment.apps/web"), "{listed}");
    assert!(listed.contains("30080"), "{listed}");
    let by_label = k.ok(&[
        "get",
        "cm",
        "-A",
        "-l",
        "app.kubernetes.io/managed-by=labctl",
        "-o",
        "name",
    ]);
    assert_eq!(by_label.trim(), "configmap/cfg");

    // get -o yaml / json: managedFields belong to manager `kubectl`.
    let yaml = k.ok(&[
        "get",
        "deploy",
        "-n",
        "demo",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(yaml.contains("manager: kubectl"), "{yaml}");
    assert!(yaml.contains("operation: Apply"), "{yaml}");
    let json: Value = serde_json::from_str(&k.ok(&[
        "get",
        "deploy",
        "-n",
        "demo",
        "web",
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    let mf = &json["metadata"]["managedFields"];
    assert!(
        mf.as_array()
            .unwrap()
            .iter()
            .any(|e| e["manager"] == "kubectl" && e["operation"] == "Apply")
    );
    assert_eq!(json["metadata"]["generation"], 1);

    // rollout status works with the controller simulated.
    let rollout = k.ok(&[
        "rollout",
        "status",
        "deploy/web",
        "-n",
        "demo",
        "--timeout=10s",
    ]);
    assert!(rollout.contains("successfully rolled out"), "{rollout}");

    // diff --server-side: nothing to show, then the changed fields.
    let same = k.run(&["diff", "--server-side", "-f", "app.yaml"]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    assert!(same.stdout.is_empty());
    let diff = k.run(&["diff", "--server-side", "-f", "changed.yaml"]);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.contains("-  replicas: 2") && text.contains("+  replicas: 3"),
        "{text}"
    );
    assert!(
        text.contains("-  b: \"2\"") && text.contains("+  b: \"20\""),
        "{text}"
    );
    assert!(
        !text.contains("v1.Service"),
        "unchanged service shows in diff: {text}"
    );
    assert!(
        !text.contains("v1.Namespace"),
        "unchanged namespace shows in diff: {text}"
    );

    // A different field manager with different values: conflict.
    let conflict = k.run(&[
        "apply",
        "--server-side",
        "--field-manager",
        "intruder",
        "-f",
        "changed.yaml",
    ]);
    assert_ne!(conflict.status.code(), Some(0));
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{err}"
    );
    assert!(err.contains("conflict with \"kubectl\": .data.b"), "{err}");
    assert!(err.contains("--force-conflicts"), "{err}");

    // ... which --force-conflicts resolves.
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager",
        "intruder",
        "--force-conflicts",
        "-f",
        "changed.yaml",
    ]);
    let replicas = k.ok(&[
        "get",
        "deploy",
        "-n",
        "demo",
        "web",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "3");
    let live = srv.get("apps/v1", "Deployment", "demo", "web").unwrap();
    assert_eq!(live["metadata"]["generation"], 2);
    let intruder = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "intruder")
        .unwrap();
    assert!(intruder["fieldsV1"]["f:spec"].get("f:replicas").is_some());

    // Client-side tools that patch: label (a strategic merge patch) and scale.
    k.ok(&["label", "cm", "cfg", "-n", "demo", "extra=yes"]);
    assert_eq!(
        srv.get("v1", "ConfigMap", "demo", "cfg").unwrap()["metadata"]["labels"]["extra"],
        "yes"
    );
    k.ok(&["scale", "deploy/web", "-n", "demo", "--replicas=4"]);
    assert_eq!(
        srv.get("apps/v1", "Deployment", "demo", "web").unwrap()["spec"]["replicas"],
        4
    );

    // delete -f removes everything (the namespace after its contents, like the real one).
    let del = k.ok(&["delete", "-f", "app.yaml", "--timeout=20s"]);
    assert!(del.contains("namespace \"demo\" deleted"), "{del}");
    assert!(del.contains("deployment.apps \"web\" deleted"), "{del}");
    assert!(srv.get("v1", "Namespace", "", "demo").is_none());
    let gone = k.run(&["get", "deploy", "-n", "demo", "web"]);
    assert_ne!(gone.status.code(), Some(0));
    // kubectl 1.32 looks the namespace up after a NotFound and reports that instead.
    assert!(
        String::from_utf8_lossy(&gone.stderr)
            .contains("Error from server (NotFound): namespaces \"demo\" not found")
    );
}

#[test]
fn real_kubectl_client_side_apply_then_server_side_migration() {
    need_kubectl();
    let srv = TestApiServer::start_blocking(Options::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let k = Kubectl {
        kubeconfig: srv.kubeconfig_path(),
        cache: &cache,
        dir: tmp.path(),
    };
    std::fs::write(tmp.path().join("app.yaml"), MANIFEST).unwrap();
    std::fs::write(
        tmp.path().join("changed.yaml"),
        MANIFEST.replace("replicas: 2", "replicas: 3"),
    )
    .unwrap();

    let out = k.ok(&["apply", "-f", "app.yaml"]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let out = k.ok(&["apply", "-f", "changed.yaml"]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("configmap/cfg unchanged"), "{out}");
    let live = srv.get("apps/v1", "Deployment", "demo", "web").unwrap();
    assert_eq!(live["spec"]["replicas"], 3);
    assert!(
        live["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["manager"] == "kubectl-client-side-apply" && e["operation"] == "Update")
    );

    // kubectl migrates client-side ownership to its server-side manager.
    k.ok(&["apply", "--server-side", "-f", "changed.yaml"]);
    let live = srv.get("apps/v1", "Deployment", "demo", "web").unwrap();
    let managers: Vec<&str> = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"kubectl"), "{managers:?}");
    assert!(
        !managers.contains(&"kubectl-client-side-apply"),
        "{managers:?}"
    );

    // Server dry run changes nothing.
    let rv = srv.resource_version();
    let out = k.ok(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        "app.yaml",
    ]);
    assert!(
        out.contains("deployment.apps/web serverside-applied (server dry run)"),
        "{out}"
    );
    assert_eq!(srv.resource_version(), rv);
    assert_eq!(
        srv.get("apps/v1", "Deployment", "demo", "web").unwrap()["spec"]["replicas"],
        3
    );
}
