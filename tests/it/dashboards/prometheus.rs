//! A real Prometheus scraping the real collector and the other agents' points: every query is
//! accepted and returns data where its metrics exist; the collector's endpoint serves what the OTel
//! Collector's remote write makes of its OTLP export.

use super::*;

/// `expr` with Grafana's variables as Grafana fills them for a Prometheus datasource whose
/// scrape interval is 1 s: a multi-value variable as a regex group.
fn fill(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut e = expr.to_string();
    for (k, v) in vars {
        e = e
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    e.replace("$__rate_interval", "4s")
        .replace("$__interval", "2s")
        .replace("$__range", "5m")
}

#[test]
fn promql_metric_names_are_found() {
    assert_eq!(
        metrics_in(
            r#"sum by (host_name, direction) (max by (host_name, device) (rate(system_network_io_bytes_total{host_name=~"$host", device!="lo"}[$__rate_interval])))"#
        ),
        BTreeSet::from(["system_network_io_bytes_total".to_string()])
    );
    assert_eq!(
        metrics_in(
            r#"a_total unless on (host_name) max by (host_name) (increase(b{result="ok"}[1h])) > 0 or vector(0) and time() - c"#
        ),
        ["a_total", "b", "c"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

/// The tailscaled stand-in answering the fixture JSON of a running node with a funnel.
fn tailscaled() -> Tailscaled {
    let fixture = |f: &str| {
        std::fs::read_to_string(repo().join("tests/fixtures/proc-sys-tailscale").join(f)).unwrap()
    };
    Tailscaled::start(
        fixture("status-running.json"),
        fixture("serve-config-funnel.json"),
    )
}

/// The path of the HTTP request on `r`, its headers read.
fn request_path(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    let _ = r.read_line(&mut line);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            return path;
        }
    }
}

/// Serves `pages` (path → Prometheus text) over HTTP on loopback; returns the address.
fn serve_pages(pages: BTreeMap<String, String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let path = request_path(&mut BufReader::new(&s));
            let (code, body) = match pages.get(&path) {
                Some(b) => ("200 OK", b.as_str()),
                None => ("404 Not Found", ""),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The collector on the fixture proc/sys tree as `node1`, serving `/metrics`; its address.
fn collector(extra: &[&str], env: &[(&str, &str)], tailscale: &Path) -> (Running, String) {
    let f = repo().join("tests/fixtures/proc-sys");
    let mut child = Labctl::new()
        .args([
            "agent",
            "collector",
            "--interval",
            "500ms",
            "--node-name",
            "node1",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--proc-path")
        .arg(f.join("proc"))
        .arg("--sys-path")
        .arg(f.join("sys"))
        .arg("--root-path")
        .arg(f.join("root"))
        .arg("--tailscale-socket")
        .arg(tailscale)
        .args(extra)
        .envs(env.iter().copied())
        .env("LABCTL_LOG", "info")
        .spawn();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0 && Instant::now() < deadline,
            "never served: {seen}"
        );
        seen.push_str(&line);
        if let Some(rest) = line.split("serving Prometheus metrics on http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (Running(child), addr)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus (Debian's) with `config`, on a free loopback port.
struct Prometheus {
    addr: String,
    _process: Running,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(config: &str, rules: &str) -> Self {
        require("prometheus", "apt-get install prometheus");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        // Prometheus cannot listen on port 0: take a free port and hand it over.
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            addr,
            _process: Running(child),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&p.addr).is_err() || http_get(&p.addr, "/-/ready").0 != 200 {
            let log =
                std::fs::read_to_string(p._dir.path().join("prometheus.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "prometheus never got ready: {log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// `GET /api/v1/<path>`: the JSON answer, whatever its status.
    fn api(&self, path: &str) -> Value {
        let (_, body) = http_get(&self.addr, &format!("/api/v1/{path}"));
        serde_json::from_str(&body).unwrap_or_else(|_| json!({"status": "error", "error": body}))
    }

    /// Evaluate `expr` now (instant) or over the last minute (range): (accepted, error, series).
    fn query(&self, expr: &str, range: bool) -> Result<usize, String> {
        let q = encode(expr);
        let v = if range {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            self.api(&format!(
                "query_range?query={q}&start={}&end={now}&step=2",
                now - 60
            ))
        } else {
            self.api(&format!("query?query={q}"))
        };
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        let data = &v["data"];
        Ok(match data["resultType"].as_str() {
            Some("scalar") | Some("string") => 1,
            _ => data["result"].as_array().map_or(0, Vec::len),
        })
    }
}

/// The other agents' points, through the same translation as the collector's: the proxy's (a
/// sync rolled back, deliveries, pipeline starts), the gate's, the ingest's (named as
/// docs/agents.md lists them), the host collector's units, and telemetry drops.
fn agents_pages() -> BTreeMap<String, String> {
    use labctl::agent::proxy::metrics::Counts;
    let resource = |service: &str, host: &str| -> Vec<(String, String)> {
        [
            ("host.name", host),
            ("service.name", service),
            ("service.instance.id", host),
            ("service.version", "test"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    };
    let page = |service: &str, host: &str, points: Vec<Point>| {
        exposition(&Snapshot {
            resource: resource(service, host),
            points,
        })
    };
    let mut c = Counts::default();
    let mut proxy = c.start();
    let now = std::time::SystemTime::now();
    c.sync("abc1234", "ok", Duration::from_secs(12), now);
    let (totals, last) = c.sync(
        "def5678",
        labctl::agent::proxy::metrics::ROLLED_BACK,
        Duration::from_secs(40),
        now,
    );
    proxy.extend(totals);
    proxy.extend(last);
    proxy.extend(c.delivery(Some("push"), 202));
    c.pipeline_start("nightly-etl", 202);
    proxy.extend(c.pipeline_start("nightly-etl", 429));
    let dropped = |n| {
        Point::new(
            labctl::telemetry::DROPPED,
            "{item}",
            "drops",
            Kind::Counter,
            n,
        )
        .with("signal", "spans")
    };
    proxy.push(dropped(0.0));
    let mut gate = labctl::agent::gate::points(true, 2);
    gate.push(dropped(0.0));
    let ingest = vec![
        Point::new(
            "labctl.ingest.entries.upserted",
            "{entry}",
            "",
            Kind::Counter,
            42.0,
        ),
        Point::new(
            "labctl.ingest.comments.upserted",
            "{comment}",
            "",
            Kind::Counter,
            7.0,
        ),
        Point::new(
            "labctl.ingest.api.calls",
            "{request}",
            "",
            Kind::Counter,
            120.0,
        ),
        Point::new(
            "labctl.ingest.ratelimit.remaining",
            "{request}",
            "",
            Kind::Gauge,
            4880.0,
        ),
        Point::new("labctl.ingest.sync.duration", "s", "", Kind::Gauge, 1.5).with("result", "ok"),
        Point::new("labctl.ingest.syncs", "{sync}", "", Kind::Counter, 3.0).with("result", "ok"),
        Point::new("labctl.ingest.syncs", "{sync}", "", Kind::Counter, 0.0).with("result", "error"),
    ];
    let mut units = Vec::new();
    for (unit, state, service) in [
        (
            "labctl-proxy.service",
            "active",
            Some(("notify".to_string(), 0)),
        ),
        (
            "labctl-gate.service",
            "active",
            Some(("notify".to_string(), 1)),
        ),
        (
            "reading-sync.service",
            "inactive",
            Some(("oneshot".to_string(), 0)),
        ),
        ("reading-sync.timer", "active", None),
    ] {
        units.extend(labctl::agent::collector::unit_points(
            unit, "homelab", state, service,
        ));
    }
    [
        ("/proxy", page("labctl-proxy", "node1", proxy)),
        ("/gate", page("labctl-gate", "node1", gate)),
        ("/ingest", page("labctl-ingest", "node1", ingest)),
        // The host collector's units (the fixture collector has no systemd to ask); told apart
        // from the fixture collector's series by their `service_version`.
        ("/units", page("labctl-collector", "node1", units)),
    ]
    .into_iter()
    .map(|(p, t)| (p.to_string(), t))
    .collect()
}

#[test]
fn a_real_prometheus_accepts_every_query_and_panels_over_data_it_has_return_data() {
    require("prometheus", "apt-get install prometheus");
    let r = Rendered::bundled();
    let rules_text = r.rules();
    let tailscale = tailscaled();
    let (_collector, addr) = collector(&[], &[], &tailscale.socket);
    let pages = agents_pages();
    let stub = serve_pages(pages.clone());
    // Scraped as a user without an OTel Collector scrapes: `honor_labels` keeps the endpoint's
    // job and instance, so the series are those the remote write would store.
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: collector\n    honor_labels: true\n    static_configs: [{{targets: ['{addr}']}}]\n"
    );
    for path in pages.keys() {
        config.push_str(&format!(
            "  - job_name: stub{}\n    honor_labels: true\n    metrics_path: {path}\n    static_configs: [{{targets: ['{stub}']}}]\n",
            path.replace('/', "-")
        ));
    }
    let prom = Prometheus::start(&config, &rules_text);

    // Enough scrapes for rates and trends, and the rules evaluated.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let samples = prom.query(
            "count_over_time(system_uptime_seconds{host_name=\"node1\"}[1m])",
            false,
        );
        let stubbed = prom.query("labctl_proxy_syncs_total", false);
        if samples.is_ok_and(|_| {
            let v = prom.api(&format!(
                "query?query={}",
                encode("count_over_time(system_uptime_seconds{host_name=\"node1\"}[1m])")
            ));
            v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(0.0)
                >= 6.0
        }) && stubbed.is_ok_and(|n| n > 0)
            && prom
                .query("ALERTS{alertstate=\"firing\"}", false)
                .is_ok_and(|n| n > 0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus has not scraped enough: {:#}",
            prom.api("targets")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let names: BTreeSet<String> = prom.api("label/__name__/values")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let scraped = |expr: &str| {
        let m = metrics_in(expr);
        !m.is_empty() && m.iter().all(|n| names.contains(n))
    };

    let mut problems = Vec::new();
    let mut checked = 0;
    let mut with_data = 0;
    // Panel queries over metrics Prometheus does not have (none here: every metric is fed).
    let mut empty = Vec::new();
    for (file, d) in r.dashboards() {
        // Variables first: their values fill the panels' queries.
        let mut vars = BTreeMap::new();
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap().to_string();
            match v["type"].as_str() {
                Some("query") => {
                    let (metric, label) = label_values(v["query"].as_str().unwrap()).unwrap();
                    let expr = format!("count by ({label}) ({metric})");
                    let values = prom.api(&format!("query?query={}", encode(&expr)));
                    let mut found: Vec<String> = values["data"]["result"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["metric"][label].as_str().map(String::from))
                        .collect();
                    found.sort();
                    checked += 1;
                    if found.is_empty() {
                        problems.push(format!(
                            "{file}: variable `{name}`: `{expr}` found nothing: {values}"
                        ));
                        continue;
                    }
                    // A multi-value variable as Grafana formats it for Prometheus; a single one as
                    // its first value.
                    let value = if v["multi"] == true {
                        format!("({})", found.join("|"))
                    } else {
                        found[0].clone()
                    };
                    vars.insert(name, value);
                }
                _ => {
                    vars.insert(name, String::new());
                }
            }
        }
        for p in all_panels(&d) {
            if p["datasource"]["type"] != "prometheus" {
                continue;
            }
            let title = p["title"].as_str().unwrap();
            for t in p["targets"].as_array().unwrap() {
                let expr = fill(t["expr"].as_str().unwrap(), &vars);
                let range = t["range"] == true;
                checked += 1;
                match prom.query(&expr, range) {
                    Err(e) => problems.push(format!("{file}: `{title}`: `{expr}` refused: {e}")),
                    Ok(0) if scraped(&expr) => problems.push(format!(
                        "{file}: `{title}`: `{expr}` returned nothing though Prometheus has {:?}",
                        metrics_in(&expr)
                    )),
                    Ok(0) => empty.push(format!("{file}: `{title}`: `{expr}`")),
                    Ok(_) => with_data += 1,
                }
            }
        }
    }
    for rule in rules(&rules_text) {
        checked += 1;
        if let Err(e) = prom.query(&rule.expr, false) {
            problems.push(format!("rule {}: `{}` refused: {e}", rule.alert, rule.expr));
        }
    }
    // Prometheus evaluated every rule itself without an error, and the rolled-back sync fires.
    let loaded = prom.api("rules");
    let groups = loaded["data"]["groups"].as_array().unwrap();
    let evaluated: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(evaluated.len(), rules(&rules_text).len(), "{loaded:#}");
    for rule in &evaluated {
        if rule["health"] != "ok" {
            problems.push(format!(
                "rule {} is {}: {}",
                rule["name"], rule["health"], rule["lastError"]
            ));
        }
    }
    let firing = prom.api(&format!(
        "query?query={}",
        encode("ALERTS{alertstate=\"firing\"}")
    ));
    assert_eq!(
        firing["data"]["result"][0]["metric"]["alertname"], "LabctlGitOpsRolledBack",
        "{firing:#}"
    );
    assert!(
        problems.is_empty(),
        "{} of {checked} queries:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Every metric the panels read is fed here (the collector's for real, the others' through the
    // same translation), so every panel has data, the host panels among them.
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    assert!(with_data >= 50, "{with_data} panel queries");
    for host_panel in [
        "system_cpu_utilization_ratio",
        "system_filesystem_usage_bytes",
        "system_disk_io_bytes_total",
        "system_paging_usage_bytes",
        "tailscale_peers_online",
    ] {
        assert!(
            names.contains(host_panel),
            "{host_panel} never scraped: {names:?}"
        );
    }
}

// The translation: the collector's endpoint serves what the remote write makes of its OTLP.

/// contrib v0.116 `normalizeName` for the units labctl uses, from the Go code.
fn prw_name(name: &str, unit: &str, kind: &str, monotonic: bool) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    let word = match unit {
        "s" => "seconds",
        "By" => "bytes",
        "1" | "" => "",
        u if u.contains('{') => "",
        u => panic!("add unit `{u}` to the test's table"),
    };
    if !word.is_empty() && !tokens.iter().any(|t| t == word) {
        tokens.push(word.into());
    }
    if kind == "sum" && monotonic {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    }
    if unit == "1" && kind == "gauge" {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".into());
    }
    tokens.join("_")
}

/// contrib v0.116 `createAttributes` with `resource_to_telemetry_conversion`, as `name{labels}`.
fn prw_series(
    name: &str,
    point: &BTreeMap<String, String>,
    resource: &BTreeMap<String, String>,
) -> String {
    let mut merged = point.clone();
    merged.extend(resource.clone());
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in merged {
        let k: String = k
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        labels
            .entry(k)
            .and_modify(|e| {
                if *e != v {
                    *e = format!("{e};{v}")
                }
            })
            .or_insert(v);
    }
    labels.insert("job".into(), resource["service.name"].clone());
    labels.insert("instance".into(), resource["service.instance.id"].clone());
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

#[test]
fn the_collector_endpoint_serves_what_remote_write_makes_of_its_otlp_export() {
    let rx = otlp::Receiver::start();
    let tailscale = tailscaled();
    let endpoint = rx.http_endpoint();
    let (_collector, addr) = collector(
        &["--otlp-endpoint", &endpoint],
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ],
        &tailscale.socket,
    );
    let metrics = rx.wait_for_metrics(Duration::from_secs(30), |m| {
        m.iter().any(|m| m.name == "system.uptime")
            && m.iter().any(|m| m.name == labctl::telemetry::DROPPED)
    });
    // The latest export of each metric, as the OTel Collector would get it.
    let mut latest: BTreeMap<&str, &otlp::Metric> = BTreeMap::new();
    for m in &metrics {
        latest.insert(&m.name, m);
    }
    let mut want = BTreeSet::new();
    let mut resource = None;
    for m in latest.values() {
        let name = prw_name(&m.name, &m.unit, m.kind, m.monotonic);
        for (attrs, _) in &m.points {
            want.insert(prw_series(&name, attrs, &m.resource));
        }
        resource = Some(m.resource.clone());
    }
    let resource = resource.unwrap();
    assert_eq!(resource["service.instance.id"], "node1");
    // target_info: the resource but job's and instance's sources, with job and instance.
    let mut info: BTreeMap<String, String> = resource
        .iter()
        .filter(|(k, _)| {
            !["service.name", "service.namespace", "service.instance.id"].contains(&k.as_str())
        })
        .map(|(k, v)| (k.replace('.', "_"), v.clone()))
        .collect();
    info.insert("job".into(), resource["service.name"].clone());
    info.insert("instance".into(), resource["service.instance.id"].clone());
    let inner: Vec<String> = info.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.insert(format!("target_info{{{}}}", inner.join(",")));

    let (code, text) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    let got: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
        .collect();
    let missing: Vec<&String> = want.difference(&got).collect();
    let extra: Vec<&String> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing on /metrics: {missing:#?}\nnot in the OTLP export: {extra:#?}"
    );
    assert!(got.len() > 50, "{}", got.len());
}
