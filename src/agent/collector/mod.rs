//! `labctl agent collector`: every `--interval`, the host's CPU, memory, paging, filesystems,
//! disks, network and uptime ([`host`]), Tailscale's state ([`tailscale`]) and, with `--systemd`,
//! the state of labctl's units, recorded for OTLP export and optionally served as Prometheus text
//! ([`prometheus`]).
//!
//! Nothing the collector reads is fatal after start: a source that fails is logged (once per new
//! cause) and left out of that collection, and the rest is still reported. Recording never
//! blocks: the exporter's queue is bounded and counts what it drops.

pub mod host;
pub mod prometheus;
pub mod tailscale;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use super::runtime::Shutdown;
use crate::backend::systemd::{Systemd, Target};
use crate::cli::{CollectorArgs, UnitsScope};
use crate::error::Error;
use crate::metric::{Kind, Point};
use crate::stack::Scope;

/// The collector's `service.name`.
pub const SERVICE_NAME: &str = "labctl-collector";

fn fail(message: String) -> Error {
    Error::Agent {
        agent: "collector",
        message,
    }
}

/// The resource the points describe: `host.name` (the node name when given) and `service.name`.
pub fn resource(config: &CollectorArgs) -> Vec<(&'static str, String)> {
    let host = config.node_name.clone().unwrap_or_else(|| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    });
    vec![("host.name", host), ("service.name", SERVICE_NAME.into())]
}

/// Make glibc's allocator lean for the collector; call before any thread starts.
///
/// Rust's heap is mimalloc's (see `main.rs`), but glibc still allocates for itself (name
/// lookups, `dlopen`), and gives each thread that does so under contention an arena of its own,
/// up to eight per core, and keeps them. One arena for those few allocations costs the collector
/// nothing and keeps them in one place.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's settings; it is called before other threads
    // exist, as glibc's manual asks.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Unmap the binary's read-only pages, once the agent runs: returns the KiB unmapped.
