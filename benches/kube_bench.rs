//! `labctl plan` against the test API server holding 1,000 labctl objects in 10 kinds, with
//! injected latency per request, beside `kubectl diff --server-side -f` on the same objects in
//! the same run: requests (counted by the server) and wall time for each. Run by
//! `benches/kube.sh`, which builds the release binary first.
//!
//! Environment: `LABCTL_BIN` (the labctl binary), `KUBECTL` (default `kubectl`), `RUNS` (labctl
//! plan repetitions, default 5), `LATENCY_MS` (default 5), `OBJECTS_PER_KIND` (default 111).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use labctl_testapi::{Options, TestApiServer};

const KINDS: &str = r#"{% for i in range(c.values.n) %}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-{{ i }}
data:
  index: {{ i | string }}
  config.yaml: |
    listen: 0.0.0.0:{{ 8000 + i }}
---
apiVersion: v1
kind: Secret
metadata:
  name: secret-{{ i }}
data:
  token: dG9rZW4=
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: sa-{{ i }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: role-{{ i }}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get]
---
apiVersion: v1
kind: Service
metadata:
  name: svc-{{ i }}
spec:
  selector:
    app: app-{{ i }}
  ports:
    - name: http
      port: 80
      targetPort: {{ 8000 + i }}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data-{{ i }}
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{{ i }}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: app-{{ i }}
  template:
    metadata:
      labels:
        app: app-{{ i }}
    spec:
      containers:
        - name: app
          image: registry.example/app:{{ i }}
          ports:
            - containerPort: {{ 8000 + i }}
          resources:
            requests: { cpu: 10m, memory: 16Mi }
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db-{{ i }}
spec:
  serviceName: db-{{ i }}
  selector:
    matchLabels:
      app: db-{{ i }}
  template:
    metadata:
      labels:
        app: db-{{ i }}
    spec:
      containers:
        - name: db
          image: registry.example/db:{{ i }}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent-{{ i }}
spec:
  selector:
    matchLabels:
      app: agent-{{ i }}
  template:
    metadata:
      labels:
        app: agent-{{ i }}
    spec:
      containers:
        - name: agent
          image: registry.example/agent:{{ i }}
{% endfor %}
"#;

/// `[stack]` plus every built-in component disabled (shared with the tests).
const BARE: &str = include_str!("../tests/fixtures/bare.toml");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn labctl(bin: &Path, stack: &Path, kubeconfig: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.arg("--stack")
        .arg(stack)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .args(["--plane", "kube"])
        .env("NO_COLOR", "1");
    c
}

fn must(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Row {
    what: String,
    requests: f64,
    wall: Duration,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bin =
        PathBuf::from(std::env::var("LABCTL_BIN").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/labctl").into()
        }));
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let runs: usize = env_or("RUNS", 5);
    let latency = Duration::from_millis(env_or("LATENCY_MS", 5));
    let per_kind: usize = env_or("OBJECTS_PER_KIND", 111);

    let dir = tempfile::tempdir().expect("temp dir");
    let stack = dir.path().join("stack.toml");
    std::fs::write(
        &stack,
        format!("{BARE}\n[kube.extra.bulk]\nvalues = {{ n = {per_kind} }}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("templates/bulk")).unwrap();
    std::fs::write(dir.path().join("templates/bulk/objects.yaml"), KINDS).unwrap();

    let srv = TestApiServer::start_blocking(Options {
        auto_rollout: true,
        ..Options::default()
    })
    .expect("test API server");
    let kc = srv.kubeconfig_path().to_path_buf();

    // Set up without latency: apply, then check that the plan is empty.
    must(
        labctl(&bin, &stack, &kc, &["apply", "--yes", "--no-wait"]),
        "labctl apply",
    );
    let plan = must(labctl(&bin, &stack, &kc, &["plan", "-o", "json"]), "plan");
    let doc: serde_json::Value = serde_json::from_str(&plan).expect("JSON plan");
    let objects = doc["changes"].as_array().map_or(0, Vec::len);
    assert_eq!(
        doc["changes_present"], false,
        "the applied stack plans empty"
    );
    let manifests = dir.path().join("manifests");
    let mut render = Command::new(&bin);
    render
        .arg("--stack")
        .arg(&stack)
        .args(["render", "--plane", "kube", "-o"])
        .arg(&manifests);
    must(render, "labctl render");
    let kinds = {
        let mut k: Vec<String> = doc["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["id"]["kind"].as_str().map(String::from))
            .collect();
        k.sort();
        k.dedup();
        k.len()
    };

    srv.set_latency(latency);
    let mut rows = Vec::new();

    let mut walls = Vec::new();
    srv.reset_requests();
    for _ in 0..runs {
        let started = Instant::now();
        must(labctl(&bin, &stack, &kc, &["plan"]), "labctl plan");
        walls.push(started.elapsed());
    }
    rows.push(Row {
        what: "labctl plan".into(),
        requests: srv.requests() as f64 / runs as f64,
        wall: median(walls),
    });

    let mut walls = Vec::new();
    srv.reset_requests();
    for _ in 0..runs {
        let started = Instant::now();
        must(
            labctl(&bin, &stack, &kc, &["plan", "--server-dry-run"]),
            "labctl plan --server-dry-run",
        );
        walls.push(started.elapsed());
    }
    rows.push(Row {
        what: "labctl plan --server-dry-run".into(),
        requests: srv.requests() as f64 / runs as f64,
        wall: median(walls),
    });

    srv.reset_requests();
    let started = Instant::now();
    let out = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&kc)
        .args([
            "diff",
            "--server-side",
            "--field-manager=labctl",
            "-R",
            "-f",
        ])
        .arg(manifests.join("kube"))
        .output()
        .expect("run kubectl");
    let kubectl_wall = started.elapsed();
    // kubectl diff exits 1 when it finds differences, >1 on errors.
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "kubectl diff failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let differences = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("diff "))
        .count();
    rows.push(Row {
        what: format!("kubectl diff --server-side -f ({differences} objects differ)"),
        requests: srv.requests() as f64,
        wall: kubectl_wall,
    });

    println!(
        "{objects} labctl objects in {kinds} kinds, {} ms injected latency per request, labctl median of {runs} runs\n",
        latency.as_millis()
    );
    println!("| command | API requests | wall time | vs kubectl |");
    println!("| --- | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {} ms | {:.0}× faster |",
            r.what,
            r.requests,
            r.wall.as_millis(),
            kubectl_wall.as_secs_f64() / r.wall.as_secs_f64()
        );
    }
}
