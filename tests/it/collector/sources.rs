//! Collections in this process: the fixture proc/sys tree (exact names, units, attributes, values),
//! utilization between collections, a failing source, and the machine's own /proc.

use super::*;

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
