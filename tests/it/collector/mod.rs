//! `labctl agent collector`: a fixture proc/sys tree (exact names, units, attributes, values),
//! the machine's own /proc, a tailscaled stand-in on a unix socket speaking the local API's real
//! JSON, the Prometheus endpoint parsed back (and checked by `promtool`), the unit states of a
//! real systemd user manager, the same points received over OTLP by the project's own receiver,
//! and the binary stopped by SIGTERM.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use labctl::agent::collector::prometheus::{Snapshot, metric_name, render};
use labctl::agent::collector::{Collector, tailscale};
use labctl::cli::CollectorArgs;
use labctl::metric::{Kind, Point};

use crate::support::systemd::UserManager;
use crate::support::tailscaled::Tailscaled;
use crate::support::{
    Labctl, assert_huge_pages_allowed_here, http_get, huge_pages_enabled, otlp, repo, signal,
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
