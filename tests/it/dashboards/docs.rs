//! The docs keep up: every metric a dashboard or rule uses is documented under its Prometheus name,
//! and docs/dashboards/ pictures each dashboard as it is.

use super::*;

/// docs/agents.md's table of metrics in Prometheus: OpenTelemetry name → (kind, unit, Prometheus
/// name).
fn documented() -> BTreeMap<String, (String, String, String)> {
    let doc = std::fs::read_to_string(repo().join("docs/agents.md")).unwrap();
    let table = doc
        .split("## Metrics in Prometheus")
        .nth(1)
        .expect("docs/agents.md has a `## Metrics in Prometheus` section");
    let mut out = BTreeMap::new();
    for line in table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
    {
        let cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').to_string())
            .collect();
        assert_eq!(cells.len(), 6, "{line}");
        out.insert(
            cells[0].clone(),
            (cells[1].clone(), cells[2].clone(), cells[5].clone()),
        );
    }
    out
}

#[test]
fn every_metric_in_a_dashboard_or_rule_is_documented_under_its_prometheus_name() {
    let docs = documented();
    let mut names = BTreeSet::new();
    for (metric, (kind, unit, prom)) in &docs {
        let kind = match kind.as_str() {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "updowncounter" => Kind::UpDownCounter,
            other => panic!("{metric}: kind `{other}`"),
        };
        let unit = if unit == "(none)" { "" } else { unit.as_str() };
        let name = metric_name(&Point::new(
            Box::leak(metric.clone().into_boxed_str()),
            Box::leak(unit.to_string().into_boxed_str()),
            "",
            kind,
            0.0,
        ));
        assert_eq!(&name, prom, "docs/agents.md: {metric} arrives as {name}");
        names.insert(name);
    }
    // Every name the code produces is documented (the points agents record).
    let mut c = labctl::agent::proxy::metrics::Counts::default();
    let mut points = c.start();
    let (a, b) = c.sync("c", "ok", Duration::ZERO, std::time::SystemTime::now());
    points.extend(a.into_iter().chain(b));
    points.extend(c.delivery(None, 200));
    points.extend(c.pipeline_start("p", 202));
    points.extend(labctl::agent::gate::points(true, 1));
    points.extend(labctl::agent::collector::unit_points(
        "u.service",
        "s",
        "active",
        Some(("simple".into(), 0)),
    ));
    let f = repo().join("tests/fixtures/proc-sys");
    let mut host = labctl::agent::collector::host::Host::new(
        &f.join("proc"),
        &f.join("sys"),
        &f.join("root"),
        &[],
    );
    assert!(host.collect(&mut points).is_empty());
    points.push(Point::new(
        labctl::telemetry::DROPPED,
        "{item}",
        "",
        Kind::Counter,
        0.0,
    ));
    for name in ["tailscale.up", "tailscale.funnel.on"] {
        points.push(Point::new(name, "", "", Kind::Gauge, 0.0));
    }
    points.push(Point::new(
        "tailscale.peers.online",
        "{peer}",
        "",
        Kind::Gauge,
        0.0,
    ));
    for p in &points {
        assert!(
            names.contains(&metric_name(p)),
            "{} ({}) is not in docs/agents.md",
            p.name,
            metric_name(p)
        );
    }
    // Every metric a query reads is one of them, Prometheus's own, or the OTel Collector's.
    let r = Rendered::bundled();
    let mut exprs: Vec<String> = rules(&r.rules()).into_iter().map(|r| r.expr).collect();
    for d in r.dashboards().values() {
        for p in all_panels(d) {
            if p["datasource"]["type"] == "prometheus" {
                exprs.extend(
                    p["targets"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["expr"].as_str().unwrap().to_string()),
                );
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if let Some((metric, _)) = v["query"].as_str().and_then(label_values) {
                exprs.push(metric.to_string());
            }
        }
    }
    for e in &exprs {
        for m in metrics_in(e) {
            assert!(
                names.contains(&m) || m == "ALERTS",
                "`{m}` (in `{e}`) is not in docs/agents.md's metrics table"
            );
        }
    }
}

#[test]
fn the_layout_pictures_in_docs_match_the_dashboards() {
    let dashboards = Rendered::bundled().dashboards();
    let json_dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, d) in &dashboards {
        let p = json_dir.path().join(name);
        std::fs::write(&p, serde_json::to_string(d).unwrap()).unwrap();
        files.push(p);
    }
    let ran = Command::new("python3")
        .arg(repo().join("scripts/dashboard-layout.py"))
        .arg(out.path())
        .args(&files)
        .output()
        .expect("python3 runs scripts/dashboard-layout.py");
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let docs = repo().join("docs/dashboards");
    let update = std::env::var_os("LABCTL_UPDATE_DOCS").is_some();
    let doc = std::fs::read_to_string(repo().join("docs/dashboards.md")).unwrap();
    for name in dashboards.keys() {
        let svg = name.replace(".json", ".svg");
        let drawn = std::fs::read_to_string(out.path().join(&svg)).unwrap();
        assert!(drawn.matches("<rect").count() > 5, "{drawn}");
        if update {
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(&svg), &drawn).unwrap();
        }
        let committed = std::fs::read_to_string(docs.join(&svg)).unwrap_or_default();
        assert!(
            committed == drawn,
            "docs/dashboards/{svg} is not the layout of {name}: run `LABCTL_UPDATE_DOCS=1 cargo test --test it dashboards::docs::the_layout`"
        );
        assert!(
            doc.contains(&format!("(dashboards/{svg})")),
            "docs/dashboards.md does not show {svg}"
        );
    }
}
