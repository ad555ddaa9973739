//! The proxy's metrics, for the GitOps dashboard and its alerts: GitOps syncs by result, their
//! duration, the last sync (result, commit, time), webhook deliveries and pipeline starts. The
//! handlers call one function each after they answered; the counting and the points are here.
//!
//! | metric | kind | unit | attributes | Prometheus name |
//! | --- | --- | --- | --- | --- |
//! | `labctl.proxy.syncs` | counter | `{sync}` | `result` | `labctl_proxy_syncs_total` |
//! | `labctl.proxy.sync.duration` | counter | `s` | `result` | `labctl_proxy_sync_duration_seconds_total` |
//! | `labctl.proxy.sync.last.time` | gauge | `s` | `result`, `commit` | `labctl_proxy_sync_last_time_seconds` |
//! | `labctl.proxy.sync.last.duration` | gauge | `s` | `result`, `commit` | `labctl_proxy_sync_last_duration_seconds` |
//! | `labctl.proxy.webhook.deliveries` | counter | `{delivery}` | `event`, `status` | `labctl_proxy_webhook_deliveries_total` |
//! | `labctl.proxy.pipeline.starts` | counter | `{request}` | `pipeline`, `status` | `labctl_proxy_pipeline_starts_total` |
//!
//! `result` is the sync status's: `ok`, `failed`, `refused`, `interrupted`, and
//! [`ROLLED_BACK`] for a sync whose apply failed its health gates and was rolled back to the last
//! good generation (the sync reports it through [`sync_ended`] like any other result).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metric::{Kind, Point};

/// The `result` of a sync that was rolled back: the dashboards and the `LabctlGitOpsRolledBack`
/// alert look for it.
pub const ROLLED_BACK: &str = "rolled-back";

/// Every sync result, counted from zero at start so that the first of each shows as an increase.
pub const RESULTS: [&str; 5] = ["ok", "failed", "refused", "interrupted", ROLLED_BACK];

/// The webhook events the proxy acts on; any other is counted as `other`, so that a sender
/// cannot grow the number of series.
const EVENTS: [&str; 3] = ["ping", "push", "issues"];

/// The counts since the process started.
#[derive(Debug, Default)]
pub struct Counts {
    syncs: BTreeMap<String, (u64, f64)>,
    deliveries: BTreeMap<(String, u16), u64>,
    starts: BTreeMap<(String, u16), u64>,
}

impl Counts {
    /// Count every sync result at zero.
    pub fn start(&mut self) -> Vec<Point> {
        for r in RESULTS {
            self.syncs.entry(r.to_string()).or_default();
        }
        self.sync_points()
    }

    /// A sync of `commit` ended with `result` after `took`, at `at`: the sync counters, and the
    /// last sync (to be recorded replacing the one before).
    pub fn sync(
        &mut self,
        commit: &str,
        result: &str,
        took: Duration,
        at: SystemTime,
    ) -> (Vec<Point>, Vec<Point>) {
        let e = self.syncs.entry(result.to_string()).or_default();
        e.0 += 1;
        e.1 += took.as_secs_f64();
        let when = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let last = |p: Point| p.with("result", result).with("commit", commit);
        let latest = vec![
            last(Point::new(
                "labctl.proxy.sync.last.time",
                "s",
                "When the latest GitOps sync ended (Unix time), with its result and commit.",
                Kind::Gauge,
                when.as_secs_f64().floor(),
            )),
            last(Point::new(
                "labctl.proxy.sync.last.duration",
                "s",
                "How long the latest GitOps sync took, with its result and commit.",
                Kind::Gauge,
                took.as_secs_f64(),
            )),
        ];
        (self.sync_points(), latest)
    }

    fn sync_points(&self) -> Vec<Point> {
        let mut out = Vec::new();
        for (result, (n, secs)) in &self.syncs {
            out.push(
                Point::new(
                    "labctl.proxy.syncs",
                    "{sync}",
                    "GitOps syncs since the proxy started, by result.",
                    Kind::Counter,
                    *n as f64,
                )
                .with("result", result),
            );
            out.push(
                Point::new(
                    "labctl.proxy.sync.duration",
                    "s",
                    "Seconds spent in GitOps syncs since the proxy started, by result.",
                    Kind::Counter,
                    *secs,
                )
                .with("result", result),
            );
        }
        out
    }

    /// A webhook delivery claiming to be `event` was answered `status`.
    pub fn delivery(&mut self, event: Option<&str>, status: u16) -> Vec<Point> {
        let event = match event {
            Some(e) if EVENTS.contains(&e) => e,
            Some(_) => "other",
            None => "none",
        };
        *self.deliveries.entry((event.into(), status)).or_default() += 1;
        self.deliveries
            .iter()
            .map(|((event, status), n)| {
                Point::new(
                    "labctl.proxy.webhook.deliveries",
                    "{delivery}",
                    "GitHub webhook deliveries since the proxy started, by event and HTTP status.",
                    Kind::Counter,
                    *n as f64,
                )
                .with("event", event)
                .with("status", status.to_string())
            })
            .collect()
    }

