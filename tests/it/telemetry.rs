//! OTLP from labctl, received by the project's own receiver (support/otlp.rs): the CLI's
//! traces over gRPC and HTTP/protobuf, `labctl apply` against a real systemd user manager, a dead
//! or failing collector that changes nothing, malformed settings, the agent runtime's logs and
//! metrics, and the bundled otel-collector accepting what labctl sends.

use std::path::Path;
use std::time::Duration;

use crate::support::otlp::{self, Receiver, Reply, Span};
use crate::support::systemd::UserManager;
use crate::support::{Labctl, Output, Stack, free_port, in_own_process};

const WAIT: Duration = Duration::from_secs(15);
const SECRET: &str = "hunter2-telemetry-must-not-see-this";
const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

const SLEEPER: &str = "[Unit]
Description=telemetry test {{ c.values.n }}

[Service]
ExecStart=/bin/sh -c 'trap \"\" HUP; while :; do sleep 1; done'
# A secret the unit needs: it must reach no trace, event or log.
Environment=TOKEN={{ secret(\"webhook-secret\") }}

[Install]
WantedBy=default.target
";

/// labctl `--stack stack args` with `env`, a secret the units need, and the manager's environment
/// when there is one (else a HOME of its own).
fn labctl(m: Option<&UserManager>, stack: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let c = match m {
        Some(m) => m.command(stack, args),
        None => Labctl::new()
            .stack(stack)
            .args(args)
            .env("HOME", stack.parent().unwrap()),
    };
    c.env("LABCTL_SECRET_WEBHOOK_SECRET", SECRET)
        .timeout(Duration::from_secs(120))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .run()
}

fn http(rx: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", rx.http_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
    ]
}

fn grpc(rx: &Receiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", rx.grpc_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
    ]
}

/// An endpoint where nothing listens (a port just released).
fn closed_endpoint() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// A stack named `name` with units `<name>-a`, `<name>-b`, `<name>-c` (long-running, enabled).
fn three_units(dir: &Path, name: &str) -> std::path::PathBuf {
    let mut s = Stack::units(dir, name).template("sleeper.service", SLEEPER);
    for n in ["a", "b", "c"] {
        s = s.unit(
            n,
            &format!("template = \"sleeper\"\nunit = \"{name}-{n}\"\nvalues = {{ n = \"{n}\" }}"),
        );
    }
    s.write()
}

fn one(spans: &[Span], name: &str) -> Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span in {spans:#?}");
    found[0].clone()
}

fn has(spans: &[Span], name: &str) -> bool {
    spans.iter().any(|s| s.name == name)
}

#[test]
fn apply_against_systemd_traces_one_span_per_applied_unit() {
    let m = UserManager::start();
    let rx = Receiver::start();
    let stack = three_units(&m.scratch(), "tele");
    let mut env = http(&rx);
    env.push(("TRACEPARENT", format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01")));

    let out = labctl(
        Some(&m),
        &stack,
        &["apply", "--plane", "systemd", "--yes"],
        &env,
    );
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("Plan: 3 to add"), "{out:#?}");
    for n in ["a", "b", "c"] {
        assert_eq!(m.active_state(&format!("tele-{n}.service")), "active");
    }

    let spans = rx.wait_for_spans(WAIT, |s| has(s, "labctl apply"));
    let root = one(&spans, "labctl apply");
    // A child of the caller's trace (TRACEPARENT).
    assert_eq!(root.trace_id, PARENT_TRACE);
    assert_eq!(root.parent_span_id, PARENT_SPAN);
    assert_eq!(root.attr("labctl.stack"), Some("tele"));
    assert_eq!(root.attr("labctl.planes"), Some("systemd"));
    assert_eq!(
        (
            root.attr("labctl.add"),
            root.attr("labctl.change"),
            root.attr("labctl.destroy")
        ),
        (Some("3"), Some("0"), Some("0"))
    );
    assert_eq!(
        root.resource.get("service.name").map(String::as_str),
        Some("labctl")
    );
    assert_eq!(
        root.resource.get("service.version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        root.resource.get("labctl.stack").map(String::as_str),
        Some("tele")
    );
    assert!(
        root.resource
            .get("host.name")
            .is_some_and(|h| !h.is_empty())
    );

    let children = otlp::children(&spans, &root);
    let observe: Vec<_> = children.iter().filter(|s| s.name == "observe").collect();
    assert_eq!(observe.len(), 1, "{children:#?}");
    assert_eq!(observe[0].attr("labctl.plane"), Some("systemd"));
    let requests: u64 = observe[0].attr("labctl.requests").unwrap().parse().unwrap();
    assert!(requests > 0, "{:?}", observe[0]);

    let mut changes: Vec<(String, String, String)> = children
        .iter()
        .filter(|s| s.name == "apply change")
        .map(|s| {
            (
                s.attr("labctl.resource").unwrap_or_default().to_string(),
                s.attr("labctl.action").unwrap_or_default().to_string(),
                s.attr("labctl.result").unwrap_or_default().to_string(),
            )
        })
        .collect();
    changes.sort();
    let want: Vec<(String, String, String)> = ["a", "b", "c"]
        .iter()
        .map(|n| (format!("unit tele-{n}.service"), "add".into(), "ok".into()))
        .collect();
    assert_eq!(changes, want, "{spans:#?}");
    assert!(
        !rx.raw().contains(SECRET),
        "the secret reached the collector"
    );

    // Converged, and the plan has its own trace, a child of the same caller.
    let plan = labctl(
        Some(&m),
        &stack,
        &["plan", "--plane", "systemd", "--detailed-exitcode"],
        &env,
    );
    assert_eq!(plan.code, 0, "{plan:#?}");
    assert!(plan.stdout.contains("No changes."), "{plan:#?}");
    let spans = rx.wait_for_spans(WAIT, |s| has(s, "labctl plan"));
    let root = one(&spans, "labctl plan");
    assert_eq!(root.parent_span_id, PARENT_SPAN);
    assert_eq!(root.attr("labctl.add"), Some("0"));
    assert!(
        otlp::children(&spans, &root)
            .iter()
            .any(|s| s.name == "observe")
    );
    assert!(
        !rx.raw().contains(SECRET),
        "the secret reached the collector"
    );
}

#[test]
fn a_failed_unit_is_a_failed_change_span() {
    let m = UserManager::start();
    let rx = Receiver::start();
    let stack = Stack::units(&m.scratch(), "telefail")
        .template("bad.service", "[Service]\nExecStart=/bin/false\n")
        .template("good.service", "[Service]\nExecStart=/bin/sleep infinity\n")
        .unit("bad", "template = \"bad\"\nunit = \"telefail-bad\"")
        .unit("good", "template = \"good\"\nunit = \"telefail-good\"");
    let path = stack.write();
    let out = labctl(
        Some(&m),
        &path,
        &["apply", "--plane", "systemd", "--yes"],
        &http(&rx),
    );
    assert_eq!(out.code, 1, "{out:#?}");
    let spans = rx.wait_for_spans(WAIT, |s| has(s, "labctl apply"));
    let root = one(&spans, "labctl apply");
    assert!(
        root.attr("error.message")
            .is_some_and(|e| e.contains("telefail-bad"))
    );
    let result = |unit: &str| {
        spans
            .iter()
            .find(|s| s.name == "apply change" && s.attr("labctl.resource") == Some(unit))
            .unwrap_or_else(|| panic!("no span for {unit}: {spans:#?}"))
            .clone()
    };
    let bad = result("unit telefail-bad.service");
    assert_eq!(bad.attr("labctl.result"), Some("failed"));
    assert!(
        bad.attr("error.message")
            .is_some_and(|e| e.contains("failed")),
        "{bad:?}"
    );
    assert_eq!(
        result("unit telefail-good.service").attr("labctl.result"),
        Some("ok")
    );

    // Fixed, it converges.
    let path = stack
        .template("bad.service", "[Service]\nExecStart=/bin/sleep infinity\n")
        .write();
    let out = labctl(
        Some(&m),
        &path,
        &["apply", "--plane", "systemd", "--yes"],
        &[],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    let plan = labctl(
        Some(&m),
        &path,
        &["plan", "--plane", "systemd", "--detailed-exitcode"],
        &[],
    );
    assert_eq!(plan.code, 0, "{plan:#?}");
    assert!(plan.stdout.contains("No changes."));
}

/// Without the lines telemetry itself adds, and with the stack's name as `P`.
fn normal(text: &str, name: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("warning: telemetry"))
        .map(|l| {
            if name.is_empty() {
                l.to_string()
            } else {
                l.replace(name, "P")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn apply_with_a_dead_endpoint_behaves_exactly_as_without() {
    let m = UserManager::start();
    let dir = m.scratch();
    let mut seen = Vec::new();
    for (name, env) in [
        ("plain", vec![]),
        (
            "deadhttp",
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", closed_endpoint())],
        ),
        (
            "deadgrpc",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", closed_endpoint()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
            ],
        ),
    ] {
        let stack = three_units(&dir.join(name), name);
        let out = labctl(
            Some(&m),
            &stack,
            &["apply", "--plane", "systemd", "--yes"],
            &env,
        );
        assert_eq!(out.code, 0, "{name}: {out:#?}");
        for n in ["a", "b", "c"] {
            assert_eq!(m.active_state(&format!("{name}-{n}.service")), "active");
        }
        let plan = labctl(
            Some(&m),
            &stack,
            &["plan", "--plane", "systemd", "--detailed-exitcode"],
            &env,
        );
        assert_eq!(plan.code, 0, "{name}: {plan:#?}");
        assert!(plan.stdout.contains("No changes."));
        seen.push((
            name,
            normal(&out.stdout, name),
            normal(&out.stderr, name),
            out.stderr,
        ));
    }
    let (_, stdout, stderr, _) = &seen[0];
    for (name, out, err, raw) in &seen[1..] {
        assert_eq!(out, stdout, "{name}: stdout differs");
        assert_eq!(err, stderr, "{name}: stderr differs");
        // The dead collector is reported, once.
        let warnings = raw
            .lines()
            .filter(|l| l.starts_with("warning: telemetry"))
            .count();
        assert_eq!(warnings, 1, "{name}: {raw}");
    }
}

#[test]
fn plan_traces_over_grpc_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let stack = three_units(&dir.path().join("s"), "offline");
    for (via, env) in [("grpc", grpc as fn(&Receiver) -> _), ("http", http)] {
        let rx = Receiver::start();
        let out = labctl(
            None,
            &stack,
            &["plan", "--offline", "--detailed-exitcode"],
            &env(&rx),
        );
        assert_eq!(out.code, 2, "{out:#?}");
        assert_eq!(
            out.stderr
                .lines()
                .filter(|l| l.contains("telemetry"))
                .count(),
            0,
            "{out:#?}"
        );
        let spans = rx.wait_for_spans(WAIT, |s| has(s, "labctl plan"));
        let root = one(&spans, "labctl plan");
        assert_eq!(root.via, via);
        assert_eq!(
            root.parent_span_id, "",
            "no TRACEPARENT: a trace of its own"
        );
        assert_eq!(root.attr("labctl.stack"), Some("offline"));
        // Offline, the stack's namespace is planned too.
        assert_eq!(root.attr("labctl.planes"), Some("kube,systemd"));
        assert_eq!(root.attr("labctl.add"), Some("4"));
        assert_eq!(
            root.resource.get("service.name").map(String::as_str),
            Some("labctl")
        );
        assert!(!rx.raw().contains(SECRET));
    }
}

#[test]
fn a_failing_or_hung_collector_is_reported_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let stack = three_units(&dir.path().join("s"), "faults");
    let args = ["plan", "--offline", "--detailed-exitcode"];
    let base = labctl(None, &stack, &args, &[]);
    assert_eq!(base.code, 2, "{base:#?}");
    for (reply, proto, says) in [
        (Reply::Status(503), "http", "failed"),
        (Reply::Status(400), "http", "failed"),
        (Reply::Status(503), "grpc", "failed"),
        (Reply::Hang, "http", "did not take the last export"),
        (Reply::Hang, "grpc", "did not take the last export"),
    ] {
        let rx = Receiver::start();
        rx.set_reply(reply);
        let env = if proto == "grpc" {
            grpc(&rx)
        } else {
            http(&rx)
        };
        let out = labctl(None, &stack, &args, &env);
        let case = format!("{reply:?} over {proto}");
        assert_eq!(out.code, base.code, "{case}: {out:#?}");
        assert_eq!(out.stdout, base.stdout, "{case}");
        assert_eq!(normal(&out.stderr, ""), normal(&base.stderr, ""), "{case}");
        let warnings: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("warning: telemetry"))
            .collect();
        assert_eq!(warnings.len(), 1, "{case}: {warnings:?}");
        assert!(warnings[0].contains(says), "{case}: {warnings:?}");
        assert!(rx.requests() > 0, "{case}: the collector was tried");
        assert!(rx.spans().is_empty(), "{case}");
    }
}

#[test]
fn malformed_settings_warn_once_and_turn_telemetry_off() {
    let dir = tempfile::tempdir().unwrap();
    let stack = three_units(&dir.path().join("s"), "badenv");
    let args = ["plan", "--offline", "--detailed-exitcode"];
    let base = labctl(None, &stack, &args, &[]);
    let rx = Receiver::start();
    for (var, value, says) in [
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "carrier-pigeon",
            "`OTEL_EXPORTER_OTLP_PROTOCOL`",
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "team",
            "`OTEL_RESOURCE_ATTRIBUTES`",
        ),
        ("OTEL_SDK_DISABLED", "maybe", "`OTEL_SDK_DISABLED`"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "not a url",
            "`OTEL_EXPORTER_OTLP_ENDPOINT`",
        ),
    ] {
        let mut env = http(&rx);
        env.retain(|(k, _)| *k != var);
        env.push((var, value.to_string()));
        let out = labctl(None, &stack, &args, &env);
        assert_eq!((out.code, &out.stdout), (base.code, &base.stdout), "{var}");
        let warnings: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("telemetry"))
            .collect();
        assert_eq!(warnings.len(), 1, "{var}: {}", out.stderr);
        assert!(
            warnings[0].starts_with("warning: telemetry is off: ") && warnings[0].contains(says),
            "{var}: {warnings:?}"
        );
    }
    // Disabled on purpose: silence, nothing sent.
    let mut env = http(&rx);
    env.push(("OTEL_SDK_DISABLED", "true".into()));
    let out = labctl(None, &stack, &args, &env);
    assert_eq!(
        (out.code, &out.stdout, &out.stderr),
        (base.code, &base.stdout, &base.stderr)
    );
    assert_eq!(rx.requests(), 0, "nothing was sent");

    // A malformed TRACEPARENT: one warning, and a trace of its own.
    let mut env = http(&rx);
    env.push(("TRACEPARENT", "00-nothex-0001-01".into()));
    let out = labctl(None, &stack, &args, &env);
    assert_eq!((out.code, &out.stdout), (base.code, &base.stdout));
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.contains("TRACEPARENT"))
            .count(),
        1,
        "{}",
        out.stderr
    );
    let spans = rx.wait_for_spans(WAIT, |s| has(s, "labctl plan"));
    assert_eq!(one(&spans, "labctl plan").parent_span_id, "");
}

