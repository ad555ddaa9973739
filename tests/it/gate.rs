//! `labctl agent gate`, the real binary, against the real proxy and the project's stand-in
//! `tailscale` (tests/fixtures/tailscale: records its argument lists, answers
//! `funnel status --json` as tailscale's `ipn.ServeConfig`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::agents::{ProxyCmd, checkout, proxy_stack};
use crate::support::{Labctl, otlp, repo, signal, wait_for};

const INTERVAL_MS: u64 = 300;
const FAILURES: u64 = 2;

struct Gate {
    child: Child,
    state: PathBuf,
}

impl Gate {
    fn start(state: &Path, proxy_port: u16) -> Gate {
        let child = gate(state)
            .args(["--interval", &format!("{INTERVAL_MS}ms")])
            .args(["--failures", &FAILURES.to_string()])
            .args(["--successes", "2", "--health-url"])
            .arg(format!("http://127.0.0.1:{proxy_port}/healthz"))
            .arg("--funnel")
            .arg(format!("8443:{proxy_port}"))
            .spawn();
        Gate {
            child,
            state: state.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.join("gate.log")).unwrap_or_default()
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.state.join("calls")).unwrap_or_default()
    }

    fn funnel(&self) -> Option<String> {
        std::fs::read_to_string(self.state.join("funnel-8443"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    #[track_caller]
    fn wait(&self, what: &str, f: impl Fn(&Gate) -> bool) {
        wait_for(
            format_args!("{what}\n{self}"),
            Duration::from_secs(20),
            || f(self),
        );
    }

    /// Entries the gate must never touch: a tailnet-only serve on 443 and someone's funnel on
    /// 10000.
    fn seed_others(state: &Path) {
        std::fs::write(state.join("serve-443"), "http://127.0.0.1:3000\n").unwrap();
        std::fs::write(state.join("funnel-10000"), "http://127.0.0.1:9999\n").unwrap();
    }

    #[track_caller]
    fn others_untouched(&self) {
        let calls = self.calls();
        assert!(
            !calls.contains("--https=443") && !calls.contains("--https=10000"),
            "{calls}"
        );
        assert!(self.state.join("serve-443").exists());
        assert!(self.state.join("funnel-10000").exists());
    }
}

/// Its log and the stand-in's calls, as they are when shown.
impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "--- gate log\n{}\n--- calls\n{}",
            self.log(),
            self.calls()
        )
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `labctl agent gate` against the stand-in `tailscale` keeping its state in `state`, logging to
/// `state/gate.log`.
fn gate(state: &Path) -> Labctl {
    Labctl::new()
        .args(["agent", "gate", "--tailscale-bin"])
        .arg(repo().join("tests/fixtures/tailscale"))
        .env("TAILSCALE_STANDIN", state)
        .log_to(state.join("gate.log"))
}

fn proxy(dir: &Path) -> ProxyCmd {
    let repo = checkout(dir, &proxy_stack(""));
    ProxyCmd::new(&repo)
}

#[test]
fn funnel_follows_the_proxy_health_and_goes_off_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tailscale");
    std::fs::create_dir_all(&state).unwrap();
    Gate::seed_others(&state);
    let cmd = proxy(dir.path());
    let p = cmd.start();
    let target = format!("http://127.0.0.1:{}", cmd.port);

    let mut gate = Gate::start(&state, cmd.port);
    gate.wait("the funnel to go on", |g| {
        g.funnel().as_deref() == Some(&target)
    });
    assert!(
        gate.calls()
            .contains(&format!("funnel --bg --https=8443 {target}")),
        "{}",
        gate.calls()
    );

    // The proxy dies: off within interval × failures (plus the probe in flight, and slack for a
    // shared machine's scheduling).
    let killed = Instant::now();
    p.signal("KILL");
    gate.wait("the funnel to go off", |g| g.funnel().is_none());
    let took = killed.elapsed();
    let bound = Duration::from_millis(INTERVAL_MS * (FAILURES + 1)) + Duration::from_secs(2);
    assert!(took <= bound, "off after {took:?}, more than {bound:?}");
    assert!(gate.calls().contains("funnel --https=8443 off"));
    drop(p);

    // Back on once healthy again; off on SIGTERM, and the gate exits cleanly.
    let p = cmd.start();
    gate.wait("the funnel to go back on", |g| {
        g.funnel().as_deref() == Some(&target)
    });
    signal(gate.child.id(), "TERM");
    let status = gate.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", gate.log());
    assert_eq!(gate.funnel(), None, "{}", gate.calls());
    gate.others_untouched();
    drop(p);
}

