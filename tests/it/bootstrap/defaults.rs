//! Defaults that follow their source: every port and name moved, every consumer follows.

use super::*;

/// `labctl render --redact` of `stack_text`, by file (`systemd/<unit>`, `kube/<ns>/<file>`).
fn rendered(stack_text: &str) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stack.toml");
    std::fs::write(&path, stack_text).unwrap();
    let out = Command::new(labctl_bin())
        .arg("--stack")
        .arg(&path)
        .args(["render", "--redact"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = BTreeMap::new();
    for part in text.split("---\n# Source: ").skip(1) {
        let (name, body) = part.split_once('\n').unwrap();
        files.insert(name.to_string(), body.to_string());
    }
    files
}

/// Set `key` in `[section]` (dotted: `host.proxy`) of a TOML document.
fn set(stack: &mut Table, section: &str, key: &str, v: Value) {
    let mut t = stack;
    for part in section.split('.') {
        t = table(t, part);
    }
    t.insert(key.into(), v);
}

#[test]
fn every_port_and_name_moves_and_every_consumer_follows() {
    let text = std::fs::read_to_string(repo().join("stack.toml")).unwrap();
    let mut stack: Table = toml::from_str(&text).unwrap();
    let int = |n: i64| Value::Integer(n);
    let st = |s: &str| Value::String(s.into());
    set(&mut stack, "stack", "name", st("lab2"));
    set(&mut stack, "stack", "namespace", st("lab2ns"));
    for (k, v) in [
        ("http_node_port", 31001),
        ("grpc_node_port", 31002),
        ("http_port", 4418),
        ("grpc_port", 4417),
    ] {
        set(&mut stack, "kube.otel-collector", k, int(v));
    }
    set(&mut stack, "kube.postgres", "node_port", int(31003));
    set(&mut stack, "kube.postgres", "port", int(5433));
    set(&mut stack, "kube.postgres", "user", st("lab_owner"));
    set(&mut stack, "kube.postgres", "database", st("journaldb"));
    set(&mut stack, "kube.grafana", "node_port", int(31004));
    set(&mut stack, "kube.loki", "port", int(3101));
    set(&mut stack, "kube.loki", "bucket", st("logs"));
    set(&mut stack, "kube.tempo", "port", int(3201));
    set(&mut stack, "kube.tempo", "bucket", st("traces"));
    set(&mut stack, "kube.thanos", "http_port", int(10912));
    set(&mut stack, "kube.thanos", "bucket", st("blocks"));
    set(&mut stack, "kube.prometheus", "port", int(9091));
    set(&mut stack, "kube.minio", "api_port", int(9100));
    set(
        &mut stack,
        "kube.minio",
        "buckets",
        Value::Array(Vec::new()),
    );
    set(&mut stack, "host.proxy", "port", int(8095));
    set(&mut stack, "host.openbao", "listen", st("127.0.0.1:8300"));
    set(&mut stack, "host.openbao", "cluster_port", int(8301));
    let files = rendered(&toml::to_string(&stack).unwrap());
    let file = |name: &str| -> &str {
        files
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` in {:?}", files.keys()))
    };
    let has = |name: &str, want: &str| {
        assert!(
            file(name).contains(want),
            "`{name}` lacks {want:?}:\n{}",
            file(name)
        );
    };

    // The host's agents follow the cluster's ports and names, and the proxy's port.
    has(
        "systemd/labctl-collector.service",
        "--otlp-endpoint http://127.0.0.1:31001 ",
    );
    has(
        "systemd/labctl-ingest.service",
        "--database-url postgres://lab_owner@127.0.0.1:31003/journaldb",
    );
    has("systemd/labctl-gate.service", "--funnel 8443:8095");
    has(
        "systemd/labctl-gate.service",
        "--health-url http://127.0.0.1:8095/healthz",
    );
    has("systemd/labctl-proxy.service", "--listen 127.0.0.1:8095 ");
    has("systemd/openbao.service", r#""address": "127.0.0.1:8300""#);
    has(
        "systemd/openbao.service",
        r#""cluster_address": "127.0.0.1:8301""#,
    );
    has("systemd/openbao.service", r#""node_id": "lab2""#);
    for (name, body) in &files {
        if name.starts_with("systemd/") {
            for old in [
                "30318",
                "30432",
                ":8085",
                "8443:8085",
                "8200",
                "stack homelab",
                "--stack-name homelab",
            ] {
                assert!(!body.contains(old), "`{name}` still says {old}:\n{body}");
            }
        }
    }
    // In the cluster: Services, the collectors' endpoint, Grafana's datasources, the buckets.
    let ns = "kube/lab2ns";
    has(
        &format!("{ns}/service-otel-collector.yaml"),
        "nodePort: 31001",
    );
    has(
        &format!("{ns}/service-otel-collector.yaml"),
        "nodePort: 31002",
    );
    has(&format!("{ns}/service-postgres.yaml"), "nodePort: 31003");
    has(&format!("{ns}/service-grafana.yaml"), "nodePort: 31004");
    has(
        &format!("{ns}/daemonset-collectors.yaml"),
        "http://otel-collector.lab2ns.svc:4418",
    );
    let datasources: String = files
        .iter()
        .filter(|(n, b)| n.contains("grafana") && b.contains("datasources"))
        .map(|(_, b)| b.as_str())
        .collect();
    for want in [
        "postgres.lab2ns.svc:5433",
        "lab_owner",
        "journaldb",
        "loki.lab2ns.svc:3101",
        "tempo.lab2ns.svc:3201",
        "thanos-query.lab2ns.svc:10912",
    ] {
        assert!(
            datasources.contains(want),
            "datasources lack {want}:\n{datasources}"
        );
    }
    let minio = file(&format!("{ns}/deployment-minio.yaml"));
    for bucket in ["local/logs", "local/traces", "local/blocks"] {
        assert!(minio.contains(bucket), "minio lacks {bucket}:\n{minio}");
    }
    assert!(minio.contains("127.0.0.1:9100"), "{minio}");
    assert!(
        !files.keys().any(|n| n.starts_with("kube/homelab/")),
        "{:?}",
        files.keys()
    );

    // An explicit setting still wins over the default that would follow.
    set(
        &mut stack,
        "host.collector",
        "otlp_endpoint",
        st("http://10.0.0.5:4318"),
    );
    set(
        &mut stack,
        "host.ingest",
        "database_url",
        st("postgres://me@db.lan:5432/mine"),
    );
    let files = rendered(&toml::to_string(&stack).unwrap());
    assert!(
        files["systemd/labctl-collector.service"].contains("--otlp-endpoint http://10.0.0.5:4318 ")
    );
    assert!(
        files["systemd/labctl-ingest.service"]
            .contains("--database-url postgres://me@db.lan:5432/mine")
    );
}