/// The agent runtime in a process of its own (this binary's copy): it installs the global tracing
/// subscriber and SIGTERM/SIGINT/SIGHUP handlers for good, which no other test may inherit. Its
/// logs and the points it records reach the collector as `labctl-probe`, flushed on exit.
#[test]
fn agent_runtime_exports_logs_and_recorded_metrics() {
    in_own_process(
        concat!(
            module_path!(),
            "::agent_runtime_exports_logs_and_recorded_metrics"
        ),
        || {
            use labctl::metric::{Kind, Point};
            let rx = Receiver::start();
            let code = labctl::agent::runtime::start(
                "probe",
                Some(&rx.http_endpoint()),
                |shutdown| async move {
                    shutdown.ready();
                    labctl::telemetry::record(&[
                        Point::new("probe.memory", "By", "memory in use", Kind::Gauge, 1024.0)
                            .with("state", "used"),
                        Point::new("probe.memory", "By", "memory in use", Kind::Gauge, 2048.0)
                            .with("state", "free"),
                        Point::new("probe.reads", "{read}", "reads so far", Kind::Counter, 7.0),
                        Point::new(
                            "probe.queue",
                            "{item}",
                            "items queued",
                            Kind::UpDownCounter,
                            3.0,
                        ),
                    ]);
                    // The latest value of a series wins.
                    labctl::telemetry::record(&[Point::new(
                        "probe.reads",
                        "{read}",
                        "reads so far",
                        Kind::Counter,
                        9.0,
                    )]);
                    tracing::info!("probe measured");
                    Ok(())
                },
            );
            assert_eq!(code, std::process::ExitCode::SUCCESS);
            let logs = rx.wait_for_logs(WAIT, |l| l.iter().any(|l| l.body == "probe measured"));
            let log = logs.iter().find(|l| l.body == "probe measured").unwrap();
            assert_eq!(log.severity, "INFO");
            assert_eq!(
                log.resource.get("service.name").map(String::as_str),
                Some("labctl-probe")
            );
            assert!(logs.iter().any(|l| l.body == "ready"), "{logs:#?}");

            let metrics = rx.wait_for_metrics(WAIT, |m| m.iter().any(|m| m.name == "probe.queue"));
            let get = |name: &str| {
                metrics
                    .iter()
                    .rev()
                    .find(|m| m.name == name)
                    .unwrap()
                    .clone()
            };
            let memory = get("probe.memory");
            assert_eq!((memory.kind, memory.unit.as_str()), ("gauge", "By"));
            assert_eq!(memory.description, "memory in use");
            let mut points: Vec<(String, f64)> = memory
                .points
                .iter()
                .map(|(a, v)| (a["state"].clone(), *v))
                .collect();
            points.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                points,
                vec![("free".into(), 2048.0), ("used".into(), 1024.0)]
            );
            let reads = get("probe.reads");
            assert_eq!(
                (reads.kind, reads.monotonic, reads.unit.as_str()),
                ("sum", true, "{read}")
            );
            assert_eq!(
                reads.points.iter().map(|p| p.1).collect::<Vec<_>>(),
                vec![9.0]
            );
            let queue = get("probe.queue");
            assert_eq!((queue.kind, queue.monotonic), ("sum", false));
            assert_eq!(
                memory.resource.get("service.name").map(String::as_str),
                Some("labctl-probe")
            );
        },
    );
}

