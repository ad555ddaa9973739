//! `labctl agent collector`: a fixture proc/sys tree (exact names, units, attributes, values),
//! the machine's own /proc, a tailscaled stand-in on a unix socket speaking the local API's real
//! JSON, the Prometheus endpoint parsed back (and checked by `promtool`), the unit states of a
//! real systemd user manager, the same points received over OTLP by the project's own receiver,
//! and the binary stopped by SIGTERM.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use labctl::agent::collector::prometheus::{Snapshot, metric_name, render};
use labctl::agent::collector::{Collector, tailscale};
use labctl::cli::CollectorArgs;
use labctl::metric::{Kind, Point};

use crate::support::systemd::UserManager;
use crate::support::{
    Labctl, assert_huge_pages_allowed_here, huge_pages_enabled, otlp, repo, signal,
};

mod binary;
mod prometheus;
mod sources;
mod tailscaled;

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/proc-sys")
}

fn tailscale_fixture(name: &str) -> String {
    let p = repo().join("tests/fixtures/proc-sys-tailscale").join(name);
    std::fs::read_to_string(p).unwrap()
}

fn args(proc: &Path, sys: &Path, root: &Path, socket: &Path) -> CollectorArgs {
    CollectorArgs {
        interval: Duration::from_secs(15),
        proc_path: proc.into(),
        sys_path: sys.into(),
        tailscale_socket: socket.into(),
        node_name: Some("node1".into()),
        root_path: root.into(),
        filesystem_type: Vec::new(),
        systemd: None,
        stack_name: None,
        unit_dir: None,
        listen: None,
    }
}

fn fixture_args() -> CollectorArgs {
    let f = fixture();
    args(
        &f.join("proc"),
        &f.join("sys"),
        &f.join("root"),
        Path::new("/nonexistent/tailscaled.sock"),
    )
}

/// Points named `name`, by their attributes rendered as `k=v,k=v`.
fn series(points: &[Point], name: &str) -> BTreeMap<String, f64> {
    points
        .iter()
        .filter(|p| p.name == name)
        .map(|p| {
            let key = p
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            (key, p.value)
        })
        .collect()
}

fn one<'a>(points: &'a [Point], name: &str) -> &'a Point {
    let found: Vec<&Point> = points.iter().filter(|p| p.name == name).collect();
    assert!(!found.is_empty(), "no `{name}` point");
    found[0]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// tailscaled's local API on a unix socket: `status` and `serve-config` answer the given JSON,
/// anything else 404, as the daemon does. Checks the Host header the CLI sends.
struct Tailscaled {
    socket: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Tailscaled {
    fn start(status: String, serve_config: String) -> Self {
        use http_body_util::Full;
        use hyper::body::Bytes;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tailscaled.sock");
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let path = socket.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).unwrap();
                ready_tx.send(()).unwrap();
                loop {
                    if stopped.try_recv().is_ok() {
                        return;
                    }
                    let Ok(Ok((stream, _))) =
                        tokio::time::timeout(Duration::from_millis(50), listener.accept()).await
                    else {
                        continue;
                    };
                    let (status, serve) = (status.clone(), serve_config.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                            let (status, serve) = (status.clone(), serve.clone());
                            async move {
                                let host_ok = req
                                    .headers()
                                    .get("host")
                                    .is_some_and(|h| h == "local-tailscaled.sock");
                                let (code, body) = match (host_ok, req.uri().path()) {
                                    (false, _) => (403, "invalid host\n".to_string()),
                                    (true, "/localapi/v0/status") => (200, status),
                                    (true, "/localapi/v0/serve-config") => (200, serve),
                                    _ => (404, "404 page not found\n".to_string()),
                                };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(code)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(body)))
                                        .unwrap(),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        ready.recv_timeout(Duration::from_secs(5)).unwrap();
        Tailscaled {
            socket,
            _dir: dir,
            stop: Some(stop),
        }
    }
}

impl Drop for Tailscaled {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