///
/// The kernel maps a binary's code and constants in windows of up to 64 KiB around each page
/// touched, and labctl is one binary for every command: starting the collector (parsing the
/// command line, setting up logs and the exporter, connecting) touches code all over it, which
/// the collection loop never runs again, yet it stays mapped and counted in the agent's resident
/// memory. Dropping those mappings (`MADV_DONTNEED`) after the first collection leaves mapped only
/// what the loop touches again; the pages stay in the page cache, shared, and any page needed
/// later is mapped back on its first use (a minor fault, no I/O).
///
/// Only mappings of the binary's own file that are private, not writable and hold no page of
/// their own (`Anonymous: 0 kB`: nothing relocated or copied on write) are dropped, so nothing is
/// lost: what comes back is the file's bytes, which is what was there.
pub fn release_start_up_pages() -> u64 {
    let (Ok(exe), Ok(smaps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/smaps"),
    ) else {
        return 0;
    };
    let exe = exe.to_string_lossy();
    let mut released = 0;
    for range in releasable(&smaps, &exe) {
        // SAFETY: the range is a whole mapping of the binary's file, private, read-only and
        // without anonymous pages: MADV_DONTNEED only drops its page-table entries, and every
        // later access maps the same file bytes again. No Rust reference is invalidated.
        let done = unsafe {
            libc::madvise(
                range.start as *mut libc::c_void,
                range.end - range.start,
                libc::MADV_DONTNEED,
            )
        };
        if done == 0 {
            released += (range.end - range.start) as u64 / 1024;
        }
    }
    released
}

/// The mappings of `exe` in `smaps` text that are private, not writable and without anonymous
/// pages. Unreadable text gives none.
fn releasable(smaps: &str, exe: &str) -> Vec<std::ops::Range<usize>> {
    use procfs_core::FromBufRead;
    use procfs_core::process::{MMPermissions, MMapPath, MemoryMaps};
    let Ok(maps) = MemoryMaps::from_buf_read(smaps.as_bytes()) else {
        return Vec::new();
    };
    maps.into_iter()
        .filter(|m| matches!(&m.pathname, MMapPath::Path(p) if p.as_os_str() == exe))
        .filter(|m| {
            m.perms.contains(MMPermissions::PRIVATE) && !m.perms.contains(MMPermissions::WRITE)
        })
        .filter(|m| m.extension.map.get("Anonymous") == Some(&0))
        .filter_map(|m| {
            Some(usize::try_from(m.address.0).ok()?..usize::try_from(m.address.1).ok()?)
        })
        .collect()
}

/// Run the collector until `shutdown`.
///
/// # Errors
/// At start only: a zero interval, a proc tree without `stat`, or a `--listen` address that
/// cannot be bound.
pub async fn run(config: CollectorArgs, shutdown: Shutdown) -> Result<(), Error> {
    if config.interval.is_zero() {
        return Err(fail("`--interval` must be longer than zero".into()));
    }
    let stat = config.proc_path.join("stat");
    if !stat.is_file() {
        return Err(fail(format!(
            "`{}` is not a proc file system (no `{}`)",
            config.proc_path.display(),
            stat.display()
        )));
    }
    let mut collector = Collector::new(&config);
    let latest: prometheus::Latest = Arc::default();
    let server = match config.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| fail(format!("cannot listen on `{addr}`: {e}")))?;
            tracing::info!(
                "serving Prometheus metrics on http://{}/metrics",
                listener.local_addr().unwrap_or(addr)
            );
            Some(tokio::spawn(prometheus::serve(
                listener,
                latest.clone(),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let resource = resource(&config);
    let mut reload = shutdown.clone();
    shutdown.ready();
    let mut released = false;
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            // Nothing to re-read: a reload collects at once.
            _ = reload.reloaded() => {}
        }
        let points = collector.collect().await;
        if !released {
            released = true;
            let kib = release_start_up_pages();
            tracing::debug!("unmapped {kib} KiB of the binary after the first collection");
        }
        crate::telemetry::record(&points);
        *latest.write().expect("not poisoned") = Arc::new(prometheus::Snapshot {
            resource: resource.clone(),
            points,
        });
    }
    if let Some(s) = server {
        let _ = s.await;
    }
    Ok(())
}

/// One collection's sources and what they last failed with.
pub struct Collector {
    host: Arc<std::sync::Mutex<host::Host>>,
    tailscale_socket: PathBuf,
    units: Option<Units>,
    /// The last problem logged per source, so a lasting one is logged once, not every interval.
    problems: HashMap<&'static str, String>,
}

struct Units {
    scope: Scope,
    unit_dir: Option<PathBuf>,
    stack: Option<String>,
    /// Connected on first use, and again after a failure.
    systemd: Option<Systemd>,
}

impl Collector {
    /// The sources `config` names.
    pub fn new(config: &CollectorArgs) -> Self {
        Collector {
            host: Arc::new(std::sync::Mutex::new(host::Host::new(
                &config.proc_path,
                &config.sys_path,
                &config.root_path,
                &config.filesystem_type,
            ))),
            tailscale_socket: config.tailscale_socket.clone(),
            units: config.systemd.map(|s| Units {
                scope: match s {
                    UnitsScope::System => Scope::System,
                    UnitsScope::User => Scope::User,
                },
                unit_dir: config.unit_dir.clone(),
                stack: config.stack_name.clone(),
                systemd: None,
            }),
            problems: HashMap::new(),
        }
    }

    /// Measure every source once. What fails is logged (when its cause is new) and left out.
    pub async fn collect(&mut self) -> Vec<Point> {
        let host = self.host.clone();
        // File reads and statvfs block; keep them off the async workers.
        let (mut points, mut problems) = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(512);
            let problems = host.lock().expect("not poisoned").collect(&mut out);
            (out, problems)
        })
        .await
        .unwrap_or_else(|e| (Vec::new(), vec![("host", format!("reader panicked: {e}"))]));
        if let Err(e) = tailscale::collect(&self.tailscale_socket, &mut points).await {
            problems.push(("tailscale", e));
        }
        if let Some(units) = &mut self.units
            && let Err(e) = units.collect(&mut points).await
        {
            problems.push(("units", e));
        }
        self.log(problems);
        points
    }

    fn log(&mut self, problems: Vec<(&'static str, String)>) {
        let failing: Vec<&'static str> = problems.iter().map(|(s, _)| *s).collect();
        for (source, message) in problems {
            if self.problems.get(source) != Some(&message) {
                tracing::warn!("cannot read {source}: {message}");
                self.problems.insert(source, message);
            }
        }
        self.problems.retain(|source, _| {
            let still = failing.contains(source);
            if !still {
                tracing::info!("{source} reads again");
            }
            still
        });
    }
}

