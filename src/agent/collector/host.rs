//! The host's CPU, memory, paging, filesystems, disks, network and uptime, read from a proc and a
//! sys tree (the node's, mounted anywhere) and named as the OpenTelemetry Collector's
//! `hostmetrics` receiver names them.
//!
//! `procfs-core` parses every proc file it knows from any path; only `/proc/swaps`, which it does
//! not parse, is read here (five columns).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use procfs_core::net::InterfaceDeviceStatus;
use procfs_core::process::MountInfos;
use procfs_core::{
    CpuTime, DiskStats, ExplicitSystemInfo, FromRead, FromReadSI, KernelStats, LoadAverage,
    Meminfo, Uptime,
};

use crate::metric::{Kind, Point};

/// Filesystem types that hold no data of the host's own: kernel interfaces, memory-backed and
/// container-image file systems. Reported only when named in `--filesystem-type`.
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.lxcfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// `/proc/diskstats` counts 512-byte sectors whatever the device's block size.
const SECTOR: f64 = 512.0;

/// Reads one host's statistics; keeps the previous CPU times for `system.cpu.utilization`.
pub struct Host {
    proc: PathBuf,
    sys: PathBuf,
    root: PathBuf,
    fs_types: Vec<String>,
    info: ExplicitSystemInfo,
    /// CPU times at the previous collection (all zero before the first: the first utilization is
    /// the average since boot).
    prev_cpu: Vec<CpuTime>,
}

