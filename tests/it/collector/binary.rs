//! `labctl agent collector` as a process: its Prometheus endpoint parsed back (and checked by
//! `promtool`), a real user manager's unit states, OTLP export, and SIGTERM.

use super::*;

/// The agent as a process, with its stderr collected.
struct Agent {
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Agent {
    fn spawn(args: &[&str], env: &[(&'static str, std::ffi::OsString)]) -> Self {
        let mut child = Labctl::new()
            .args(["agent", "collector"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("LABCTL_LOG", "info")
            .spawn();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Agent { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The address from the "serving Prometheus metrics on http://ADDR/metrics" line.
    fn metrics_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let err = self.stderr();
            if let Some(rest) = err.split("serving Prometheus metrics on http://").nth(1) {
                return rest.split('/').next().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "never served: {err}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> (i32, String) {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status.code().unwrap_or(-1), self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "still running 10 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus text back into `name{labels}` → value, checking every line's shape on the way.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "family typed twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        assert!(typed.contains(name), "series before its TYPE: {line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        out.insert(series.to_string(), value.parse::<f64>().unwrap());
    }
    out
}

/// `name{labels}` as the endpoint prints a series of the collector on `node`: the point's
/// attributes with the resource's labels (as the OTel Collector's remote write gives them), sorted.
fn key(name: &str, attrs: &[(&str, &str)], node: &str) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut labels: Vec<(&str, &str)> = attrs.to_vec();
    labels.extend([
        ("host_name", node),
        ("instance", node),
        ("job", "labctl-collector"),
        ("service_instance_id", node),
        ("service_name", "labctl-collector"),
        ("service_version", version),
    ]);
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// This machine's host name, as the collector reports it without `--node-name`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Wait until `/metrics` holds a collection (the first comes right after start).
fn scrape(addr: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = http_get(addr, "/metrics");
        assert_eq!(code, 200, "{body}");
        if body.contains(needle) {
            return body;
        }
        assert!(Instant::now() < deadline, "no `{needle}` in: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn promtool_check(text: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`) must be installed");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    // Lint findings (exit 3) are advice; a parse error is exit 1.
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "promtool rejects the text: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn binary_serves_prometheus_text_and_stops_cleanly_on_sigterm() {
    let t = Tailscaled::start(
        tailscale_fixture("status-running.json"),
        tailscale_fixture("serve-config-funnel.json"),
    );
    let f = fixture();
    let (proc, sys, root) = (f.join("proc"), f.join("sys"), f.join("root"));
    let agent = Agent::spawn(
        &[
            "--interval",
            "200ms",
            "--proc-path",
            proc.to_str().unwrap(),
            "--sys-path",
            sys.to_str().unwrap(),
            "--root-path",
            root.to_str().unwrap(),
            "--tailscale-socket",
            t.socket.to_str().unwrap(),
            "--node-name",
            "node1",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let addr = agent.metrics_addr();
    // An agent keeps small pages: a 2 MiB page would double its resident set (see
    // `hold_huge_pages`).
    assert_huge_pages_allowed_here();
    assert_eq!(huge_pages_enabled(agent.child.id()), Some(false));
    let text = scrape(&addr, "system_uptime_seconds");
    promtool_check(&text);
    let m = parse_prometheus(&text);
    let tps = rustix::param::clock_ticks_per_second() as f64;
    let k = |name: &str, attrs: &[(&str, &str)]| key(name, attrs, "node1");
    // The resource: `target_info` holds what `job` and `instance` do not.
    assert_eq!(
        m[&format!(
            r#"target_info{{host_name="node1",instance="node1",job="labctl-collector",service_version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )],
        1.0
    );
    assert!(close(
        m[&k(
            "system_cpu_time_seconds_total",
            &[("cpu", "cpu0"), ("state", "user")]
        )],
        2000.0 / tps
    ));
    assert_eq!(
        m[&k("system_memory_usage_bytes", &[("state", "free")])],
        2_048_000_000.0
    );
    assert_eq!(m[&k("system_cpu_load_average_15m", &[])], 0.25);
    assert_eq!(m[&k("system_uptime_seconds", &[])], 12345.67);
    assert_eq!(
        m[&k(
            "system_network_io_bytes_total",
            &[("device", "eth0"), ("direction", "receive")]
        )],
        123_456_789.0
    );
    assert_eq!(
        m[&k(
            "system_disk_operations_total",
            &[("device", "sda"), ("direction", "write")]
        )],
        2000.0
    );
    assert_eq!(
        m[&k(
            "system_paging_usage_bytes",
            &[("device", "/swap file"), ("state", "free")]
        )],
        1_048_576.0 * 1024.0
    );
    assert!(m.contains_key(&k(
        "system_filesystem_utilization_ratio",
        &[
            ("device", "/dev/sda1"),
            ("mode", "rw"),
            ("mountpoint", "/mnt/srv files"),
            ("type", "ext4")
        ]
    )));
    assert_eq!(m[&k("tailscale_up", &[])], 1.0);
    assert_eq!(m[&k("tailscale_peers_online", &[])], 2.0);
    assert_eq!(m[&k("tailscale_funnel_on", &[])], 1.0);
    let (code, _) = http_get(&addr, "/nope");
    assert_eq!(code, 404);

    // tailscaled gone (its socket with it): still collecting, Tailscale down.
    drop(t);
    scrape(&addr, &format!("{} 0", k("tailscale_up", &[])));

    let (code, err) = agent.terminate();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("stopping"), "{err}");
}

#[test]
fn binary_refuses_a_tree_that_is_not_proc() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = Labctl::new()
        .args(["agent", "collector", "--interval", "1s", "--proc-path"])
        .arg(dir.path())
        .run()
        .parts();
    assert_eq!(code, 1);
    assert!(err.contains("is not a proc file system"), "{err}");
}

#[test]
fn unit_states_come_from_a_real_user_manager() {
    let m = UserManager::start();
    let dir = m.unit_dir();
    let unit = |name: &str, stack: &str, exec: &str| {
        std::fs::write(
            dir.join(name),
            format!(
                "# Managed by labctl (stack: {stack}). Do not edit.\n[Unit]\nDescription=collector test\nStartLimitIntervalSec=0\n\n[Service]\nExecStart={exec}\n"
            ),
        )
        .unwrap();
    };
    unit("coltest-up.service", "coltest", "/bin/sleep 300");
    unit("coltest-down.service", "coltest", "/bin/sleep 300");
    unit("coltest-failed.service", "coltest", "/bin/false");
    // Crash-looping: systemd restarts it, and counts (NRestarts).
    unit(
        "coltest-flap.service",
        "coltest",
        "/bin/false\nRestart=always\nRestartSec=50ms",
    );
    // A timer's job: inactive between runs, which is normal for a oneshot.
    unit("coltest-job.service", "coltest", "/bin/true\nType=oneshot");
    unit("other-up.service", "otherstack", "/bin/sleep 300");
    std::fs::write(
        dir.join("plain.service"),
        "[Service]\nExecStart=/bin/sleep 300\n",
    )
    .unwrap();
    m.systemctl(&["daemon-reload"]);
    m.systemctl(&[
        "start",
        "coltest-up.service",
        "other-up.service",
        "coltest-job.service",
    ]);
    m.systemctl(&["start", "--no-block", "coltest-flap.service"]);
    // A unit that fails: its start job fails, systemd keeps it `failed`.
    let _ = Command::new("systemctl")
        .args(["--user", "start", "coltest-failed.service"])
        .envs(m.env())
        .output();

    let f = fixture();
    let agent = Agent::spawn(
        &[
            "--interval",
            "200ms",
            "--proc-path",
            f.join("proc").to_str().unwrap(),
            "--sys-path",
            f.join("sys").to_str().unwrap(),
            "--root-path",
            f.join("root").to_str().unwrap(),
            "--tailscale-socket",
            "/nonexistent/tailscaled.sock",
            "--systemd",
            "user",
            "--stack-name",
            "coltest",
            "--unit-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &m.env(),
    );
    let addr = agent.metrics_addr();
    let text = scrape(&addr, "labctl_unit_active");
    let host = host_name();
    let u = |metric: &str, unit: &str, kind: &str| {
        key(
            metric,
            &[
                ("labctl_stack", "coltest"),
                ("unit", unit),
                ("unit_type", kind),
            ],
            &host,
        )
    };
    let got = parse_prometheus(&text);
    let only = |prefix: &str| -> BTreeMap<String, f64> {
        got.iter()
            .filter(|(k, _)| k.starts_with(prefix) && !k.contains("coltest-flap"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let want = |pairs: &[(&str, &str, f64)], metric: &str| -> BTreeMap<String, f64> {
        pairs
            .iter()
            .map(|(unit, kind, v)| (u(metric, unit, kind), *v))
            .collect()
    };
    assert_eq!(
        only("labctl_unit_active{"),
        want(
            &[
                ("coltest-down.service", "simple", 0.0),
                ("coltest-failed.service", "simple", 0.0),
                ("coltest-job.service", "oneshot", 0.0),
                ("coltest-up.service", "simple", 1.0),
            ],
            "labctl_unit_active"
        )
    );
    assert_eq!(
        only("labctl_unit_failed{"),
        want(
            &[
                ("coltest-down.service", "simple", 0.0),
                ("coltest-failed.service", "simple", 1.0),
                ("coltest-job.service", "oneshot", 0.0),
                ("coltest-up.service", "simple", 0.0),
            ],
            "labctl_unit_failed"
        )
    );
    assert_eq!(
        only("labctl_unit_restarts_total{"),
        want(
            &[
                ("coltest-down.service", "simple", 0.0),
                ("coltest-failed.service", "simple", 0.0),
                ("coltest-job.service", "oneshot", 0.0),
                ("coltest-up.service", "simple", 0.0),
            ],
            "labctl_unit_restarts_total"
        )
    );
    // The crash loop is counted as it goes.
    let flap = u(
        "labctl_unit_restarts_total",
        "coltest-flap.service",
        "simple",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = parse_prometheus(&scrape(&addr, &flap))[&flap];
        if n >= 3.0 {
            break;
        }
        assert!(Instant::now() < deadline, "restarts stayed at {n}");
        std::thread::sleep(Duration::from_millis(100));
    }
    m.systemctl(&["stop", "coltest-flap.service"]);

    // The unit stops: the next collection says so.
    m.systemctl(&["stop", "coltest-up.service"]);
    scrape(
        &addr,
        &format!(
            "{} 0",
            u("labctl_unit_active", "coltest-up.service", "simple")
        ),
    );
    let (code, err) = agent.terminate();
    assert_eq!(code, 0, "{err}");
}

/// The points reach an OTLP collector with the hostmetrics receiver's names, units, kinds and
/// attributes, under the collector's own resource.
#[test]
fn binary_exports_hostmetrics_over_otlp() {
    let rx = otlp::Receiver::start();
    let f = fixture();
    let (proc, sys, root) = (f.join("proc"), f.join("sys"), f.join("root"));
    let missing = tempfile::tempdir().unwrap();
    let endpoint = rx.http_endpoint();
    let agent = Agent::spawn(
        &[
            "--interval",
            "200ms",
            "--proc-path",
            proc.to_str().unwrap(),
            "--sys-path",
            sys.to_str().unwrap(),
            "--root-path",
            root.to_str().unwrap(),
            "--tailscale-socket",
            missing.path().join("tailscaled.sock").to_str().unwrap(),
            "--node-name",
            "node1",
            "--otlp-endpoint",
            &endpoint,
        ],
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300".into()),
        ],
    );
    let metrics = rx.wait_for_metrics(Duration::from_secs(30), |m| {
        m.iter().any(|m| m.name == "system.network.io")
            && m.iter().any(|m| m.name == "tailscale.up")
    });
    let get = |name: &str| {
        metrics
            .iter()
            .rev()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no `{name}` in {metrics:#?}"))
    };
    let cpu = get("system.cpu.time");
    assert_eq!(
        (cpu.kind, cpu.monotonic, cpu.unit.as_str()),
        ("sum", true, "s")
    );
    assert!(cpu.points.iter().any(|(a, _)| {
        a.get("cpu").map(String::as_str) == Some("cpu0")
            && a.get("state").map(String::as_str) == Some("user")
    }));
    let memory = get("system.memory.usage");
    assert_eq!((memory.kind, memory.unit.as_str()), ("sum", "By"));
    let free: Vec<f64> = memory
        .points
        .iter()
        .filter(|(a, _)| a.get("state").map(String::as_str) == Some("free"))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(free, [2_048_000_000.0]);
    let load = get("system.cpu.load_average.15m");
    assert_eq!((load.kind, load.points[0].1), ("gauge", 0.25));
    let net = get("system.network.io");
    assert!(net.points.iter().any(|(a, v)| {
        a.get("device").map(String::as_str) == Some("eth0")
            && a.get("direction").map(String::as_str) == Some("receive")
            && *v == 123_456_789.0
    }));
    // No tailscaled socket: Tailscale is down, not an error.
    assert_eq!(get("tailscale.up").points[0].1, 0.0);
    let resource = &cpu.resource;
    assert_eq!(resource["service.name"], "labctl-collector");
    assert_eq!(resource["host.name"], "node1");
    drop(agent);
}
