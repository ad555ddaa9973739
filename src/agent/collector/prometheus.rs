//! `--listen`: the latest collection as Prometheus text on `GET /metrics`, with the names and
//! labels the same points get in Prometheus on the bundled path: OTLP to the OTel Collector,
//! whose `prometheusremotewrite` exporter (with `resource_to_telemetry_conversion`) writes them
//! to Prometheus. A Prometheus scraping this endpoint with `honor_labels: true` stores the same
//! series as one fed by the collector, so the dashboards and alert rules work on either.
//!
//! The translation is opentelemetry-collector-contrib v0.116's (the otel-collector image the stack
//! ships), `pkg/translator/prometheus` (`normalize_name.go`, `normalize_label.go`) and
//! `pkg/translator/prometheusremotewrite` (`helper.go`: `createAttributes`,
//! `addResourceTargetInfo`), with `pkg/resourcetotelemetry`; docs/dashboards.md spells it out:
//!
//! - name: the metric name split into its alphanumeric words; the unit's Prometheus word appended
//!   (`s` → `seconds`, `By` → `bytes`, …; none for `1`, an empty unit or an annotation like
//!   `{packet}`) unless the name has that word already; `total` moved to the end of a monotonic
//!   sum; `ratio` moved to the end of a gauge of unit `1`; joined with `_`.
//! - labels: the point's attributes, overwritten by the resource's attributes of the same key (all
//!   of them: `host.name`, `service.name`, …), each key with every character but ASCII letters and
//!   digits made `_` (`key_` before a leading digit, `key` before a single leading `_`), keys that
//!   end up alike joined as `a;b`; then `job` = `service.namespace/service.name` (or
//!   `service.name`) and `instance` = `service.instance.id`.
//! - `target_info`: the resource's attributes but `service.name`, `service.namespace` and
//!   `service.instance.id`, with `job` and `instance`; left out when nothing else is left.
//! - types: counters are counters, gauges and up-down counters are gauges.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::agent::runtime::Shutdown;
use crate::metric::{Kind, Point};

/// What the endpoint serves: the resource attributes and the points of the last collection.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Resource attributes, as `("host.name", "node1")`: what the OTLP export carries
    /// ([`crate::telemetry::process_resource`]).
    pub resource: Vec<(String, String)>,
    /// The last collection.
    pub points: Vec<Point>,
}

/// Shared between the collection loop (writer) and the endpoint (readers).
pub type Latest = Arc<RwLock<Arc<Snapshot>>>;

/// Serve `latest` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, latest: Latest, shutdown: Shutdown) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let latest = latest.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let latest = latest.clone();
                async move { Ok::<_, Infallible>(answer(&req, &latest)) }
            });
            // A client that goes away mid-answer is its own business.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer<B>(req: &Request<B>, latest: &Latest) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    let plain = "text/plain; charset=utf-8";
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let snap = latest.read().expect("not poisoned").clone();
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                render(&snap),
            )
        }
        (_, "/metrics") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            plain,
            "use GET /metrics\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            plain,
            "not found: this endpoint serves GET /metrics\n".into(),
        ),
    }
}

/// The Prometheus name of a point's metric.
pub fn metric_name(p: &Point) -> String {
    prometheus_name(p.name, p.unit, p.kind)
}

/// The Prometheus name of OpenTelemetry metric `name` of `unit` and `kind`, as
/// `normalizeName` (contrib v0.116, `pkg/translator/prometheus`) builds it.
pub fn prometheus_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut tokens = words(name);
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m, Some(p)),
        None => (unit, None),
    };
    let main = main.trim();
    if !main.is_empty() && !main.contains(['{', '}']) {
        let word = words(unit_word(main)).join("_");
        if !word.is_empty() && !tokens.contains(&word) {
            tokens.push(word);
        }
    }
    if let Some(per) = per.map(str::trim).filter(|p| !p.is_empty())
        && !per.contains(['{', '}'])
    {
        let word = words(per_unit_word(per)).join("_");
        if !word.is_empty() && !tokens.contains(&word) {
            tokens.push("per".into());
            tokens.push(word);
        }
    }
    if kind == Kind::Counter {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    }
    if unit == "1" && kind == Kind::Gauge {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".into());
    }
    let name = tokens.join("_");
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