/// What one collection could not read: the source and why. The rest is still reported.
pub type Problems = Vec<(&'static str, String)>;

impl Host {
    /// A reader of `proc` and `sys`; filesystems are measured at `root` + their mount point (the
    /// host's `/` mounted into a container). `fs_types` are pseudo filesystem types to report too.
    pub fn new(proc: &Path, sys: &Path, root: &Path, fs_types: &[String]) -> Self {
        Host {
            proc: proc.to_path_buf(),
            sys: sys.to_path_buf(),
            root: root.to_path_buf(),
            fs_types: fs_types.to_vec(),
            info: ExplicitSystemInfo {
                boot_time_secs: 0,
                ticks_per_second: rustix::param::clock_ticks_per_second(),
                page_size: rustix::param::page_size() as u64,
                is_little_endian: cfg!(target_endian = "little"),
            },
            prev_cpu: Vec::new(),
        }
    }

    /// Measure everything once into `out`; what cannot be read goes to the returned problems.
    pub fn collect(&mut self, out: &mut Vec<Point>) -> Problems {
        let mut problems = Problems::new();
        let mut note = |what: &'static str, r: Result<(), String>| {
            if let Err(e) = r {
                problems.push((what, e));
            }
        };
        note("cpu", self.cpu(out));
        note("load", self.load(out));
        note("memory", self.memory(out));
        note("paging", self.paging(out));
        note("filesystem", self.filesystems(out));
        note("disk", self.disks(out));
        note("network", self.network(out));
        note("uptime", self.uptime(out));
        problems
    }

    fn cpu(&mut self, out: &mut Vec<Point>) -> Result<(), String> {
        let path = self.proc.join("stat");
        let stats = KernelStats::from_file(&path, &self.info).map_err(|e| e.to_string())?;
        let tps = self.info.ticks_per_second as f64;
        for (i, now) in stats.cpu_time.iter().enumerate() {
            let cpu = format!("cpu{i}");
            let states = cpu_states(now);
            let before = self.prev_cpu.get(i).map(cpu_states);
            let total: u64 = states.iter().map(|(_, t)| t).sum();
            let total_before: u64 = before.iter().flatten().map(|(_, t)| t).sum();
            let elapsed = total.saturating_sub(total_before);
            for (j, (state, ticks)) in states.iter().enumerate() {
                out.push(
                    Point::new(
                        "system.cpu.time",
                        "s",
                        "Total seconds each logical CPU spent on each mode.",
                        Kind::Counter,
                        *ticks as f64 / tps,
                    )
                    .with("cpu", &cpu)
                    .with("state", *state),
                );
                let was = before.as_ref().map_or(0, |b| b[j].1);
                let share = if elapsed == 0 {
                    0.0
                } else {
                    ticks.saturating_sub(was) as f64 / elapsed as f64
                };
                out.push(
                    Point::new(
                        "system.cpu.utilization",
                        "1",
                        "Difference in system.cpu.time since the last measurement, divided by the elapsed time and number of logical CPUs.",
                        Kind::Gauge,
                        share,
                    )
                    .with("cpu", &cpu)
                    .with("state", *state),
                );
            }
        }
        self.prev_cpu = stats.cpu_time;
        Ok(())
    }

    fn load(&self, out: &mut Vec<Point>) -> Result<(), String> {
        let l = LoadAverage::from_file(self.proc.join("loadavg")).map_err(|e| e.to_string())?;
        for (name, description, v) in [
            (
                "system.cpu.load_average.1m",
                "Average CPU Load over 1 minute.",
                l.one,
            ),
            (
                "system.cpu.load_average.5m",
                "Average CPU Load over 5 minutes.",
                l.five,
            ),
            (
                "system.cpu.load_average.15m",
                "Average CPU Load over 15 minutes.",
                l.fifteen,
            ),
        ] {
            // Through the decimal text: f32 → f64 would print 0.07 as 0.07000000029802322.
            let v: f64 = v.to_string().parse().unwrap_or(f64::from(v));
            out.push(Point::new(name, "{thread}", description, Kind::Gauge, v));
        }
        Ok(())
    }

    /// States that add up to `MemTotal`: `used` is what is left after free memory, buffers, the
    /// page cache and the slab.
    fn memory(&self, out: &mut Vec<Point>) -> Result<(), String> {
        let path = self.proc.join("meminfo");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // procfs-core 0.18 multiplies each value by its unit unchecked (fixed upstream in
        // eminence/procfs#369, not released yet), and kernels have printed a SwapFree near 2^64:
        // such a line is left out rather than overflowing (found by fuzzing).
        let sane: String = text
            .lines()
            .filter(|l| !meminfo_overflows(l))
            .flat_map(|l| [l, "\n"])
            .collect();
        let m = Meminfo::from_read(sane.as_bytes()).map_err(|e| e.to_string())?;
        let reclaimable = m.s_reclaimable.unwrap_or(0);
        let unreclaimable = m.s_unreclaim.unwrap_or(0);
        let used = m
            .mem_total
            .saturating_sub(m.mem_free)
            .saturating_sub(m.buffers)
            .saturating_sub(m.cached)
            .saturating_sub(reclaimable)
            .saturating_sub(unreclaimable);
        let total = m.mem_total as f64;
        for (state, bytes) in [
            ("used", used),
            ("free", m.mem_free),
            ("buffered", m.buffers),
            ("cached", m.cached),
            ("slab_reclaimable", reclaimable),
            ("slab_unreclaimable", unreclaimable),
        ] {
            out.push(
                Point::new(
                    "system.memory.usage",
                    "By",
                    "Reports memory in use by state.",
                    Kind::UpDownCounter,
                    bytes as f64,
                )
                .with("state", state),
            );
            let share = if total > 0.0 {
                bytes as f64 / total
            } else {
                0.0
            };
            out.push(
                Point::new(
                    "system.memory.utilization",
                    "1",
                    "Percentage of memory bytes in use.",
                    Kind::Gauge,
                    share,
                )
                .with("state", state),
            );
        }
        Ok(())
    }

    /// Per swap device, from `/proc/swaps` (`Filename Type Size Used Priority`, sizes in KiB).
    fn paging(&self, out: &mut Vec<Point>) -> Result<(), String> {
        let path = self.proc.join("swaps");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [device, _kind, size, used, ..] = f[..] else {
                return Err(format!("{} line {}: not 5 columns", path.display(), n + 1));
            };
            let kib = |s: &str| {
                s.parse::<u64>()
                    .map(|k| k * 1024)
                    .map_err(|_| format!("{} line {}: `{s}` is not a size", path.display(), n + 1))
            };
            let (size, used) = (kib(size)?, kib(used)?);
            // The kernel escapes white space in names as octal (`\040`).
            let device = unescape_octal(device);
            for (state, bytes) in [("used", used), ("free", size.saturating_sub(used))] {
                out.push(
                    Point::new(
                        "system.paging.usage",
                        "By",
                        "Swap (unix) or pagefile (windows) usage.",
                        Kind::UpDownCounter,
                        bytes as f64,
                    )
                    .with("device", &device)
                    .with("state", state),
                );
            }
        }
        Ok(())
    }

    /// Real filesystems of the host's mount table (PID 1's, so a container sees the node's), once
    /// per mount point, measured with statvfs under `root`.
    fn filesystems(&self, out: &mut Vec<Point>) -> Result<(), String> {
        let host = self.proc.join("1/mountinfo");
        let mounts = MountInfos::from_file(&host)
            .or_else(|_| MountInfos::from_file(self.proc.join("self/mountinfo")))
            .map_err(|e| e.to_string())?;
        let mut seen = HashSet::new();
        let mut failures = Vec::new();
        for m in mounts.iter() {
            if PSEUDO_FS.contains(&m.fs_type.as_str()) && !self.fs_types.contains(&m.fs_type) {
                continue;
            }
            // The kernel escapes white space in paths as octal (`\040`).
            let mountpoint = unescape_octal(&m.mount_point.to_string_lossy());
            if !seen.insert(mountpoint.clone()) {
                continue;
            }
            let rel = mountpoint.trim_start_matches('/');
            let at = self.root.join(rel);
            let st = match rustix::fs::statvfs(&at) {
                Ok(st) => st,
                Err(e) => {
                    failures.push(format!("statvfs `{}`: {e}", at.display()));
                    continue;
                }
            };
            let block = st.f_frsize;
            let used = st.f_blocks.saturating_sub(st.f_bfree) * block;
            let free = st.f_bavail * block;
            let reserved = st.f_bfree.saturating_sub(st.f_bavail) * block;
            let mode = if m.mount_options.contains_key("ro") {
                "ro"
            } else {
                "rw"
            };
            let device = m
                .mount_source
                .as_deref()
                .map_or_else(|| "none".into(), unescape_octal);
            let attrs = |p: Point| {
                p.with("device", &device)
                    .with("mode", mode)
                    .with("mountpoint", &mountpoint)
                    .with("type", &m.fs_type)
            };
            for (state, bytes) in [("used", used), ("free", free), ("reserved", reserved)] {
                out.push(
                    attrs(Point::new(
                        "system.filesystem.usage",
                        "By",
                        "Filesystem bytes used.",
                        Kind::UpDownCounter,
                        bytes as f64,
                    ))
                    .with("state", state),
                );
            }
            // As `df`: reserved blocks count as neither used nor available.
            let share = if used + free > 0 {
                used as f64 / (used + free) as f64
            } else {
                0.0
            };
            out.push(attrs(Point::new(
                "system.filesystem.utilization",
                "1",
                "Fraction of filesystem bytes used.",
                Kind::Gauge,
                share,
            )));
        }
        match failures.is_empty() {
            true => Ok(()),
            false => Err(failures.join("; ")),
        }
    }

    /// Whole disks (those in `sys/block`; partitions are not) that did any I/O since boot.
    fn disks(&self, out: &mut Vec<Point>) -> Result<(), String> {
        let stats = DiskStats::from_file(self.proc.join("diskstats")).map_err(|e| e.to_string())?;
        let block = self.sys.join("block");
        let whole: Option<HashSet<String>> = std::fs::read_dir(&block).ok().map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        });
        for d in stats.0 {
            if whole.as_ref().is_some_and(|w| !w.contains(&d.name)) {
                continue;
            }
            if d.reads == 0 && d.writes == 0 {
                continue;
            }
            for (direction, bytes, ops) in [
                ("read", d.sectors_read, d.reads),
                ("write", d.sectors_written, d.writes),
            ] {
                out.push(
                    Point::new(
                        "system.disk.io",
                        "By",
                        "Disk bytes transferred.",
                        Kind::Counter,
                        bytes as f64 * SECTOR,
                    )
                    .with("device", &d.name)
                    .with("direction", direction),
                );
                out.push(
                    Point::new(
                        "system.disk.operations",
                        "{operations}",
                        "Disk operations count.",
                        Kind::Counter,
                        ops as f64,
                    )
                    .with("device", &d.name)
                    .with("direction", direction),
                );
            }
        }
        Ok(())
    }

    fn network(&self, out: &mut Vec<Point>) -> Result<(), String> {
        let devs = InterfaceDeviceStatus::from_file(self.proc.join("net/dev"))
            .map_err(|e| e.to_string())?;
        let mut devs: Vec<_> = devs.0.into_values().collect();
        devs.sort_by(|a, b| a.name.cmp(&b.name));
        for d in devs {
            for (direction, bytes, packets, errors, dropped) in [
                (
                    "receive",
                    d.recv_bytes,
                    d.recv_packets,
                    d.recv_errs,
                    d.recv_drop,
                ),
                (
                    "transmit",
                    d.sent_bytes,
                    d.sent_packets,
                    d.sent_errs,
                    d.sent_drop,
                ),
            ] {
                for (name, unit, description, v) in [
                    (
                        "system.network.io",
                        "By",
                        "The number of bytes transmitted and received.",
                        bytes,
                    ),
                    (
                        "system.network.packets",
                        "{packets}",
                        "The number of packets transferred.",
                        packets,
                    ),
                    (
                        "system.network.errors",
                        "{errors}",
                        "The number of errors encountered.",
                        errors,
                    ),
                    (
                        "system.network.dropped",
                        "{packets}",
                        "The number of packets dropped.",
                        dropped,
                    ),
                ] {
                    out.push(
                        Point::new(name, unit, description, Kind::Counter, v as f64)
                            .with("device", &d.name)
                            .with("direction", direction),
                    );
                }
            }
        }
        Ok(())
    }

    fn uptime(&self, out: &mut Vec<Point>) -> Result<(), String> {
        let u = Uptime::from_file(self.proc.join("uptime")).map_err(|e| e.to_string())?;
        out.push(Point::new(
            "system.uptime",
            "s",
            "The time the system has been running.",
            Kind::Gauge,
            u.uptime,
        ));
        Ok(())
    }
}

