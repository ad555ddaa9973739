//! The bundled stack.toml and the shipped templates: the whole seed system renders, strictly, and
//! the plan is exactly the committed golden output.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{Labctl, Stack, repo};
use labctl::resource::{COMPONENT, Content, ResourceId};

fn desired() -> labctl::resource::Desired {
    let loaded = labctl::stack::load(&repo().join("stack.toml")).expect("bundled stack is valid");
    let templates = labctl::render::Templates::builtin();
    labctl::render::render(
        &loaded.stack,
        &templates,
        &labctl::sensitive::Secrets::redacted(),
        None,
    )
    .expect("bundled stack renders")
}

#[test]
fn golden_plan_human() {
    let (code, out, err) = Labctl::new()
        .current_dir(repo())
        .args(["plan", "--offline"])
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("plan_offline_human", out);
}

#[test]
fn golden_plan_json() {
    let (code, out, err) = Labctl::new()
        .current_dir(repo())
        .args(["plan", "--offline", "--output", "json"])
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("plan_offline_json", out);
}

#[test]
fn the_seed_is_all_there() {
    let d = desired();
    let kinds: BTreeSet<(String, String)> = d
        .objects
        .keys()
        .filter_map(|id| match id {
            ResourceId::Kube { kind, name, .. } => Some((kind.clone(), name.clone())),
            ResourceId::Systemd { .. } | ResourceId::EnvFile { .. } => None,
        })
        .collect();
    let has = |kind: &str, name: &str| kinds.contains(&(kind.to_string(), name.to_string()));
    for (kind, name) in [
        ("DaemonSet", "collectors"),
        ("Deployment", "grafana"),
        ("StatefulSet", "loki"),
        ("Deployment", "minio"),
        ("Deployment", "otel-collector"),
        ("StatefulSet", "postgres"),
        ("Deployment", "prometheus"),
        ("StatefulSet", "tempo"),
    ] {
        assert!(has(kind, name), "{kind} {name} missing; have {kinds:?}");
    }
    assert!(
        kinds
            .iter()
            .any(|(k, n)| k == "StatefulSet" && n.starts_with("thanos")),
        "thanos StatefulSet"
    );

    // The exposed ports of the seed.
    let node_ports: BTreeSet<i64> = d
        .objects
        .values()
        .filter_map(|o| o.content.as_kube())
        .filter(|v| v["kind"] == "Service")
        .flat_map(|v| v["spec"]["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["nodePort"].as_i64())
        .collect();
    assert_eq!(node_ports, BTreeSet::from([30000, 30317, 30318, 30432]));

    let units: BTreeSet<String> = d
        .objects
        .keys()
        .filter_map(|id| match id {
            ResourceId::Systemd { unit, .. } => Some(unit.clone()),
            ResourceId::Kube { .. } | ResourceId::EnvFile { .. } => None,
        })
        .collect();
    let want = [
        "labctl-proxy.service",
        "labctl-collector.service",
        "labctl-ingest.service",
        "labctl-gate.service",
        "openbao.service",
        "reading-sync.service",
        "reading-sync.timer",
    ];
    assert_eq!(units, want.iter().map(|s| s.to_string()).collect());
    let unit = |u: &str| match &d.objects[&ResourceId::unit(None, u)].content {
        Content::Unit(t) => t.clone(),
        Content::Kube(_) => unreachable!(),
    };
    assert!(
        unit("labctl-proxy.service").contains("8085"),
        "proxy on 8085"
    );
    assert!(
        unit("labctl-gate.service").contains("8443"),
        "funnel on 8443"
    );
    assert!(unit("reading-sync.timer").contains("OnCalendar=*-*-* 03:00:00"));
}

#[test]
fn every_object_is_owned_and_checked_strictly() {
    for (id, o) in &desired().objects {
        let Some(v) = o
            .content
            .as_kube()
            .filter(|_| id.plane() == labctl::stack::Plane::Kube)
        else {
            continue;
        };
        let labels = &v["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "labctl", "{id}");
        assert_eq!(labels["app.kubernetes.io/part-of"], "homelab", "{id}");
        assert_eq!(labels[COMPONENT], o.component.as_str(), "{id}");
        let (api_version, kind) = (
            v["apiVersion"].as_str().unwrap(),
            v["kind"].as_str().unwrap(),
        );
        labctl::schema_check::check(api_version, kind, v).unwrap_or_else(|e| panic!("{id}: {e}"));
        // Only kinds with a typed check: nothing passes unchecked.
        assert!(
            labctl::schema_check::check(api_version, kind, &serde_json::json!({"bogus": 1}))
                .is_err(),
            "{id}: kind has no strict check"
        );
    }
}

#[test]
fn render_round_trips_byte_for_byte() {
    let out = tempfile::tempdir().unwrap();
    let (code, _, err) = Labctl::new()
        .current_dir(repo())
        .args(["render", "--redact", "-o"])
        .arg(out.path())
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    let mut n = 0;
    for path in walk(&out.path().join("kube")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(Content::kube(parsed).text(), text, "{}", path.display());
        n += 1;
    }
    assert!(n > 30, "only {n} kube files");
    // Seven units and the proxy's and ingest's env files.
    assert_eq!(walk(&out.path().join("systemd")).len(), 9);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[test]
fn each_component_can_be_disabled() {
    let base = std::fs::read_to_string(repo().join("stack.toml")).unwrap();
    for (table, component) in [
        ("kube.collectors", "collectors"),
        ("kube.grafana", "grafana"),
        ("kube.loki", "loki"),
        ("kube.otel-collector", "otel-collector"),
        ("kube.postgres", "postgres"),
        ("kube.prometheus", "prometheus"),
        ("kube.tempo", "tempo"),
        ("kube.thanos", "thanos"),
    ] {
        let text = base.replace(
            &format!("[{table}]"),
            &format!("[{table}]\nenabled = false"),
        );
        let s = Stack::new(&text);
        let (code, out, err) = s
            .labctl(&["render", "--redact", "--plane", "kube"])
            .run()
            .parts();
        assert_eq!(code, 0, "disabling {component}: {err}");
        assert!(
            !out.contains(&format!("{COMPONENT}: {component}\n")),
            "{component} still rendered"
        );
    }
    // MinIO backs Loki, Tempo and Thanos: disabling it alone is refused, with them it renders.
    let text = ["kube.minio", "kube.loki", "kube.tempo", "kube.thanos"]
        .iter()
        .fold(base.clone(), |t, table| {
            t.replace(
                &format!("[{table}]"),
                &format!("[{table}]\nenabled = false"),
            )
        });
    let (code, out, err) = Stack::new(&text)
        .labctl(&["render", "--redact", "--plane", "kube"])
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("minio"),
        "nothing may point at a disabled MinIO:\n{out}"
    );
    for (table, unit) in [
        ("host.collector", "labctl-collector.service"),
        ("host.ingest", "labctl-ingest.service"),
        ("host.openbao", "openbao.service"),
        ("host.reading-sync", "reading-sync.timer"),
    ] {
        let text = base.replace(
            &format!("[{table}]"),
            &format!("[{table}]\nenabled = false"),
        );
        let (code, out, err) = Stack::new(&text)
            .labctl(&["render", "--redact", "--plane", "systemd"])
            .run()
            .parts();
        assert_eq!(code, 0, "{err}");
        assert!(!out.contains(unit), "{unit} still rendered");
    }
}

#[test]
fn validate_reports_counts() {
    let (code, out, err) = Labctl::new()
        .current_dir(repo())
        .arg("validate")
        .run()
        .parts();
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.starts_with("`stack.toml` is valid: "), "{err}");
}