/// The alphanumeric runs of `s`: what the translator keeps of a name.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `unitMap`: a UCUM unit's Prometheus word; other units as written.
fn unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// `perUnitMap`: the word after `per_` for the unit below a `/`.
fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// The Prometheus label name of attribute `key` (`NormalizeLabel`). The translator keeps
/// non-ASCII letters, which Prometheus then refuses; here they become `_` like any other
/// character, so a stray attribute cannot make the whole page unreadable.
pub fn label_name(key: &str) -> String {
    let mut label: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if label.starts_with(|c: char| c.is_ascii_digit()) {
        label.insert_str(0, "key_");
    } else if label.starts_with('_') && !label.starts_with("__") {
        label.insert_str(0, "key");
    }
    label
}

/// The resource attributes Prometheus's `job` and `instance` come from instead of `target_info`.
const IDENTIFYING: [&str; 3] = ["service.namespace", "service.name", "service.instance.id"];

/// The labels of one series (`createAttributes`), sorted by name: `attributes` under `resource`'s
/// (`resource_to_telemetry_conversion` copies every resource attribute onto every point, over a
/// point attribute of the same key), then `job` and `instance`.
pub fn series_labels(
    attributes: &[(&str, String)],
    resource: &[(String, String)],
) -> Vec<(String, String)> {
    let mut merged: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in attributes {
        merged.insert(k, v);
    }
    for (k, v) in resource {
        merged.insert(k, v);
    }
    labelled(merged, resource)
}

/// The labels of `target_info` (`addResourceTargetInfo`), or `None` when the resource has nothing
/// but what `job` and `instance` already say, or neither of those.
pub fn target_info_labels(resource: &[(String, String)]) -> Option<Vec<(String, String)>> {
    let rest: BTreeMap<&str, &str> = resource
        .iter()
        .filter(|(k, _)| !IDENTIFYING.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if rest.is_empty() {
        return None;
    }
    let labels = labelled(rest, resource);
    labels
        .iter()
        .any(|(k, _)| k == "job" || k == "instance")
        .then_some(labels)
}

fn labelled(
    attributes: BTreeMap<&str, &str>,
    resource: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    // In key order, so that keys which end up alike join their values in a fixed order.
    for (k, v) in attributes {
        match out.entry(label_name(k)) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                if e.get() != v {
                    let joined = format!("{};{v}", e.get());
                    e.insert(joined);
                }
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(v.to_string());
            }
        }
    }
    let get = |key: &str| resource.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    if let Some(name) = get("service.name") {
        let job = match get("service.namespace") {
            Some(ns) => format!("{ns}/{name}"),
            None => name.clone(),
        };
        out.insert("job".into(), job);
    }
    if let Some(id) = get("service.instance.id") {
        out.insert("instance".into(), id.clone());
    }
    out.into_iter().collect()
}

/// Prometheus text exposition format 0.0.4: one `# HELP`/`# TYPE` per family, then its series,
/// families and labels in name order.
pub fn render(snap: &Snapshot) -> String {
    let mut families: BTreeMap<String, Vec<&Point>> = BTreeMap::new();
    for p in &snap.points {
        families.entry(metric_name(p)).or_default().push(p);
    }
    let mut out = String::new();
    if let Some(target) = target_info_labels(&snap.resource) {
        out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info");
        labels(&mut out, &target);
        out.push_str(" 1\n");
    }
    for (name, points) in &families {
        let first = points[0];
        let kind = match first.kind {
            Kind::Counter => "counter",
            Kind::Gauge | Kind::UpDownCounter => "gauge",
        };
        let _ = writeln!(out, "# HELP {name} {}", escape_help(first.description));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for p in points {
            out.push_str(name);
            labels(&mut out, &series_labels(&p.attributes, &snap.resource));
            let _ = writeln!(out, " {}", value(p.value));
        }
    }
    out
}

fn labels(out: &mut String, labels: &[(String, String)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape_value(v));
    }
    out.push('}');
}