impl Units {
    async fn collect(&mut self, out: &mut Vec<Point>) -> Result<(), String> {
        if self.systemd.is_none() {
            let target = Target::resolve(self.scope, false, self.unit_dir.as_deref())
                .map_err(|e| e.to_string())?;
            self.systemd = Some(Systemd::connect(target).await.map_err(|e| e.to_string())?);
        }
        let systemd = self.systemd.as_ref().expect("connected above");
        // The backend reports unit files and states; which units are labctl's (and this stack's)
        // is decided here, from the marker labctl writes as each file's first line.
        let owned = owned(
            &systemd.unit_files().map_err(|e| e.to_string())?,
            self.stack.as_deref(),
        );
        let names: Vec<String> = owned.iter().map(|(n, _)| n.clone()).collect();
        let states = match systemd.active_states(&names).await {
            Ok(s) => s,
            Err(e) => {
                // The manager may have restarted: connect afresh next time.
                self.systemd = None;
                return Err(e.to_string());
            }
        };
        for ((name, stack), (active_state, _)) in owned.into_iter().zip(states) {
            let active = matches!(active_state.as_str(), "active" | "reloading");
            out.push(
                Point::new(
                    "labctl.unit.active",
                    "",
                    "Whether a unit labctl rendered is active (1) or not (0).",
                    Kind::Gauge,
                    if active { 1.0 } else { 0.0 },
                )
                .with("unit", name)
                .with("labctl.stack", stack),
            );
        }
        Ok(())
    }
}

/// The units labctl owns among `files` (unit file name → text), with the stack each belongs to:
/// those whose first line is labctl's marker, of `stack` only when given. Sorted by name.
pub fn owned(files: &BTreeMap<String, String>, stack: Option<&str>) -> Vec<(String, String)> {
    files
        .iter()
        .filter_map(|(name, text)| {
            let owner = crate::resource::unit_owner(text)?;
            stack
                .is_none_or(|s| s == owner)
                .then(|| (name.clone(), owner.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::unit_marker;

    const SMAPS: &str = "\
00400000-00401000 r--p 00000000 fd:00 42 /usr/bin/labctl
Size:                  4 kB
Anonymous:             0 kB
00401000-01800000 r-xp 00001000 fd:00 42 /usr/bin/labctl
Size:              20476 kB
Anonymous:             0 kB
01800000-01a00000 r--p 01400000 fd:00 42 /usr/bin/labctl
Anonymous:             0 kB
01a00000-01a10000 r--p 01600000 fd:00 42 /usr/bin/labctl
Anonymous:            12 kB
01a10000-01a20000 rw-p 01610000 fd:00 42 /usr/bin/labctl
Anonymous:            64 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:00 43 /usr/lib/libc.so.6
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0 
Anonymous:          1024 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Anonymous:           132 kB
";

    #[test]
    fn only_the_binarys_read_only_pages_without_copies_are_released() {
        assert_eq!(
            releasable(SMAPS, "/usr/bin/labctl"),
            vec![
                0x40_0000..0x40_1000,
                0x40_1000..0x180_0000,
                0x180_0000..0x1a0_0000
            ],
            "relocated (anonymous) and writable mappings, and other files, stay"
        );
        assert!(releasable(SMAPS, "/usr/bin/other").is_empty());
    }

    #[test]
    fn released_pages_leave_the_resident_set_and_come_back_on_use() {
        // The resident bytes of this test binary's own file mappings.
        let resident = || {
            use procfs_core::FromBufRead;
            use procfs_core::process::{MMapPath, MemoryMaps};
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            let smaps = std::fs::read("/proc/self/smaps").unwrap();
            MemoryMaps::from_buf_read(smaps.as_slice())
                .unwrap()
                .into_iter()
                .filter(|m| matches!(&m.pathname, MMapPath::Path(p) if *p == exe))
                .map(|m| m.extension.map.get("Rss").copied().unwrap_or(0))
                .sum::<u64>()
        };
        let before = resident();
        let released = release_start_up_pages();
        let after = resident();
        assert!(released > 0);
        assert!(after < before, "resident {before} B -> {after} B");
        // That `resident` ran again after its own code was unmapped, and this test returns, is
        // the check that released pages come back on use: a page that did not would fault.
    }

    #[test]
    fn owned_units_are_those_with_the_marker_of_the_stack() {
        let files: BTreeMap<String, String> = [
            ("b.service", format!("{}\n[Service]\n", unit_marker("lab"))),
            ("a.timer", format!("{}\n[Timer]\n", unit_marker("lab"))),
            (
                "c.service",
                format!("{}\n[Service]\n", unit_marker("other")),
            ),
            ("plain.service", "[Service]\nExecStart=/bin/true\n".into()),
            // The marker counts only as the first line.
            ("late.service", format!("[Unit]\n{}\n", unit_marker("lab"))),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
        let pair = |n: &str, s: &str| (n.to_string(), s.to_string());
        assert_eq!(
            owned(&files, Some("lab")),
            [pair("a.timer", "lab"), pair("b.service", "lab")]
        );
        assert_eq!(
            owned(&files, None),
            [
                pair("a.timer", "lab"),
                pair("b.service", "lab"),
                pair("c.service", "other")
            ]
        );
    }
}
