//! Saved plans, the apply lock, and `--target`/`--exclude`, through the real binary against a
//! real systemd user manager and the project's test API server. Every apply is followed by a
//! plan that must say `No changes.`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use labctl_testapi::{Options, TestApiServer};
use serde_json::{Value, json};

use crate::support::systemd::UserManager;
use crate::support::{Labctl, Output, Stack, wait_for};

const SLEEPER: &str = "[Unit]
Description={{ c.values.description | default('saved-plan test') }}

[Service]
ExecStart=/bin/sh -c 'while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

const WEB: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: {{ c.values.greeting }}
---
apiVersion: v1
kind: Secret
metadata:
  name: web-credentials
stringData:
  password: {{ secret(\"postgres-password\") }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
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
";

const SECRET_VALUE: &str = "hunter2-saved-plan-secret";

fn server(auto_rollout: bool) -> TestApiServer {
    TestApiServer::start_blocking(Options {
        auto_rollout,
        ..Options::default()
    })
    .expect("test API server")
}

/// A stack `name` with two units (`<name>-a`, `<name>-b`) and the `web` kube component.
struct World {
    m: UserManager,
    srv: TestApiServer,
    dir: PathBuf,
    stack: PathBuf,
    name: String,
}

impl World {
    fn new(name: &str, auto_rollout: bool) -> World {
        let m = UserManager::start();
        let srv = server(auto_rollout);
        let dir = m.scratch();
        let w = World {
            stack: dir.join("stack.toml"),
            dir,
            m,
            srv,
            name: name.into(),
        };
        w.write("hi", "first");
        std::fs::create_dir_all(w.dir.join("templates/web")).unwrap();
        std::fs::write(w.dir.join("templates/web/web.yaml"), WEB).unwrap();
        w
    }

    /// Write the stack with this greeting (ConfigMap) and unit description.
    fn write(&self, greeting: &str, description: &str) {
        let n = &self.name;
        let path = Stack::units(&self.dir, n)
            .template("sleeper.service", SLEEPER)
            .unit(
                &format!("{n}-a"),
                &format!(
                    "template = \"sleeper\"\nunit = \"{n}-a\"\nvalues = {{ description = \"{description}\" }}"
                ),
            )
            .unit(
                &format!("{n}-b"),
                &format!("template = \"sleeper\"\nunit = \"{n}-b\""),
            )
            .write();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "[kube.extra.web]\nvalues = {{ greeting = \"{greeting}\" }}\n"
        ));
        std::fs::write(&path, text).unwrap();
    }

    /// labctl on this world's stack, cluster and manager, with the stack's secret.
    fn command(&self, args: &[&str]) -> Labctl {
        self.m
            .command(&self.stack, &["--kubeconfig"])
            .arg(self.srv.kubeconfig_path())
            .args(args)
            .env("LABCTL_SECRET_POSTGRES_PASSWORD", SECRET_VALUE)
    }

    #[track_caller]
    fn labctl(&self, args: &[&str]) -> Output {
        self.command(args).run()
    }

    /// Start labctl in the background.
    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn()
    }

    fn unit(&self, suffix: &str) -> String {
        format!("{}-{suffix}.service", self.name)
    }

    fn unit_path(&self, suffix: &str) -> PathBuf {
        self.m.unit_dir().join(self.unit(suffix))
    }

    fn config_map(&self) -> Option<Value> {
        self.srv.get("v1", "ConfigMap", &self.name, "web-config")
    }

    fn lease(&self) -> Option<Value> {
        let name = format!("labctl-{}", self.name);
        [self.name.as_str(), "default"]
            .iter()
            .find_map(|ns| self.srv.get("coordination.k8s.io/v1", "Lease", ns, &name))
    }

    /// Make the Lease read as held by a process on another host, whose end nothing here can see.
    fn move_lease_elsewhere(&self) {
        let mut lease = self.lease().expect("a Lease");
        lease["metadata"]["annotations"]["labctl.lock/host"] = "elsewhere".into();
        self.srv.put(lease).expect("the Lease rewritten");
    }

    fn converged(&self) {
        self.labctl(&["plan", "--detailed-exitcode"])
            .code(0)
            .stdout_has("No changes.");
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn a_saved_plan_refuses_when_a_unit_and_a_config_map_moved_and_applies_when_nothing_did() {
    let w = World::new("svd", true);
    w.labctl(&["apply", "--yes"]).code(0);
    w.converged();

    // A change reviewed and saved...
    w.write("hello", "second");
    let file = w.dir.join("reviewed.plan");
    let f = file.to_str().unwrap();
    let planned = w.labctl(&["plan", "--out", f]);
    planned
        .code(0)
        .stdout_has("Plan: 0 to add, 2 to change, 0 to destroy.")
        .stderr_has("Saved this plan to");
    let saved: Value = serde_json::from_str(&read(&file)).unwrap();
    assert_eq!(saved["format_version"], "2");
    assert_eq!(saved["saved_plan"], true);
    let pre = |address: &str| -> Value {
        saved["preconditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["address"] == address)
            .unwrap_or_else(|| panic!("no precondition for {address}: {saved:#}"))
            .clone()
    };
    let cm = w.config_map().unwrap();
    let rv = cm["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let cm_pre = pre("ConfigMap svd/web-config");
    assert_eq!(cm_pre["state"], "kube");
    assert_eq!(cm_pre["resource_version"], rv.as_str());
    assert_eq!(cm_pre["last_manager"], "labctl");
    let unit_pre = pre(&format!("unit {}", w.unit("a")));
    assert_eq!(unit_pre["state"], "unit");
    assert_eq!(unit_pre["load_state"], "loaded");
    assert_eq!(unit_pre["need_daemon_reload"], false);
    // No secret value in the file, in any encoding.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET_VALUE);
    let text = read(&file);
    assert!(
        !text.contains(SECRET_VALUE) && !text.contains(&b64),
        "{text}"
    );

    // ...then two hand edits: another tool changes the ConfigMap, someone edits a unit file.
    let mut edited = cm.clone();
    edited["data"]["edited"] = json!("by hand");
    if let Some(m) = edited["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    w.srv.update_as("kubectl-edit", edited).expect("hand edit");
    let unit_file = w.unit_path("a");
    let hand = format!("{}# edited by hand\n", read(&unit_file));
    std::fs::write(&unit_file, &hand).unwrap();
    let rv_now = w.config_map().unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let refused = w.labctl(&["apply", f]);
    refused
        .code(1)
        .stderr_has(&format!("refusing to apply the saved plan `{f}`"))
        .stderr_has("2 object(s) changed since the plan was made")
        .stderr_has(&format!(
            "ConfigMap svd/web-config: resourceVersion {rv} → {rv_now}, changed by kubectl-edit"
        ))
        .stderr_has(&format!("unit {}: file changed", w.unit("a")))
        .stderr_has("nothing was applied");
    // Nothing was applied.
    let cm = w.config_map().unwrap();
    assert_eq!(cm["data"]["greeting"], "hi");
    assert_eq!(cm["data"]["edited"], "by hand");
    assert_eq!(read(&unit_file), hand);

    // A plan made now, with nothing moving after it, applies without asking and converges.
    let fresh = w.dir.join("fresh.plan");
    let f2 = fresh.to_str().unwrap();
    w.labctl(&["plan", "--out", f2]).code(0);
    let applied = w.labctl(&["apply", f2]);
    applied
        .code(0)
        .stderr_has("Apply complete: 0 added, 2 changed, 0 destroyed.");
    assert_eq!(w.config_map().unwrap()["data"]["greeting"], "hello");
    assert!(read(&unit_file).contains("Description=second"));
    assert_eq!(w.m.active_state(&w.unit("a")), "active");
    w.converged();
    // Applied once, a saved plan is stale: everything it updated moved.
    w.labctl(&["apply", f2])
        .code(1)
        .stderr_has("changed since the plan was made");
}

#[test]
fn a_saved_plan_of_another_labctl_version_or_stack_is_refused_by_name() {
    let w = World::new("svv", true);
    let file = w.dir.join("p.plan");
    let f = file.to_str().unwrap();
    w.labctl(&["plan", "--out", f]).code(0);
    let mut doc: Value = serde_json::from_str(&read(&file)).unwrap();
    doc["labctl_version"] = json!("0.0.1-elsewhere");
    let other = w.dir.join("other.plan");
    std::fs::write(&other, serde_json::to_string(&doc).unwrap()).unwrap();
    w.labctl(&["apply", other.to_str().unwrap()])
        .code(1)
        .stderr_has("was saved by labctl 0.0.1-elsewhere (plan format 2); this is labctl ")
        .stderr_has("make the plan again with this labctl");
    std::fs::write(&other, "{\"changes\": []}").unwrap();
    w.labctl(&["apply", other.to_str().unwrap()])
        .code(1)
        .stderr_has("is not a saved plan");
    // The stack edited after the plan: refused, nothing applied.
    w.write("changed", "first");
    w.labctl(&["apply", f])
        .code(1)
        .stderr_has("or its templates changed since the plan was made");
    assert!(w.config_map().is_none());
    assert!(!w.unit_path("a").exists());
    // Options that shape the plan come from the file.
    w.labctl(&["apply", f, "--target", "unit x"]).code(2);
}

#[test]
fn a_second_apply_fails_naming_the_first_and_a_killed_applys_lease_is_taken_over() {
    // Rollouts never complete: an apply waits on its Deployment while holding the lock.
    let w = World::new("svl", false);
    let mut first = w.spawn(&[
        "apply",
        "--yes",
        "--lock-lease",
        "10s",
        "--wait-timeout",
        "5m",
    ]);
    wait_for("the first apply's lease", Duration::from_secs(60), || {
        w.lease().is_some()
    });
    let lease = w.lease().unwrap();
    let pid = first.id().to_string();
    assert_eq!(lease["metadata"]["annotations"]["labctl.lock/pid"], pid);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 10);
    // The first apply holds the host lock too, by flock.
    let second = w.labctl(&["apply", "--yes"]);
    second
        .code(1)
        .stderr_has("refusing to apply stack `svl`: another writer holds its lock")
        .stderr_has(&format!("(pid {pid} on "))
        .stderr_has("--lock-timeout");
    // Kube only (no host lock): the Lease names its holder, and waiting does not help while the
    // holder keeps renewing it.
    let started = Instant::now();
    let waited = w.labctl(&["apply", "--yes", "--plane", "kube", "--lock-timeout", "5s"]);
    waited
        .code(1)
        .stderr_has(&format!("(pid {pid} on "))
        .stderr_has("renewed");
    assert!(started.elapsed() >= Duration::from_secs(5));
    // `plan` never locks.
    w.labctl(&["plan"]).code(0);

    // The holder is killed. Had it run on another host, nothing here could tell it is gone: its
    // Lease is not renewed and, once expired, taken over.
    first.kill().unwrap();
    first.wait().unwrap();
    w.srv.set_auto_rollout(true);
    w.move_lease_elsewhere();
    let at_once = w.labctl(&["apply", "--yes", "--plane", "kube"]);
    at_once
        .code(1)
        .stderr_has(&format!("(pid {pid} on elsewhere"));
    let took_over = w.labctl(&["apply", "--yes", "--lock-timeout", "30s"]);
    took_over.code(0).stderr_has("Apply complete:");
    // Released at the end of the apply.
    assert!(w.lease().is_none(), "{:?}", w.lease());
    w.converged();
}

#[test]
fn force_unlock_removes_a_dead_holders_lease() {
    let w = World::new("svf", false);
    // Unlocked under a running apply: it is told it no longer holds the lock.
    let running = w.spawn(&[
        "apply",
        "--yes",
        "--plane",
        "kube",
        "--lock-lease",
        "3s",
        "--wait-timeout",
        "6s",
    ]);
    wait_for("the running apply's lease", Duration::from_secs(60), || {
        w.lease().is_some()
    });
    w.labctl(&["force-unlock", "--plane", "kube"])
        .code(0)
        .stdout_has("Removed Lease ");
    let out = running.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("warning: the lock of stack `svf` was not renewed")
            && err.contains("it was deleted (`labctl force-unlock`?)")
            && err.contains("another writer may have run at the same time"),
        "{err}"
    );
    assert!(w.lease().is_none());

    let mut first = w.spawn(&["apply", "--yes", "--plane", "kube", "--lock-lease", "1h"]);
    wait_for("the first apply's lease", Duration::from_secs(60), || {
        w.lease().is_some()
    });
    let pid = first.id().to_string();
    first.kill().unwrap();
    first.wait().unwrap();
    let held = w.lease().expect("the killed apply's Lease");
    // Killed on this host: its process is gone, so its Lease is taken over at once.
    w.labctl(&["apply", "--yes", "--plane", "kube", "--no-wait"])
        .code(0);
    assert!(w.lease().is_none(), "{:?}", w.lease());
    // Killed on another host (an hour's Lease): nothing here can tell, only force-unlock frees it.
    w.srv.put(held).expect("the Lease put back");
    w.move_lease_elsewhere();
    w.labctl(&["apply", "--yes", "--plane", "kube"])
        .code(1)
        .stderr_has(&format!("(pid {pid} on elsewhere"));
    let unlocked = w.labctl(&["force-unlock", "--plane", "kube"]);
    unlocked
        .code(0)
        .stdout_has("Removed Lease ")
        .stdout_has(&format!("(pid {pid} on "));
    w.srv.set_auto_rollout(true);
    w.labctl(&["apply", "--yes"]).code(0);
    w.converged();
}

#[test]
fn a_targeted_plan_and_apply_touch_only_their_targets() {
    let w = World::new("svt", true);
    let plan = w.labctl(&["plan", "--target", "Deployment */web"]);
    plan.code(0)
        .stdout_has("# Deployment svt/web will be created")
        .stdout_has("# Namespace svt will be created")
        .stdout_has("included although not targeted: applied before `Deployment svt/web`, which depends on it")
        .stdout_has("Plan: 4 to add, 0 to change, 0 to destroy.")
        .stdout_has("Resource targeting is in effect: this plan is partial (--target 'Deployment */web'): 2 change(s) left out.");
    assert!(!plan.stdout.contains("unit svt-"), "{}", plan.stdout);
    // The pull-request comment says so too.
    w.labctl(&["plan", "--target", "Deployment */web", "--output", "markdown"])
        .code(0)
        .stdout_has("> **Resource targeting is in effect:** this plan is partial (--target 'Deployment */web'): 2 change(s) left out.");
    w.labctl(&["plan", "--target", "unit nothing-*"])
        .code(1)
        .stderr_has("`--target unit nothing-*` matches nothing in the plan");

    // A targeted apply touches only its target.
    w.labctl(&["apply", "--yes", "--target", "unit svt-a*"])
        .code(0)
        .stderr_has("Apply complete: 1 added, 0 changed, 0 destroyed.");
    assert_eq!(w.m.active_state(&w.unit("a")), "active");
    assert!(!w.unit_path("b").exists());
    assert!(w.srv.list("v1", "ConfigMap", Some("svt")).is_empty());
    w.labctl(&["plan", "--target", "unit svt-a*", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.")
        .stdout_has("Resource targeting is in effect");

    // A saved targeted plan keeps its targets; an exclusion leaves its own out.
    let file = w.dir.join("t.plan");
    let f = file.to_str().unwrap();
    w.labctl(&["plan", "--exclude", "unit svt-b*", "--out", f])
        .code(0)
        .stdout_has("Plan: 4 to add, 0 to change, 0 to destroy.");
    w.labctl(&["apply", f])
        .code(0)
        .stderr_has("Apply complete: 4 added, 0 changed, 0 destroyed.");
    assert!(w.config_map().is_some());
    assert!(!w.unit_path("b").exists());
    w.labctl(&["plan"])
        .code(0)
        .stdout_has("Plan: 1 to add, 0 to change, 0 to destroy.")
        .stdout_has(&format!("# unit {} will be created", w.unit("b")));
    w.labctl(&["apply", "--yes"]).code(0);
    assert_eq!(w.m.active_state(&w.unit("b")), "active");
    w.converged();
}

/// The test server holds Leases as the real server does for the lock's writes: created once
/// (409 AlreadyExists after), and an update carrying a stale `resourceVersion` refused with 409
/// Conflict. Checked with the real `kubectl`.
#[test]
fn the_test_server_refuses_a_stale_lease_update_as_a_real_server_does() {
    let srv = server(true);
    let kubectl = |verb: &str, body: &Value| kubectl(&srv, &[verb, "-f", "-", "-o", "json"], body);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "labctl-x", "namespace": "default"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 30}
    });
    let (ok, out, err) = kubectl("create", &lease);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let rv = created["metadata"]["resourceVersion"].clone();
    let (ok, _, err) = kubectl("create", &lease);
    assert!(!ok);
    assert!(
        err.contains("AlreadyExists") || err.contains("already exists"),
        "{err}"
    );
    let mut update = lease.clone();
    update["metadata"]["resourceVersion"] = rv.clone();
    update["spec"]["holderIdentity"] = json!("b");
    let (ok, _, err) = kubectl("replace", &update);
    assert!(ok, "{err}");
    // The same update again: its resourceVersion is now stale.
    update["spec"]["holderIdentity"] = json!("c");
    let (ok, _, err) = kubectl("replace", &update);
    assert!(!ok);
    assert!(
        err.contains(
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"labctl-x\": the object \
             has been modified; please apply your changes to the latest version and try again"
        ),
        "{err}"
    );
    let stored = srv
        .get("coordination.k8s.io/v1", "Lease", "default", "labctl-x")
        .unwrap();
    assert_eq!(stored["spec"]["holderIdentity"], "b");
}

/// Run the real `kubectl` against `srv` with `body` on stdin: (success, stdout, stderr).
fn kubectl(srv: &TestApiServer, args: &[&str], body: &Value) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(srv.kubeconfig_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl: install kubectl 1.32 (.ci/run does)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a saved plan's kube writes rely on: a server-side apply carrying a `resourceVersion`
/// writes only while the object is still at that version, and is refused with 409 Conflict
/// otherwise (sent by the real `kubectl apply --server-side`).
#[test]
fn a_server_side_apply_carrying_a_stale_resource_version_is_refused() {
    let srv = server(true);
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "guarded", "namespace": "default"},
        "data": {"a": "1"}
    });
    let apply = |body: &Value| {
        kubectl(
            &srv,
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "labctl",
                "-f",
                "-",
                "-o",
                "json",
            ],
            body,
        )
    };
    let (ok, out, err) = apply(&cm);
    assert!(ok, "{err}");
    let rv = serde_json::from_str::<Value>(&out).unwrap()["metadata"]["resourceVersion"].clone();
    let mut guarded = cm.clone();
    guarded["metadata"]["resourceVersion"] = rv.clone();
    guarded["data"]["a"] = json!("2");
    let (ok, out, err) = apply(&guarded);
    assert!(ok, "at the version it names, the write goes through: {err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["data"]["a"],
        "2"
    );
    // The same guard again: the object has moved on since.
    guarded["data"]["a"] = json!("3");
    let (ok, _, err) = apply(&guarded);
    assert!(!ok);
    assert!(err.contains("the object has been modified"), "{err}");
    let stored = srv.get("v1", "ConfigMap", "default", "guarded").unwrap();
    assert_eq!(stored["data"]["a"], "2");
}