fn escape_value(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn escape_help(s: &str) -> String {
    s.replace('\\', r"\\").replace('\n', r"\n")
}

fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from contrib's `normalize_name_test.go` (v0.116) and labctl's own metrics.
    #[test]
    fn names_follow_the_remote_write_exporter() {
        for (name, unit, kind, want) in [
            (
                "system.cpu.time",
                "s",
                Kind::Counter,
                "system_cpu_time_seconds_total",
            ),
            (
                "system.memory.usage",
                "By",
                Kind::UpDownCounter,
                "system_memory_usage_bytes",
            ),
            (
                "system.cpu.utilization",
                "1",
                Kind::Gauge,
                "system_cpu_utilization_ratio",
            ),
            (
                "system.cpu.load_average.1m",
                "{thread}",
                Kind::Gauge,
                "system_cpu_load_average_1m",
            ),
            ("tailscale.up", "", Kind::Gauge, "tailscale_up"),
            // A 0/1 gauge of unit `1` is a ratio to the translator.
            (
                "labctl.gate.funnel.enabled",
                "1",
                Kind::Gauge,
                "labctl_gate_funnel_enabled_ratio",
            ),
            // `total` and `ratio` move to the end; the unit word is not repeated.
            (
                "requests.total.count",
                "",
                Kind::Counter,
                "requests_count_total",
            ),
            ("disk.ratio.used", "1", Kind::Gauge, "disk_used_ratio"),
            ("uptime.seconds", "s", Kind::Gauge, "uptime_seconds"),
            (
                "system.network.io",
                "By/s",
                Kind::Gauge,
                "system_network_io_bytes_per_second",
            ),
            ("foo", "Cel", Kind::Gauge, "foo_celsius"),
            ("foo", "unknown_unit", Kind::Gauge, "foo_unknown_unit"),
            ("foo", "1", Kind::UpDownCounter, "foo"),
            ("foo", "1", Kind::Counter, "foo_total"),
            ("3.14.digits", "", Kind::Gauge, "_3_14_digits"),
            (
                "labctl.proxy.sync.duration",
                "s",
                Kind::Counter,
                "labctl_proxy_sync_duration_seconds_total",
            ),
        ] {
            assert_eq!(prometheus_name(name, unit, kind), want, "{name} ({unit})");
        }
    }

    #[test]
    fn labels_are_attributes_under_the_resource_then_job_and_instance() {
        let resource: Vec<(String, String)> = [
            ("host.name", "box"),
            ("service.name", "labctl-collector"),
            ("service.namespace", "lab"),
            ("service.instance.id", "box"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        let got = series_labels(
            &[
                ("cpu", "cpu0".into()),
                ("host.name", "overwritten".into()),
                ("1st", "a".into()),
                ("_private", "b".into()),
                ("__kept__", "c".into()),
            ],
            &resource,
        );
        let want: Vec<(String, String)> = [
            ("__kept__", "c"),
            ("cpu", "cpu0"),
            ("host_name", "box"),
            ("instance", "box"),
            ("job", "lab/labctl-collector"),
            ("key_1st", "a"),
            ("key_private", "b"),
            ("service_instance_id", "box"),
            ("service_name", "labctl-collector"),
            ("service_namespace", "lab"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        assert_eq!(got, want);
        // Keys that end up alike keep both values, in key order.
        let clash = series_labels(&[("a.b", "1".into()), ("a_b", "2".into())], &[]);
        assert_eq!(clash, [("a_b".to_string(), "1;2".to_string())]);
    }

    #[test]
    fn target_info_holds_what_job_and_instance_do_not() {
        let r = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            target_info_labels(&r(&[
                ("service.name", "s"),
                ("service.instance.id", "i"),
                ("host.name", "h"),
            ])),
            Some(r(&[("host_name", "h"), ("instance", "i"), ("job", "s")]))
        );
        // Nothing beyond job and instance: no target_info.
        assert_eq!(
            target_info_labels(&r(&[("service.name", "s"), ("service.instance.id", "i")])),
            None
        );
        // Neither job nor instance: none either.
        assert_eq!(target_info_labels(&r(&[("host.name", "h")])), None);
    }
}