/// The `hostmetrics` states of one CPU, in ticks.
fn cpu_states(t: &CpuTime) -> [(&'static str, u64); 8] {
    [
        ("user", t.user),
        ("nice", t.nice),
        ("system", t.system),
        ("idle", t.idle),
        ("wait", t.iowait.unwrap_or(0)),
        ("interrupt", t.irq.unwrap_or(0)),
        ("softirq", t.softirq.unwrap_or(0)),
        ("steal", t.steal.unwrap_or(0)),
    ]
}

/// Whether a `/proc/meminfo` line holds a value that its unit would take past `u64`.
fn meminfo_overflows(line: &str) -> bool {
    let mut words = line.split_whitespace().skip(1);
    let Some(Ok(value)) = words.next().map(str::parse::<u64>) else {
        return false;
    };
    let factor: u64 = match words.next().and_then(|u| u.chars().next()) {
        Some('k' | 'K') => 1 << 10,
        Some('m' | 'M') => 1 << 20,
        Some('g' | 'G') => 1 << 30,
        _ => 1,
    };
    value.checked_mul(factor).is_none()
}

/// `\NNN` octal escapes, as the kernel writes white space in paths.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = (b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)))
        .then(|| {
            b[i + 1..i + 4]
                .iter()
                .fold(0u32, |n, c| n * 8 + u32::from(c - b'0'))
        });
        // `\400` and above name no byte (found by fuzzing): kept as written.
        if let Some(Ok(byte)) = code.map(u8::try_from) {
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
