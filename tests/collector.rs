//! `labctl agent collector`: a fixture proc/sys tree (exact names, units, attributes, values),
//! the machine's own /proc, a tailscaled stand-in on a unix socket speaking the local API's real
//! JSON, the Prometheus endpoint parsed back (and checked by `promtool`), the unit states of a
//! real systemd user manager, the same points received over OTLP by the project's own receiver,
//! and the binary stopped by SIGTERM.

mod common;
#[path = "support/otlp.rs"]
mod otlp;
mod support;

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

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc-sys")
}

fn tailscale_fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/proc-sys-tailscale")
        .join(name);
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

#[tokio::test]
async fn fixture_tree_gives_hostmetrics_names_units_attributes_and_values() {
    let mut c = Collector::new(&fixture_args());
    let points = c.collect().await;
    let tps = rustix::param::clock_ticks_per_second() as f64;

    // Units and kinds, as the hostmetrics receiver's metadata declares them.
    for (name, unit, kind) in [
        ("system.cpu.time", "s", Kind::Counter),
        ("system.cpu.utilization", "1", Kind::Gauge),
        ("system.cpu.load_average.1m", "{thread}", Kind::Gauge),
        ("system.cpu.load_average.5m", "{thread}", Kind::Gauge),
        ("system.cpu.load_average.15m", "{thread}", Kind::Gauge),
        ("system.memory.usage", "By", Kind::UpDownCounter),
        ("system.memory.utilization", "1", Kind::Gauge),
        ("system.paging.usage", "By", Kind::UpDownCounter),
        ("system.filesystem.usage", "By", Kind::UpDownCounter),
        ("system.filesystem.utilization", "1", Kind::Gauge),
        ("system.disk.io", "By", Kind::Counter),
        ("system.disk.operations", "{operations}", Kind::Counter),
        ("system.network.io", "By", Kind::Counter),
        ("system.network.packets", "{packets}", Kind::Counter),
        ("system.network.errors", "{errors}", Kind::Counter),
        ("system.network.dropped", "{packets}", Kind::Counter),
        ("system.uptime", "s", Kind::Gauge),
        ("tailscale.up", "", Kind::Gauge),
    ] {
        let p = one(&points, name);
        assert_eq!((p.unit, p.kind), (unit, kind), "{name}");
    }

    // CPU: per cpu and state, seconds = ticks / USER_HZ.
    let cpu = series(&points, "system.cpu.time");
    assert_eq!(cpu.len(), 16, "{cpu:?}");
    for (key, ticks) in [
        ("cpu=cpu0,state=user", 2000.0),
        ("cpu=cpu0,state=nice", 500.0),
        ("cpu=cpu0,state=system", 1000.0),
        ("cpu=cpu0,state=idle", 6000.0),
        ("cpu=cpu0,state=wait", 250.0),
        ("cpu=cpu0,state=interrupt", 50.0),
        ("cpu=cpu0,state=softirq", 150.0),
        ("cpu=cpu0,state=steal", 50.0),
        ("cpu=cpu1,state=idle", 8000.0),
        ("cpu=cpu1,state=steal", 0.0),
    ] {
        assert!(close(cpu[key], ticks / tps), "{key}: {}", cpu[key]);
    }
    // The first utilization is the share since boot (each cpu's states total 10000 ticks).
    let util = series(&points, "system.cpu.utilization");
    assert!(close(util["cpu=cpu0,state=user"], 0.2));
    assert!(close(util["cpu=cpu1,state=idle"], 0.8));
    let sum: f64 = util
        .iter()
        .filter(|(k, _)| k.starts_with("cpu=cpu0,"))
        .map(|(_, v)| v)
        .sum();
    assert!(close(sum, 1.0), "{sum}");

    assert_eq!(one(&points, "system.cpu.load_average.1m").value, 0.52);
    assert_eq!(one(&points, "system.cpu.load_average.5m").value, 0.34);
    assert_eq!(one(&points, "system.cpu.load_average.15m").value, 0.25);
    assert!(
        one(&points, "system.cpu.load_average.1m")
            .attributes
            .is_empty()
    );

    // Memory: states partition MemTotal.
    let kib = 1024.0;
    let mem = series(&points, "system.memory.usage");
    let want: BTreeMap<String, f64> = [
        ("state=used", 2_400_000.0 * kib),
        ("state=free", 2_000_000.0 * kib),
        ("state=buffered", 100_000.0 * kib),
        ("state=cached", 3_000_000.0 * kib),
        ("state=slab_reclaimable", 400_000.0 * kib),
        ("state=slab_unreclaimable", 100_000.0 * kib),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(mem, want);
    let mu = series(&points, "system.memory.utilization");
    assert!(close(mu["state=used"], 0.3));
    assert!(close(mu["state=free"], 0.25));

    // Paging: per swap device from /proc/swaps, octal escapes undone.
    let paging = series(&points, "system.paging.usage");
    let want: BTreeMap<String, f64> = [
        ("device=/dev/sda2,state=used", 524_288.0 * kib),
        (
            "device=/dev/sda2,state=free",
            (2_097_148.0 - 524_288.0) * kib,
        ),
        ("device=/swap file,state=used", 0.0),
        ("device=/swap file,state=free", 1_048_576.0 * kib),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(paging, want);

    // Filesystems: real ones only, once per mount point.
    let fs = series(&points, "system.filesystem.utilization");
    let mounts: Vec<&str> = fs.keys().map(String::as_str).collect();
    assert_eq!(
        mounts,
        [
            "device=/dev/sda1,mode=rw,mountpoint=/,type=ext4",
            "device=/dev/sda1,mode=rw,mountpoint=/mnt/srv files,type=ext4",
            "device=/dev/sda2,mode=ro,mountpoint=/boot,type=vfat",
            "device=/dev/sda3,mode=rw,mountpoint=/data,type=xfs",
        ]
    );
    let usage = series(&points, "system.filesystem.usage");
    assert_eq!(usage.len(), 12);
    let at = |state: &str| {
        usage[&format!("device=/dev/sda3,mode=rw,mountpoint=/data,type=xfs,state={state}")]
    };
    let (used, free) = (at("used"), at("free"));
    assert!(used > 0.0 && free > 0.0 && at("reserved") >= 0.0);
    let share = fs["device=/dev/sda3,mode=rw,mountpoint=/data,type=xfs"];
    assert!(close(share, used / (used + free)), "{share}");

    // Disks: whole disks with I/O; partitions and idle loops left out. Sectors are 512 bytes.
    let io = series(&points, "system.disk.io");
    let want: BTreeMap<String, f64> = [
        ("device=nvme0n1,direction=read", 400.0 * 512.0),
        ("device=nvme0n1,direction=write", 0.0),
        ("device=sda,direction=read", 80_000.0 * 512.0),
        ("device=sda,direction=write", 160_000.0 * 512.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(io, want);
    let ops = series(&points, "system.disk.operations");
    assert_eq!(ops["device=sda,direction=read"], 1000.0);
    assert_eq!(ops["device=sda,direction=write"], 2000.0);

    // Network: per interface and direction.
    let net = series(&points, "system.network.io");
    assert_eq!(net.len(), 4);
    assert_eq!(net["device=eth0,direction=receive"], 123_456_789.0);
    assert_eq!(net["device=eth0,direction=transmit"], 98_765_432.0);
    assert_eq!(net["device=lo,direction=receive"], 788_295.0);
    let packets = series(&points, "system.network.packets");
    assert_eq!(packets["device=eth0,direction=receive"], 98_765.0);
    assert_eq!(packets["device=eth0,direction=transmit"], 54_321.0);
    let errors = series(&points, "system.network.errors");
    assert_eq!(errors["device=eth0,direction=receive"], 3.0);
    assert_eq!(errors["device=eth0,direction=transmit"], 1.0);
    let dropped = series(&points, "system.network.dropped");
    assert_eq!(dropped["device=eth0,direction=receive"], 7.0);

    assert_eq!(one(&points, "system.uptime").value, 12345.67);

    // No tailscaled socket: down, and nothing else about Tailscale.
    assert_eq!(
        series(&points, "tailscale.up"),
        [(String::new(), 0.0)].into()
    );
    assert!(!points.iter().any(|p| p.name == "tailscale.peers.online"));
    // No `--systemd`: no unit states.
    assert!(!points.iter().any(|p| p.name == "labctl.unit.active"));
}

#[tokio::test]
async fn pseudo_filesystems_only_when_asked() {
    let mut a = fixture_args();
    a.filesystem_type = vec!["tmpfs".into()];
    let points = Collector::new(&a).collect().await;
    let fs = series(&points, "system.filesystem.utilization");
    assert!(fs.contains_key("device=tmpfs,mode=rw,mountpoint=/run,type=tmpfs"));
    assert!(
        !fs.keys()
            .any(|k| k.contains("type=cgroup2") || k.contains("type=overlay"))
    );
}

#[tokio::test]
async fn utilization_is_the_share_since_the_previous_collection() {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    copy_tree(&fixture().join("proc"), &proc);
    let a = args(
        &proc,
        &fixture().join("sys"),
        &fixture().join("root"),
        Path::new("/nonexistent"),
    );
    let mut c = Collector::new(&a);
    c.collect().await;
    // cpu0 spends the next 1000 ticks: 500 user, 250 system, 250 idle.
    let stat = std::fs::read_to_string(proc.join("stat"))
        .unwrap()
        .replace("cpu0 2000 500 1000 6000", "cpu0 2500 500 1250 6250");
    std::fs::write(proc.join("stat"), stat).unwrap();
    let points = c.collect().await;
    let util = series(&points, "system.cpu.utilization");
    assert!(close(util["cpu=cpu0,state=user"], 0.5));
    assert!(close(util["cpu=cpu0,state=system"], 0.25));
    assert!(close(util["cpu=cpu0,state=idle"], 0.25));
    assert!(close(util["cpu=cpu0,state=wait"], 0.0));
    // cpu1 did not move: nothing to share out.
    assert!(close(util["cpu=cpu1,state=idle"], 0.0));
}

#[tokio::test]
async fn a_source_that_fails_leaves_the_others_reported() {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    copy_tree(&fixture().join("proc"), &proc);
    std::fs::write(proc.join("meminfo"), "MemTotal: lots\n").unwrap();
    std::fs::remove_file(proc.join("swaps")).unwrap();
    let a = args(
        &proc,
        &fixture().join("sys"),
        &fixture().join("root"),
        Path::new("/nonexistent"),
    );
    let points = Collector::new(&a).collect().await;
    assert!(!points.iter().any(|p| p.name.starts_with("system.memory")));
    assert!(!points.iter().any(|p| p.name == "system.paging.usage"));
    assert_eq!(series(&points, "system.cpu.time").len(), 16);
    assert_eq!(one(&points, "system.uptime").value, 12345.67);
}

#[tokio::test]
async fn the_machines_own_proc_gives_sane_values() {
    let a = args(
        Path::new("/proc"),
        Path::new("/sys"),
        Path::new("/"),
        Path::new("/nonexistent"),
    );
    let points = Collector::new(&a).collect().await;
    let cpus = std::thread::available_parallelism().unwrap().get();
    let cpu = series(&points, "system.cpu.time");
    assert!(
        cpu.len() >= 8 * cpus,
        "{} cpu series for {cpus} cpus",
        cpu.len()
    );
    assert!(cpu.values().all(|v| *v >= 0.0));
    assert!(cpu.values().any(|v| *v > 0.0));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total: f64 = meminfo
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        * 1024.0;
    let mem: f64 = series(&points, "system.memory.usage").values().sum();
    assert!(
        close(mem / total, 1.0),
        "memory states add to {mem}, MemTotal {total}"
    );
    assert!(one(&points, "system.uptime").value > 0.0);
    assert!(one(&points, "system.cpu.load_average.1m").value >= 0.0);
    let net = series(&points, "system.network.io");
    assert!(net.contains_key("device=lo,direction=receive"), "{net:?}");
    let fs = series(&points, "system.filesystem.utilization");
    assert!(!fs.is_empty(), "no real filesystem measured");
    assert!(fs.values().all(|v| (0.0..=1.0).contains(v)));
    assert!(
        !fs.keys()
            .any(|k| k.contains("type=proc") || k.contains("type=sysfs"))
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
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

#[tokio::test]
async fn tailscale_running_with_peers_and_a_funnel() {
    let t = Tailscaled::start(
        tailscale_fixture("status-running.json"),
        tailscale_fixture("serve-config-funnel.json"),
    );
    let mut out = Vec::new();
    tailscale::collect(&t.socket, &mut out).await.unwrap();
    let by: BTreeMap<&str, (f64, &str)> = out.iter().map(|p| (p.name, (p.value, p.unit))).collect();
    assert_eq!(
        by,
        [
            ("tailscale.up", (1.0, "")),
            ("tailscale.peers.online", (2.0, "{peer}")),
            ("tailscale.funnel.on", (1.0, "")),
        ]
        .into()
    );
}

#[tokio::test]
async fn tailscale_logged_out_is_down() {
    let t = Tailscaled::start(
        tailscale_fixture("status-needs-login.json"),
        tailscale_fixture("serve-config-empty.json"),
    );
    let mut out = Vec::new();
    tailscale::collect(&t.socket, &mut out).await.unwrap();
    let by: BTreeMap<&str, f64> = out.iter().map(|p| (p.name, p.value)).collect();
    assert_eq!(
        by,
        [
            ("tailscale.up", 0.0),
            ("tailscale.peers.online", 0.0),
            ("tailscale.funnel.on", 0.0),
        ]
        .into()
    );
}

#[tokio::test]
async fn tailscale_answering_nonsense_is_down_and_named() {
    let t = Tailscaled::start("<html>oops</html>".into(), "{}".into());
    let mut out = Vec::new();
    let e = tailscale::collect(&t.socket, &mut out).await.unwrap_err().0;
    assert!(
        e.contains("/localapi/v0/status") && e.contains("not what tailscaled sends"),
        "{e}"
    );
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].name, out[0].value), ("tailscale.up", 0.0));
}

/// The agent as a process, with its stderr collected.
struct Agent {
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Agent {
    fn spawn(args: &[&str], env: &[(&'static str, std::ffi::OsString)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_labctl"))
            .args(["agent", "collector"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("LABCTL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start labctl agent collector");
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
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
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

/// `GET path` over HTTP/1.0: (status code, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
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
    common::assert_huge_pages_allowed_here();
    assert_eq!(common::huge_pages_enabled(agent.child.id()), Some(false));
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
    let out = Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(["agent", "collector", "--interval", "1s", "--proc-path"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a proc file system"), "{err}");
}

#[test]
fn unit_states_come_from_a_real_user_manager() {
    let m = support::systemd::UserManager::start();
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

#[test]
fn prometheus_names_follow_the_opentelemetry_rules() {
    let p = |name, unit, kind| Point::new(name, unit, "", kind, 0.0);
    for (point, want) in [
        (
            p("system.cpu.time", "s", Kind::Counter),
            "system_cpu_time_seconds_total",
        ),
        (
            p("system.memory.usage", "By", Kind::UpDownCounter),
            "system_memory_usage_bytes",
        ),
        (
            p("system.cpu.utilization", "1", Kind::Gauge),
            "system_cpu_utilization_ratio",
        ),
        (
            p("system.disk.operations", "{operations}", Kind::Counter),
            "system_disk_operations_total",
        ),
        (
            p("system.cpu.load_average.1m", "{thread}", Kind::Gauge),
            "system_cpu_load_average_1m",
        ),
        (p("tailscale.up", "", Kind::Gauge), "tailscale_up"),
    ] {
        assert_eq!(metric_name(&point), want);
    }
}

#[test]
fn prometheus_label_values_and_help_are_escaped() {
    let snap = Snapshot {
        resource: vec![
            ("host.name".into(), "n1".into()),
            ("service.name".into(), "s".into()),
        ],
        points: vec![
            Point::new("x", "1", "a\nb", Kind::Counter, 2.5).with("mountpoint", "/a \"b\"\\"),
        ],
    };
    assert_eq!(
        render(&snap),
        "# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info{host_name=\"n1\",job=\"s\"} 1\n\
         # HELP x_total a\\nb\n# TYPE x_total counter\nx_total{host_name=\"n1\",job=\"s\",mountpoint=\"/a \\\"b\\\"\\\\\",service_name=\"s\"} 2.5\n"
    );
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
