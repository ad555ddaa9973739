//! 1,000 labctl objects in 10 kinds on the test API server, with and without injected latency
//! per request, beside kubectl on the same objects in the same run: `labctl apply` of the new
//! objects vs `kubectl apply --server-side -R -f`, and `labctl plan` of the applied stack vs
//! `kubectl diff --server-side -R -f`: requests (counted by the server) and wall time for each.
//! Plans (both tools') are the median of `RUNS` runs; applies run once, as they create the
//! objects. Run by `benches/kube.sh`, which builds the release binary first (or set
//! `LABCTL_BIN`).
//!
//! Environment: `LABCTL_BIN` (the labctl binary), `KUBECTL` (default `kubectl`), `RUNS` (plan
//! repetitions of each tool, default 5), `LATENCY_MS` (default 5), `OBJECTS_PER_KIND` (default 111).

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

fn server() -> TestApiServer {
    TestApiServer::start_blocking(Options {
        auto_rollout: true,
        ..Options::default()
    })
    .expect("test API server")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Requests and wall time of one command against one server.
struct Measure {
    requests: u64,
    wall: Duration,
}

fn timed(srv: &TestApiServer, mut c: Command, what: &str, ok: impl Fn(i32) -> bool) -> Measure {
    srv.reset_requests();
    let started = Instant::now();
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let wall = started.elapsed();
    assert!(
        ok(out.status.code().unwrap_or(-1)),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Measure {
        requests: srv.requests(),
        wall,
    }
}

fn kubectl(kubectl: &str, kc: &Path, args: &[&str], manifests: &Path) -> Command {
    let mut c = Command::new(kubectl);
    c.arg("--kubeconfig")
        .arg(kc)
        .args(args)
        .args(["-R", "-f"])
        .arg(manifests);
    c
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bin =
        PathBuf::from(std::env::var("LABCTL_BIN").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/labctl").into()
        }));
    let kubectl_bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
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
    let manifests = dir.path().join("manifests");
    let mut render = Command::new(&bin);
    render
        .arg("--stack")
        .arg(&stack)
        .args(["render", "--plane", "kube", "--output-dir"])
        .arg(&manifests);
    must(render, "labctl render");
    let manifests = manifests.join("kube");

    // (what, latency, labctl, kubectl)
    let mut rows: Vec<(String, Duration, Measure, Measure)> = Vec::new();
    let mut summary = (0, 0);
    for lat in [Duration::ZERO, latency] {
        // Apply 1,000 new objects: each tool on an empty server of its own.
        let ours = server();
        ours.set_latency(lat);
        let kc = ours.kubeconfig_path().to_path_buf();
        let applied = timed(
            &ours,
            labctl(&bin, &stack, &kc, &["apply", "--yes", "--no-wait"]),
            "labctl apply",
            |c| c == 0,
        );
        let theirs = server();
        theirs.set_latency(lat);
        let kubectl_applied = timed(
            &theirs,
            kubectl(
                &kubectl_bin,
                theirs.kubeconfig_path(),
                &["apply", "--server-side", "--field-manager=labctl"],
                &manifests,
            ),
            "kubectl apply --server-side",
            |c| c == 0,
        );
        rows.push((
            "apply 1,000 new objects".into(),
            lat,
            applied,
            kubectl_applied,
        ));

        // Plan the applied stack: the median of `runs` of each tool.
        ours.set_latency(Duration::ZERO);
        let plan = must(labctl(&bin, &stack, &kc, &["plan", "-o", "json"]), "plan");
        let doc: serde_json::Value = serde_json::from_str(&plan).expect("JSON plan");
        assert_eq!(
            doc["changes_present"], false,
            "the applied stack plans empty"
        );
        summary.0 = doc["changes"].as_array().map_or(0, Vec::len);
        summary.1 = {
            let mut k: Vec<&str> = doc["changes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["id"]["kind"].as_str())
                .collect();
            k.sort_unstable();
            k.dedup();
            k.len()
        };
        ours.set_latency(lat);
        let mut walls = Vec::new();
        let mut requests = 0;
        for _ in 0..runs {
            let m = timed(
                &ours,
                labctl(&bin, &stack, &kc, &["plan"]),
                "labctl plan",
                |c| c == 0,
            );
            walls.push(m.wall);
            requests = m.requests;
        }
        // kubectl diff, as many times: one run of it varies by a factor of two on a shared
        // machine, and the ratio is only as good as both sides. It exits 1 when it finds
        // differences, >1 on errors.
        let mut kubectl_walls = Vec::new();
        let mut kubectl_requests = 0;
        for _ in 0..runs {
            let m = timed(
                &ours,
                kubectl(
                    &kubectl_bin,
                    &kc,
                    &["diff", "--server-side", "--field-manager=labctl"],
                    &manifests,
                ),
                "kubectl diff --server-side",
                |c| c == 0 || c == 1,
            );
            kubectl_walls.push(m.wall);
            kubectl_requests = m.requests;
        }
        let diffed = Measure {
            requests: kubectl_requests,
            wall: median(kubectl_walls),
        };
        rows.push((
            "plan an applied stack".into(),
            lat,
            Measure {
                requests,
                wall: median(walls),
            },
            diffed,
        ));
    }

    println!(
        "{} labctl objects in {} kinds; plans: median of {runs} runs of each tool; applies: one run\n",
        summary.0, summary.1
    );
    println!(
        "| what | latency/request | labctl requests | labctl wall | kubectl requests | kubectl wall | labctl faster |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (what, lat, ours, theirs) in &rows {
        println!(
            "| {what} | {} ms | {} | {} ms | {} | {} ms | {:.1}× |",
            lat.as_millis(),
            ours.requests,
            ours.wall.as_millis(),
            theirs.requests,
            theirs.wall.as_millis(),
            theirs.wall.as_secs_f64() / ours.wall.as_secs_f64()
        );
    }
}