#[test]
fn unreadable_status_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tailscale");
    std::fs::create_dir_all(&state).unwrap();
    Gate::seed_others(&state);
    let cmd = proxy(dir.path());
    let _p = cmd.start();

    let gate = Gate::start(&state, cmd.port);
    gate.wait("the funnel to go on", |g| g.funnel().is_some());
    // A status that is not tailscale's JSON: the funnel goes off though the proxy is healthy.
    std::fs::write(state.join("broken"), "").unwrap();
    gate.wait("the funnel to go off", |g| g.funnel().is_none());
    gate.wait("the reason in the log", |g| {
        g.log()
            .contains("cannot parse `tailscale funnel status --json`")
    });
    // It stays off while the status cannot be read.
    let on_calls = |g: &Gate| g.calls().matches("funnel --bg").count();
    let before = on_calls(&gate);
    std::thread::sleep(Duration::from_millis(INTERVAL_MS * 3));
    assert_eq!(on_calls(&gate), before, "{}", gate.calls());
    assert!(gate.funnel().is_none());
    // Readable again: back on.
    std::fs::remove_file(state.join("broken")).unwrap();
    gate.wait("the funnel to go back on", |g| g.funnel().is_some());
    gate.others_untouched();
}

#[test]
fn without_a_health_url_the_funnel_stays_off() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tailscale");
    std::fs::create_dir_all(&state).unwrap();
    // Someone turned our port on by hand: the gate, knowing no health, turns it off.
    std::fs::write(state.join("funnel-8443"), "http://127.0.0.1:8085\n").unwrap();
    let mut child = gate(&state)
        .args(["--interval", "200ms", "--failures", "1"])
        .args(["--funnel", "8443:8085"])
        .spawn();
    wait_for("the funnel to go off", Duration::from_secs(20), || {
        !state.join("funnel-8443").exists()
    });
    let _ = child.kill();
    let _ = child.wait();
    let calls = std::fs::read_to_string(state.join("calls")).unwrap();
    assert!(!calls.contains("--bg"), "{calls}");
}

#[test]
fn a_port_funnel_cannot_serve_is_refused() {
    let (code, _, err) = Labctl::new()
        .args(["agent", "gate", "--interval", "1s", "--failures", "1"])
        .args(["--funnel", "8080:8085"])
        .run()
        .parts();
    assert_eq!(code, 1);
    assert!(
        err.contains("only serves ports 443, 8443 and 10000"),
        "{err}"
    );
}

/// A health endpoint for the OTLP test: `200 ok` while `healthy`, else `503`.
fn health_server(healthy: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let status = if healthy.load(std::sync::atomic::Ordering::SeqCst) {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    port
}

/// The gate's metrics, as docs/agents.md names them, reach an OTLP collector (the project's
/// receiver, over HTTP/protobuf) and follow the funnel: on (1) while healthy, off (0) when not,
/// each change counted.
#[test]
fn funnel_metrics_reach_an_otlp_collector() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tailscale");
    std::fs::create_dir_all(&state).unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let port = health_server(healthy.clone());
    let rx = otlp::Receiver::start();
    let mut child = gate(&state)
        .args(["--interval", "200ms", "--failures", "1"])
        .args(["--successes", "1", "--health-url"])
        .arg(format!("http://127.0.0.1:{port}/healthz"))
        .args(["--funnel", &format!("8443:{port}")])
        .args(["--otlp-endpoint", &rx.http_endpoint()])
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .spawn();
    // The latest export's value of a metric, once it is `want`.
    let wait_value = |name: &str, want: f64| {
        let metrics = rx.wait_for_metrics(Duration::from_secs(20), |m| {
            m.iter()
                .rev()
                .find(|m| m.name == name)
                .is_some_and(|m| m.points.len() == 1 && m.points[0].1 == want)
        });
        metrics.into_iter().rev().find(|m| m.name == name).unwrap()
    };
    let enabled = wait_value("labctl.gate.funnel.enabled", 1.0);
    assert_eq!((enabled.kind, enabled.unit.as_str()), ("gauge", "1"));
    assert!(enabled.points[0].0.is_empty(), "{enabled:#?}");
    assert_eq!(enabled.resource["service.name"], "labctl-gate");
    assert_eq!(enabled.via, "http");
    let transitions = wait_value("labctl.gate.funnel.transitions", 1.0);
    assert_eq!(
        (
            transitions.kind,
            transitions.monotonic,
            transitions.unit.as_str()
        ),
        ("sum", true, "{transition}")
    );
    assert!(state.join("funnel-8443").exists());

    // Unhealthy: off, and a second transition.
    healthy.store(false, Ordering::SeqCst);
    wait_value("labctl.gate.funnel.enabled", 0.0);
    wait_value("labctl.gate.funnel.transitions", 2.0);
    assert!(!state.join("funnel-8443").exists());
    signal(child.id(), "TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