    /// A start of pipeline `name` was answered `status` (202: started; 404: no such pipeline,
    /// counted as `unknown`).
    pub fn pipeline_start(&mut self, name: &str, status: u16) -> Vec<Point> {
        let name = if status == 404 { "unknown" } else { name };
        *self.starts.entry((name.into(), status)).or_default() += 1;
        self.starts
            .iter()
            .map(|((pipeline, status), n)| {
                Point::new(
                    "labctl.proxy.pipeline.starts",
                    "{request}",
                    "Pipeline start requests since the proxy started, by pipeline and HTTP status (202: started).",
                    Kind::Counter,
                    *n as f64,
                )
                .with("pipeline", pipeline)
                .with("status", status.to_string())
            })
            .collect()
    }
}

static COUNTS: Mutex<Counts> = Mutex::new(Counts {
    syncs: BTreeMap::new(),
    deliveries: BTreeMap::new(),
    starts: BTreeMap::new(),
});

fn counts() -> std::sync::MutexGuard<'static, Counts> {
    COUNTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sync loop started: every result counted at zero.
pub fn sync_started() {
    crate::telemetry::record(&counts().start());
}

/// A sync of `commit` ended with `result` after `took`.
pub fn sync_ended(commit: &str, result: &str, took: Duration) {
    let (totals, latest) = counts().sync(commit, result, took, SystemTime::now());
    crate::telemetry::record(&totals);
    crate::telemetry::record_only(&latest);
}

/// A webhook delivery claiming `event` was answered `status`.
pub fn delivery(event: Option<&str>, status: u16) {
    crate::telemetry::record(&counts().delivery(event, status));
}

/// A start of pipeline `name` was answered `status`.
pub fn pipeline_start(name: &str, status: u16) {
    crate::telemetry::record(&counts().pipeline_start(name, status));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::collector::prometheus::metric_name;

    fn value(points: &[Point], name: &str, attrs: &[(&str, &str)]) -> Option<f64> {
        points
            .iter()
            .find(|p| {
                p.name == name
                    && attrs
                        .iter()
                        .all(|(k, v)| p.attributes.iter().any(|(pk, pv)| pk == k && pv == v))
            })
            .map(|p| p.value)
    }

    #[test]
    fn syncs_are_counted_by_result_with_the_latest_one_apart() {
        let mut c = Counts::default();
        let zero = c.start();
        for r in RESULTS {
            assert_eq!(
                value(&zero, "labctl.proxy.syncs", &[("result", r)]),
                Some(0.0)
            );
        }
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        c.sync("aaaa111", "failed", Duration::from_millis(1500), at);
        let (totals, latest) = c.sync("bbbb222", ROLLED_BACK, Duration::from_secs(3), at);
        assert_eq!(
            value(&totals, "labctl.proxy.syncs", &[("result", "failed")]),
            Some(1.0)
        );
        assert_eq!(
            value(&totals, "labctl.proxy.syncs", &[("result", ROLLED_BACK)]),
            Some(1.0)
        );
        assert_eq!(
            value(
                &totals,
                "labctl.proxy.sync.duration",
                &[("result", "failed")]
            ),
            Some(1.5)
        );
        assert_eq!(latest.len(), 2);
        assert_eq!(
            value(
                &latest,
                "labctl.proxy.sync.last.time",
                &[("result", ROLLED_BACK), ("commit", "bbbb222")]
            ),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            value(&latest, "labctl.proxy.sync.last.duration", &[]),
            Some(3.0)
        );
    }

    #[test]
    fn deliveries_and_starts_keep_their_label_values_few() {
        let mut c = Counts::default();
        c.delivery(Some("push"), 202);
        c.delivery(Some("anything-a-sender-says"), 401);
        let d = c.delivery(Some("push"), 202);
        assert_eq!(
            value(
                &d,
                "labctl.proxy.webhook.deliveries",
                &[("event", "push"), ("status", "202")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &d,
                "labctl.proxy.webhook.deliveries",
                &[("event", "other"), ("status", "401")]
            ),
            Some(1.0)
        );
        let s = c.pipeline_start("made-up", 404);
        assert_eq!(s[0].attributes[0], ("pipeline", "unknown".to_string()));
        let s = c.pipeline_start("nightly-etl", 202);
        assert_eq!(
            value(
                &s,
                "labctl.proxy.pipeline.starts",
                &[("pipeline", "nightly-etl"), ("status", "202")]
            ),
            Some(1.0)
        );
    }

    /// The names the dashboards and rules use (docs/agents.md lists them).
    #[test]
    fn prometheus_names_are_the_documented_ones() {
        let mut c = Counts::default();
        let (mut all, latest) = c.sync("c", "ok", Duration::ZERO, SystemTime::now());
        all.extend(latest);
        all.extend(c.delivery(None, 400));
        all.extend(c.pipeline_start("p", 202));
        let mut names: Vec<String> = all.iter().map(metric_name).collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names,
            [
                "labctl_proxy_pipeline_starts_total",
                "labctl_proxy_sync_duration_seconds_total",
                "labctl_proxy_sync_last_duration_seconds",
                "labctl_proxy_sync_last_time_seconds",
                "labctl_proxy_syncs_total",
                "labctl_proxy_webhook_deliveries_total",
            ]
        );
    }
}
