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

/// The resource the points describe, as the OTLP export carries it: `host.name` (the node name
/// when given), `service.name`, `service.instance.id`, `service.version` and whatever
/// `OTEL_RESOURCE_ATTRIBUTES` adds.
pub fn resource(config: &CollectorArgs) -> Vec<(String, String)> {
    crate::telemetry::process_resource(SERVICE_NAME, config.node_name.as_deref())
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
            shutdown.settled();
        }
        crate::telemetry::record(&points);
        let mut served = points;
        // The endpoint serves what the OTLP export sends, the exporter's own drop counts too.
        served.extend(crate::telemetry::dropped());
        *latest.write().expect("not poisoned") = Arc::new(prometheus::Snapshot {
            resource: resource.clone(),
            points: served,
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
            problems.push(("tailscale", e.0));
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
        let read = futures_util::future::try_join(
            systemd.active_states(&names),
            systemd.service_types_and_restarts(&names),
        )
        .await;
        let (states, services) = match read {
            Ok(r) => r,
            Err(e) => {
                // The manager may have restarted: connect afresh next time.
                self.systemd = None;
                return Err(e.to_string());
            }
        };
        for (((name, stack), (active_state, _)), service) in
            owned.into_iter().zip(states).zip(services)
        {
            out.extend(unit_points(&name, &stack, &active_state, service));
        }
        Ok(())
    }
}

/// The points of one unit: `labctl.unit.active`, `labctl.unit.failed` and, for a service,
/// `labctl.unit.restarts`. `unit.type` is a service's `Type=` (`oneshot`: started by a timer or
/// by hand and inactive in between, which the "unit down" alert leaves alone) or the unit's
/// suffix (`timer`, `socket`, …).
pub fn unit_points(
    name: &str,
    stack: &str,
    active_state: &str,
    service: Option<(String, u32)>,
) -> Vec<Point> {
    let (kind, restarts) = match service {
        Some((t, n)) => (t, Some(n)),
        None => (
            name.rsplit('.').next().unwrap_or_default().to_string(),
            None,
        ),
    };
    let tag = |p: Point| {
        p.with("unit", name)
            .with("labctl.stack", stack)
            .with("unit.type", kind.clone())
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let mut points = vec![
        tag(Point::new(
            "labctl.unit.active",
            "",
            "Whether a unit labctl rendered is active (1) or not (0).",
            Kind::Gauge,
            flag(matches!(active_state, "active" | "reloading")),
        )),
        tag(Point::new(
            "labctl.unit.failed",
            "",
            "Whether a unit labctl rendered is in the failed state (1): it crashed, or its last run failed.",
            Kind::Gauge,
            flag(active_state == "failed"),
        )),
    ];
    if let Some(n) = restarts {
        points.push(tag(Point::new(
            "labctl.unit.restarts",
            "{restart}",
            "Automatic restarts of a service labctl rendered (systemd's NRestarts) since it was last started by hand.",
            Kind::Counter,
            f64::from(n),
        )));
    }
    points
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