/// The bundled otel-collector takes OTLP over both protocols, every signal has a pipeline from
/// that receiver, and the endpoints the shipped units and DaemonSet give labctl's agents reach its
/// HTTP receiver (labctl sends `http/protobuf` unless told otherwise).
#[test]
fn bundled_collector_accepts_what_labctl_sends() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = labctl::stack::load(&root.join("stack.toml")).expect("bundled stack");
    let templates = labctl::render::Templates::builtin();
    let desired = labctl::render::render(
        &loaded.stack,
        &templates,
        &labctl::sensitive::Secrets::redacted(),
        None,
    )
    .unwrap();
    let find = |kind: &str, name: &str| {
        desired
            .objects
            .iter()
            .find(|(id, _)| {
                id.kind() == Some(kind) && id.to_string().ends_with(&format!("/{name}"))
            })
            .and_then(|(_, o)| o.content.as_kube().cloned())
            .unwrap_or_else(|| panic!("{kind} {name} renders"))
    };
    let cm = find("ConfigMap", "otel-collector");
    let config: serde_json::Value =
        serde_saphyr::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
    let otlp = &config["receivers"]["otlp"]["protocols"];
    let port = |p: &serde_json::Value| -> u64 {
        p["endpoint"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (grpc_port, http_port) = (port(&otlp["grpc"]), port(&otlp["http"]));
    for signal in ["traces", "metrics", "logs"] {
        let receivers = &config["service"]["pipelines"][signal]["receivers"];
        assert!(
            receivers.as_array().unwrap().iter().any(|r| r == "otlp"),
            "{signal}: {receivers}"
        );
    }
    let svc = find("Service", "otel-collector");
    let ports = svc["spec"]["ports"].as_array().unwrap();
    let by_name = |n: &str| ports.iter().find(|p| p["name"] == n).unwrap().clone();
    assert_eq!(by_name("otlp-grpc")["port"].as_u64(), Some(grpc_port));
    assert_eq!(by_name("otlp-http")["port"].as_u64(), Some(http_port));
    let http_node_port = by_name("otlp-http")["nodePort"].as_u64().unwrap();

    // The host collector unit sends to the HTTP NodePort.
    let unit = desired
        .objects
        .iter()
        .find(|(id, _)| id.to_string() == "unit labctl-collector.service")
        .map(|(_, o)| o.content.text())
        .expect("collector unit renders");
    let endpoint = unit
        .split_whitespace()
        .skip_while(|w| *w != "--otlp-endpoint")
        .nth(1)
        .expect("--otlp-endpoint in ExecStart");
    let endpoint = endpoint.trim_matches(|c| c == '"' || c == '\'');
    assert!(
        endpoint.ends_with(&format!(":{http_node_port}")),
        "{endpoint} is the HTTP NodePort {http_node_port}"
    );
    // The DaemonSet sends to the Service's HTTP port.
    let ds = find("DaemonSet", "collectors");
    let args: Vec<String> = ds["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let at = args.iter().position(|a| a == "--otlp-endpoint").unwrap();
    assert!(
        args[at + 1].starts_with("http://otel-collector")
            && args[at + 1].ends_with(&format!(":{http_port}")),
        "{args:?}"
    );
}
