//! OpenTelemetry for every labctl process: the only importer of `opentelemetry*`.
//!
//! [`init`] installs the `tracing` subscriber of the process: spans go out as OTLP traces, events
//! as OTLP logs, and the points agents [`record`] as OTLP metrics, to the endpoint that
//! `--otlp-endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` names, over `grpc` or `http/protobuf`
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`). Without an endpoint (or with `OTEL_SDK_DISABLED=true`) nothing
//! is built: no thread, no queue, no exporter, and [`record`] returns at once.
//!
//! A slow or dead collector never holds up the work: spans and logs wait in bounded queues (what
//! does not fit is dropped and counted), every export has a deadline ([`EXPORT_TIMEOUT`]), failures
//! are reported at most once a minute, and [`Telemetry`]'s last flush gives up after
//! [`SHUTDOWN_DEADLINE`]. The exporters' network IO runs on a one-thread tokio runtime of their
//! own, so it neither needs nor disturbs the runtime of the command or agent.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter, MeterProvider as _};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{BatchLogProcessor, LogBatch, LogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanProcessor};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::metric::{Kind, Point};

/// The longest one export may take before it is abandoned (and its data dropped).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the last flush may take when the process ends; past it, what is left is dropped.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(1500);

/// Spans (and, separately, log records) waiting for export at most; more are dropped and counted.
pub const QUEUE: usize = 2048;

/// Export failures and drops are reported at most this often.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Crates whose own spans and events must never be exported: the exporters' transport (exporting
/// them would feed on itself) and the SDK.
const TRANSPORT: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
];

/// Where this module's own reports go; never exported (a dead collector would hear of itself).
const SELF: &str = "labctl::telemetry";

/// The wire protocol of the OTLP exporters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// OTLP over gRPC (`grpc`), as to port 4317.
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`http/protobuf`, the default), as to port 4318.
    HttpProtobuf,
}

/// Where and how to export, as resolved from the flag and the `OTEL_*` environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The collector's base URL (`http://host:port`, no trailing slash).
    pub endpoint: String,
    /// The protocol.
    pub protocol: Proto,
    /// `service.name`.
    pub service_name: String,
    /// Further resource attributes from `OTEL_RESOURCE_ATTRIBUTES`, in order.
    pub attributes: Vec<(String, String)>,
    /// How often metrics are exported (`OTEL_METRIC_EXPORT_INTERVAL`, ms; default 60 s).
    pub metric_interval: Duration,
}

impl Settings {
    /// Resolve the settings of a process whose default `service.name` is `service`, with the
    /// `--otlp-endpoint` value `flag` overriding `OTEL_EXPORTER_OTLP_ENDPOINT`; `env` reads the
    /// environment. `Ok(None)`: nothing to export (no endpoint, or `OTEL_SDK_DISABLED=true`).
    ///
    /// # Errors
    /// A message naming the variable (or flag) whose value is malformed, and why.
    pub fn resolve(
        service: &str,
        flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, String> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        match var("OTEL_SDK_DISABLED").map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "true" => return Ok(None),
            Some(v) if v != "false" => {
                return Err(format!(
                    "`OTEL_SDK_DISABLED` is `{v}`; expected `true` or `false`"
                ));
            }
            _ => {}
        }
        let (endpoint, source) = match flag.filter(|f| !f.trim().is_empty()) {
            Some(f) => (f.trim().to_string(), "--otlp-endpoint"),
            None => match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(e) => (e.trim().to_string(), "OTEL_EXPORTER_OTLP_ENDPOINT"),
                None => return Ok(None),
            },
        };
        let endpoint = check_endpoint(&endpoint).map_err(|why| format!("`{source}`: {why}"))?;
        let protocol = match var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref().map(str::trim) {
            None | Some("http/protobuf") => Proto::HttpProtobuf,
            Some("grpc") => Proto::Grpc,
            Some(other) => {
                return Err(format!(
                    "`OTEL_EXPORTER_OTLP_PROTOCOL` is `{other}`; expected `grpc` or `http/protobuf`"
                ));
            }
        };
        let attributes = match var("OTEL_RESOURCE_ATTRIBUTES") {
            Some(a) => {
                parse_attributes(&a).map_err(|why| format!("`OTEL_RESOURCE_ATTRIBUTES`: {why}"))?
            }
            None => Vec::new(),
        };
        let service_name = var("OTEL_SERVICE_NAME")
            .map(|s| s.trim().to_string())
            .or_else(|| {
                attributes
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| service.to_string());
        let metric_interval = match var("OTEL_METRIC_EXPORT_INTERVAL") {
            Some(ms) => match ms.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(format!(
                        "`OTEL_METRIC_EXPORT_INTERVAL` is `{ms}`; expected a positive number of milliseconds"
                    ));
                }
            },
            None => Duration::from_secs(60),
        };
        Ok(Some(Settings {
            endpoint,
            protocol,
            service_name,
            attributes,
            metric_interval,
        }))
    }
}

/// An `http://host:port` URL without a trailing slash. `https` needs TLS, which this build leaves
/// out (collectors on a homelab are reached over the tailnet or the node's port).
fn check_endpoint(url: &str) -> Result<String, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{url}`: https is not supported by this build; use an http:// endpoint"
            ));
        }
        _ => return Err(format!("`{url}` is not an http:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` names no host"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// `key=value,key2=value2` with percent-encoded values, as the OpenTelemetry spec writes it.
fn parse_attributes(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("`{pair}` is not `key=value`"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("`{pair}` has an empty key"));
        }
        out.push((k.to_string(), percent_decode(v.trim())?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{s}` has a bad percent escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` does not decode to UTF-8"))
}

/// How a process sets up its telemetry.
pub struct Options<'a> {
    /// The default `service.name`: `labctl`, `labctl-proxy`, ….
    pub service: &'a str,
    /// `--otlp-endpoint`, overriding `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<&'a str>,
    /// Log `tracing` events to stderr (agents): journald-friendly when `JOURNAL_STREAM` is set.
    /// The CLI prints through its views and keeps this off.
    pub stderr: bool,
    /// The `host.name` to report instead of the machine's (the collector's `--node-name`);
    /// `OTEL_RESOURCE_ATTRIBUTES` still wins.
    pub host: Option<&'a str>,
}

/// The telemetry of the process. Dropping it flushes what is queued, within
/// [`SHUTDOWN_DEADLINE`].
pub struct Telemetry {
    pipeline: Option<Pipeline>,
}

struct Pipeline {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
    logger: SdkLoggerProvider,
    health: Arc<Health>,
    // Drives the exporters' IO; dropped last.
    rt: Option<tokio::runtime::Runtime>,
}

/// Whether this process exports; [`record`] and [`set_parent_from_env`] do nothing otherwise.
static ACTIVE: OnceLock<Metrics> = OnceLock::new();

/// Set up the process's telemetry (once per process; later calls export nothing). `stack` names
/// the stack for the `labctl.stack` resource attribute; it is called only when exporting.
///
/// Malformed `OTEL_*` values print one warning on stderr and leave telemetry off; this never
/// fails.
pub fn init(opts: Options<'_>, stack: impl FnOnce() -> Option<String>) -> Telemetry {
    let settings = match Settings::resolve(opts.service, opts.endpoint, |k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("warning: telemetry is off: {why}");
            None
        }
    };
    let pipeline = settings
        .filter(|_| ACTIVE.get().is_none())
        .and_then(|mut s| {
            if let Some(host) = opts.host
                && !s.attributes.iter().any(|(k, _)| k == "host.name")
            {
                s.attributes.push(("host.name".into(), host.into()));
            }
            match Pipeline::build(&s, stack(), opts.stderr) {
                Ok(p) => Some(p),
                Err(why) => {
                    eprintln!("warning: telemetry is off: {why}");
                    None
                }
            }
        });
    let exporting = pipeline.is_some();
    let registry = tracing_subscriber::registry().with(opts.stderr.then(stderr_layer));
    let _ = match &pipeline {
        Some(p) => {
            let quiet = || {
                TRANSPORT
                    .iter()
                    .fold(Targets::new().with_default(LevelFilter::INFO), |t, c| {
                        t.with_target(*c, LevelFilter::OFF)
                    })
            };
            let traces = tracing_opentelemetry::layer()
                .with_tracer(p.tracer.tracer("labctl"))
                .with_threads(false)
                .with_location(false)
                .with_tracked_inactivity(false)
                .with_filter(quiet());
            let logs =
                opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(&p.logger)
                    .with_filter(quiet().with_target(SELF, LevelFilter::OFF));
            registry.with(traces).with(logs).try_init()
        }
        None if opts.stderr => registry.try_init(),
        // The CLI without an endpoint: no subscriber at all, nothing paid.
        None => Ok(()),
    };
    if !exporting {
        return Telemetry { pipeline: None };
    }
    Telemetry { pipeline }
}

/// Agents' stderr: the journal stamps each line itself, so under systemd ours carry no time and no
/// colour.
fn stderr_layer<S>() -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LABCTL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(RedactedStderr)
        .with_target(false)
        .with_ansi(!journal && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if journal {
        fmt.without_time().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    }
}

impl Telemetry {
    /// No telemetry: for commands that trace nothing.
    pub fn off() -> Telemetry {
        Telemetry { pipeline: None }
    }

    /// Whether anything is exported.
    pub fn exporting(&self) -> bool {
        self.pipeline.is_some()
    }

    /// Flush and stop now, within [`SHUTDOWN_DEADLINE`] (dropping does the same).
    pub fn shutdown(mut self) {
        self.close();
    }

    fn close(&mut self) {
        let Some(mut p) = self.pipeline.take() else {
            return;
        };
        // Each provider flushes on a thread of its own, all against one deadline: a hung
        // collector costs the process SHUTDOWN_DEADLINE at most, never an export timeout each.
        let (tx, rx) = std::sync::mpsc::channel::<OTelSdkResult>();
        let spawn = |f: Box<dyn FnOnce() -> OTelSdkResult + Send>| {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name("labctl-otlp-flush".into())
                .spawn(move || {
                    let _ = tx.send(f());
                })
                .is_ok()
        };
        // The deadline below is the only one: the SDK's own must not end first, because a
        // provider reports its processors' timeouts as a generic failure, which would read as
        // an export failure already reported, and the hung collector would go unmentioned.
        let sdk_timeout = SHUTDOWN_DEADLINE * 2;
        let (t, m, l) = (p.tracer.clone(), p.meter.clone(), p.logger.clone());
        let started = [
            spawn(Box::new(move || t.shutdown_with_timeout(sdk_timeout))),
            spawn(Box::new(move || m.shutdown_with_timeout(sdk_timeout))),
            spawn(Box::new(move || l.shutdown_with_timeout(sdk_timeout))),
        ]
        .into_iter()
        .filter(|ok| *ok)
        .count();
        drop(tx);
        let deadline = Instant::now() + SHUTDOWN_DEADLINE;
        let mut timed_out = false;
        for _ in 0..started {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Err(OTelSdkError::Timeout(_))) | Err(_) => {
                    timed_out = true;
                    break;
                }
                // Failed exports were reported by the exporter already.
                Ok(_) => {}
            }
        }
        if timed_out {
            p.health.report_now(format!(
                "telemetry: the collector at `{}` did not take the last export within {} ms; it is dropped",
                p.health.endpoint,
                SHUTDOWN_DEADLINE.as_millis()
            ));
        }
        if let Some(rt) = p.rt.take() {
            if timed_out {
                // A batch thread is still inside an export whose timer lives on this runtime:
                // shutting the runtime down would wake that timer into tokio's "context is
                // being shutdown" panic on stderr. The thread and the runtime end with the
                // process instead, which is about to exit.
                std::mem::forget(rt);
            } else {
                rt.shutdown_background();
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.close();
    }
}

impl Pipeline {
    fn build(s: &Settings, stack: Option<String>, agent: bool) -> Result<Pipeline, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("labctl-otlp")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the exporters' runtime: {e}"))?;
        // tonic's channel spawns its connection task on the runtime it is built in.
        let _in_rt = rt.enter();
        let resource = resource(s, stack);
        let health = Arc::new(Health::new(!agent, s.endpoint.clone()));
        let bad = |what: &str, e: opentelemetry_otlp::ExporterBuildError| {
            format!(
                "cannot build the OTLP {what} exporter for `{}`: {e}",
                s.endpoint
            )
        };
        let signal = |path: &str| match s.protocol {
            Proto::Grpc => s.endpoint.clone(),
            Proto::HttpProtobuf => format!("{}/{path}", s.endpoint),
        };
        let handle = rt.handle().clone();

        let spans = match s.protocol {
            Proto::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(signal("v1/traces"))
                .with_timeout(EXPORT_TIMEOUT)
                .build(),
            Proto::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(signal("v1/traces"))
                .with_timeout(EXPORT_TIMEOUT)
                .build(),
        }
        .map_err(|e| bad("trace", e))?;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let spans = Guarded {
            inner: spans,
            rt: handle.clone(),
            health: health.clone(),
            signal: Signal::Spans,
            in_flight: in_flight.clone(),
        };
        let batch = opentelemetry_sdk::trace::BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE)
            .with_scheduled_delay(Duration::from_secs(2))
            .build();
        let tracer = SdkTracerProvider::builder()
            .with_span_processor(BoundedSpans {
                inner: BatchSpanProcessor::builder(spans)
                    .with_batch_config(batch)
                    .build(),
                in_flight,
                health: health.clone(),
            })
            .with_resource(resource.clone())
            .build();

        let logs = match s.protocol {
            Proto::Grpc => opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(signal("v1/logs"))
                .with_timeout(EXPORT_TIMEOUT)
                .build(),
            Proto::HttpProtobuf => opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(signal("v1/logs"))
                .with_timeout(EXPORT_TIMEOUT)
                .build(),
        }
        .map_err(|e| bad("log", e))?;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let logs = Guarded {
            inner: logs,
            rt: handle.clone(),
            health: health.clone(),
            signal: Signal::Logs,
            in_flight: in_flight.clone(),
        };
        let batch = opentelemetry_sdk::logs::BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE)
            .with_scheduled_delay(Duration::from_secs(2))
            .build();
        let logger = SdkLoggerProvider::builder()
            .with_log_processor(BoundedLogs {
                inner: BatchLogProcessor::builder(logs)
                    .with_batch_config(batch)
                    .build(),
                in_flight,
                health: health.clone(),
            })
            .with_resource(resource.clone())
            .build();

        let metrics = match s.protocol {
            Proto::Grpc => opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(signal("v1/metrics"))
                .with_timeout(EXPORT_TIMEOUT)
                .with_temporality(Temporality::Cumulative)
                .build(),
            Proto::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(signal("v1/metrics"))
                .with_timeout(EXPORT_TIMEOUT)
                .with_temporality(Temporality::Cumulative)
                .build(),
        }
        .map_err(|e| bad("metric", e))?;
        let metrics = Guarded {
            inner: metrics,
            rt: handle,
            health: health.clone(),
            signal: Signal::Metrics,
            in_flight: Arc::new(AtomicUsize::new(0)),
        };
        let meter = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(metrics)
                    .with_interval(s.metric_interval)
                    .build(),
            )
            .with_resource(resource)
            .build();
        let metrics = Metrics {
            meter: meter.meter("labctl"),
            values: Arc::new(Mutex::new(HashMap::new())),
            instruments: Mutex::new(HashMap::new()),
            health: health.clone(),
        };
        metrics.observe_drops();
        let _ = ACTIVE.set(metrics);
        drop(_in_rt);
        Ok(Pipeline {
            tracer,
            meter,
            logger,
            health,
            rt: Some(rt),
        })
    }
}

/// The resource every signal carries, by the semantic conventions.
fn resource(s: &Settings, stack: Option<String>) -> Resource {
    let attrs = resource_attributes(&s.service_name, &s.attributes, stack);
    Resource::builder_empty()
        .with_attributes(attrs.into_iter().map(|(k, v)| KeyValue::new(k, v)))
        .build()
}

/// The resource's attributes: `attributes` (from `OTEL_RESOURCE_ATTRIBUTES`) with
/// `service.name`, `service.version`, `labctl.stack` (when given) set, and `host.name` and
/// `service.instance.id` defaulted to the machine's name.
///
/// `service.instance.id` is what becomes Prometheus's `instance` label on the way through the
/// OTel Collector (docs/dashboards.md, the translation): one agent per host, so the host names the
/// instance, and stays the same across restarts (a random id would start new series at each).
fn resource_attributes(
    service_name: &str,
    attributes: &[(String, String)],
    stack: Option<String>,
) -> BTreeMap<String, String> {
    let mut attrs: BTreeMap<String, String> = attributes.iter().cloned().collect();
    attrs.insert("service.name".into(), service_name.to_string());
    attrs.insert("service.version".into(), env!("CARGO_PKG_VERSION").into());
    if let Some(host) = host_name() {
        attrs.entry("host.name".into()).or_insert(host);
    }
    if let Some(host) = attrs.get("host.name").cloned() {
        attrs.entry("service.instance.id".into()).or_insert(host);
    }
    if let Some(stack) = stack {
        attrs.insert("labctl.stack".into(), stack);
    }
    attrs
}

/// The resource a process whose default `service.name` is `service` exports under (or would,
/// given an endpoint): the same `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are read, and
/// `host` is reported as `host.name` unless those name one. The collector's Prometheus endpoint
/// labels its series with it, as the OTLP path does. Malformed variables are left out here; [`init`]
/// is the one that warns about them.
pub fn process_resource(service: &str, host: Option<&str>) -> Vec<(String, String)> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut attributes = env("OTEL_RESOURCE_ATTRIBUTES")
        .and_then(|a| parse_attributes(&a).ok())
        .unwrap_or_default();
    if let Some(host) = host
        && !attributes.iter().any(|(k, _)| k == "host.name")
    {
        attributes.push(("host.name".into(), host.into()));
    }
    let service_name = env("OTEL_SERVICE_NAME")
        .map(|s| s.trim().to_string())
        .or_else(|| {
            attributes
                .iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| service.to_string());
    resource_attributes(&service_name, &attributes, None)
        .into_iter()
        .collect()
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
}

/// Make `span` (a command's root span, not yet entered) a child of the caller's trace when
/// `TRACEPARENT` (W3C trace context, with `TRACESTATE`) is set, as CI systems do. A malformed
/// value is warned about once and ignored: the command starts a trace of its own.
pub fn set_parent_from_env(span: &tracing::Span) {
    if ACTIVE.get().is_none() {
        return;
    }
    let Ok(parent) = std::env::var("TRACEPARENT") else {
        return;
    };
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_string(), parent.trim().to_string());
    if let Ok(state) = std::env::var("TRACESTATE") {
        carrier.insert("tracestate".to_string(), state);
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    if !cx.span().span_context().is_valid() {
        eprintln!(
            "warning: ignoring `TRACEPARENT`: `{parent}` is not a W3C traceparent (version-traceid-parentid-flags)"
        );
        return;
    }
    let _ = span.set_parent(cx);
}

/// The signal a [`Guarded`] exporter carries, for reports.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Spans,
    Logs,
    Metrics,
}

impl Signal {
    /// The value of [`DROPPED`]'s `signal` attribute.
    fn label(self) -> &'static str {
        match self {
            Signal::Spans => "spans",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Signal::Spans => "spans",
            Signal::Logs => "log records",
            Signal::Metrics => "metric exports",
        }
    }
}

/// Drops and failures, counted; reported at most once per [`REPORT_EVERY`].
#[derive(Debug)]
struct Health {
    endpoint: String,
    /// The CLI has no stderr log layer: reports are printed directly.
    print: bool,
    dropped: [AtomicU64; 3],
    last: Mutex<(Option<Instant>, Option<String>)>,
}

impl Health {
    fn new(print: bool, endpoint: String) -> Self {
        Health {
            endpoint,
            print,
            dropped: Default::default(),
            last: Mutex::new((None, None)),
        }
    }

    fn counts(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.dropped[i].load(Ordering::Relaxed))
    }

    fn drop_some(&self, signal: Signal, n: usize, why: &str) {
        self.dropped[signal as usize].fetch_add(n as u64, Ordering::Relaxed);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.1 = Some(why.to_string());
        if last.0.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        last.0 = Some(Instant::now());
        drop(last);
        self.report_now(self.summary(why));
    }

    fn summary(&self, why: &str) -> String {
        let counts: Vec<String> = [Signal::Spans, Signal::Logs, Signal::Metrics]
            .iter()
            .map(|s| (s, self.dropped[*s as usize].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {}", s.noun()))
            .collect();
        format!(
            "telemetry: OTLP export to `{}` failed: {why}; dropped so far: {}",
            self.endpoint,
            counts.join(", ")
        )
    }

    fn report_now(&self, message: String) {
        if self.print {
            eprintln!("warning: {message}");
        } else {
            tracing::warn!(target: SELF, "{message}");
        }
    }
}

/// An exporter that runs on the telemetry runtime, gives up after [`EXPORT_TIMEOUT`], and counts
/// what it failed to deliver.
#[derive(Debug)]
struct Guarded<E> {
    inner: E,
    rt: tokio::runtime::Handle,
    health: Arc<Health>,
    signal: Signal,
    /// Items handed to the batch processor and not yet exported (spans, logs).
    in_flight: Arc<AtomicUsize>,
}

impl<E> Guarded<E> {
    /// Run `fut` (an export of `n` items) in the telemetry runtime's context with a deadline.
    async fn run(
        &self,
        n: usize,
        fut: impl Future<Output = OTelSdkResult> + Send,
    ) -> OTelSdkResult {
        let result = InRuntime {
            rt: self.rt.clone(),
            fut: Box::pin(async move {
                match tokio::time::timeout(EXPORT_TIMEOUT, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(OTelSdkError::Timeout(EXPORT_TIMEOUT)),
                }
            }),
        }
        .await;
        self.in_flight.fetch_sub(
            n.min(self.in_flight.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        if let Err(e) = &result {
            self.health.drop_some(self.signal, n, &e.to_string());
        }
        result
    }
}

/// Polls its future inside the telemetry runtime's context: the SDK's batch threads poll exports
/// with a plain executor, and the transports need tokio's reactor and timers.
struct InRuntime<'a> {
    rt: tokio::runtime::Handle,
    fut: Pin<Box<dyn Future<Output = OTelSdkResult> + Send + 'a>>,
}

impl Future for InRuntime<'_> {
    type Output = OTelSdkResult;
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<OTelSdkResult> {
        let _in_rt = self.rt.enter();
        self.fut.as_mut().poll(cx)
    }
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Guarded<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.run(n, self.inner.export(batch)).await
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: opentelemetry_sdk::logs::LogExporter> opentelemetry_sdk::logs::LogExporter for Guarded<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count();
        self.run(n, self.inner.export(batch)).await
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Guarded<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        self.run(1, self.inner.export(metrics)).await
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// The span queue's bound, kept here so that every drop is counted: the SDK's own queue is as
/// large, so it never overflows, and what would not fit is dropped here.
#[derive(Debug)]
struct BoundedSpans {
    inner: BatchSpanProcessor,
    in_flight: Arc<AtomicUsize>,
    health: Arc<Health>,
}

impl SpanProcessor for BoundedSpans {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }
    fn on_end(&self, mut span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        redact_span(&mut span);
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= QUEUE {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.health
                .drop_some(Signal::Spans, 1, "the export queue is full");
            return;
        }
        self.inner.on_end(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Mask secret values ([`crate::sensitive::redact`]) in what a span carries: its name, string
/// attributes, events and status.
fn redact_span(span: &mut SpanData) {
    use opentelemetry::{Array, StringValue, Value};
    let text = |s: &str| match crate::sensitive::redact(s) {
        std::borrow::Cow::Owned(m) => Some(m),
        std::borrow::Cow::Borrowed(_) => None,
    };
    let value = |v: &mut Value| match v {
        Value::String(s) => {
            if let Some(m) = text(s.as_str()) {
                *s = StringValue::from(m);
            }
        }
        Value::Array(Array::String(list)) => {
            for s in list.iter_mut() {
                if let Some(m) = text(s.as_str()) {
                    *s = StringValue::from(m);
                }
            }
        }
        _ => {}
    };
    if let Some(m) = text(&span.name) {
        span.name = m.into();
    }
    for kv in &mut span.attributes {
        value(&mut kv.value);
    }
    for e in span.events.events.iter_mut() {
        if let Some(m) = text(&e.name) {
            e.name = m.into();
        }
        for kv in &mut e.attributes {
            value(&mut kv.value);
        }
    }
    if let opentelemetry::trace::Status::Error { description } = &mut span.status
        && let Some(m) = text(description)
    {
        *description = m.into();
    }
}

/// Agents' stderr, each formatted event masked by [`crate::sensitive::redact`] before it is written.
struct RedactedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedLine;
    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine(Vec::new())
    }
}

/// One event's text, written (masked) when dropped.
struct RedactedLine(Vec<u8>);

impl std::io::Write for RedactedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            crate::sensitive::redact(&text).as_bytes(),
        );
    }
}

/// The log queue's bound, as [`BoundedSpans`].
#[derive(Debug)]
struct BoundedLogs {
    inner: BatchLogProcessor,
    in_flight: Arc<AtomicUsize>,
    health: Arc<Health>,
}

impl LogProcessor for BoundedLogs {
    fn emit(
        &self,
        data: &mut opentelemetry_sdk::logs::SdkLogRecord,
        scope: &opentelemetry::InstrumentationScope,
    ) {
        use opentelemetry::logs::{AnyValue, LogRecord as _};
        // The SDK cannot rewrite a record's attributes: one holding a secret is not sent.
        if data
            .attributes_iter()
            .any(|(_, v)| crate::sensitive::holds_secret(&format!("{v:?}")))
        {
            self.health
                .drop_some(Signal::Logs, 1, "a log record held a secret value");
            return;
        }
        if let Some(AnyValue::String(body)) = data.body()
            && let std::borrow::Cow::Owned(masked) = crate::sensitive::redact(body.as_str())
        {
            data.set_body(AnyValue::String(masked.into()));
        }
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= QUEUE {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.health
                .drop_some(Signal::Logs, 1, "the export queue is full");
            return;
        }
        self.inner.emit(data, scope);
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The latest value of every series agents recorded, read by observable instruments at each
/// metrics export.
struct Metrics {
    meter: Meter,
    /// name → attributes → value. Never locked while calling into the SDK.
    values: Arc<Mutex<Series>>,
    /// One observable instrument per metric name, kept alive here.
    instruments: Mutex<HashMap<&'static str, Box<dyn std::any::Any + Send + Sync>>>,
    /// What the exporters dropped, exported as [`DROPPED`].
    health: Arc<Health>,
}

/// The metric counting what this process's telemetry dropped, by `signal`.
pub const DROPPED: &str = "labctl.telemetry.dropped";

impl Metrics {
    /// Export the drop counts at every metrics export: read at that moment, not recorded.
    fn observe_drops(&self) {
        let health = self.health.clone();
        let example = dropped_points(&[0; 3]).remove(0);
        let instrument = self
            .meter
            .f64_observable_counter(DROPPED)
            .with_unit(example.unit)
            .with_description(example.description)
            .with_callback(move |o| {
                for p in dropped_points(&health.counts()) {
                    let kv: Vec<KeyValue> = p
                        .attributes
                        .iter()
                        .map(|(k, v)| KeyValue::new(*k, v.clone()))
                        .collect();
                    o.observe(p.value, &kv);
                }
            })
            .build();
        self.instruments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(DROPPED, Box::new(instrument));
    }
}

/// [`DROPPED`] as points, one per signal, from `counts` (spans, log records, metric exports).
fn dropped_points(counts: &[u64; 3]) -> Vec<Point> {
    [Signal::Spans, Signal::Logs, Signal::Metrics]
        .iter()
        .map(|s| {
            Point::new(
                DROPPED,
                "{item}",
                "Spans, log records and metric exports this process's telemetry dropped: queue full, export failed or timed out, or a secret in a log record.",
                Kind::Counter,
                counts[*s as usize] as f64,
            )
            .with("signal", s.label())
        })
        .collect()
}

/// What this process's telemetry has dropped so far, as the points it exports under [`DROPPED`]
/// (none when telemetry is off): an agent serving its own metrics (the collector's `--listen`)
/// serves these too.
pub fn dropped() -> Vec<Point> {
    ACTIVE
        .get()
        .map(|m| dropped_points(&m.health.counts()))
        .unwrap_or_default()
}

type Series = HashMap<&'static str, HashMap<Vec<(&'static str, String)>, f64>>;

/// Record the latest value of each series in `points`; the next metrics export sends them
/// (Counter and UpDownCounter points as cumulative sums, Gauge points as gauges). Does nothing
/// when telemetry is off.
pub fn record(points: &[Point]) {
    record_points(points, false);
}

/// [`record`], and forget every other series of the metrics `points` name: for a gauge whose
/// attributes change with its value (the last sync's commit), so the series of the commit before
/// stops being exported instead of repeating its old value forever.
pub fn record_only(points: &[Point]) {
    record_points(points, true);
}

fn record_points(points: &[Point], replace: bool) {
    let Some(m) = ACTIVE.get() else {
        return;
    };
    let mut new: Vec<&Point> = Vec::new();
    {
        let mut values = m.values.lock().unwrap_or_else(|p| p.into_inner());
        if replace {
            for p in points {
                if let Some(series) = values.get_mut(p.name) {
                    series.clear();
                }
            }
        }
        for p in points {
            let series = values.entry(p.name).or_insert_with(|| {
                new.push(p);
                HashMap::new()
            });
            series.insert(p.attributes.clone(), p.value);
        }
    }
    if new.is_empty() {
        return;
    }
    let mut instruments = m.instruments.lock().unwrap_or_else(|p| p.into_inner());
    for p in new {
        if instruments.contains_key(p.name) {
            continue;
        }
        let values = m.values.clone();
        let name = p.name;
        let observe = move |o: &dyn AsyncInstrument<f64>| {
            let values = values.lock().unwrap_or_else(|p| p.into_inner());
            for (attrs, v) in values.get(name).into_iter().flatten() {
                let kv: Vec<KeyValue> = attrs
                    .iter()
                    .map(|(k, v)| KeyValue::new(*k, v.clone()))
                    .collect();
                o.observe(*v, &kv);
            }
        };
        let instrument: Box<dyn std::any::Any + Send + Sync> = match p.kind {
            Kind::Gauge => Box::new(
                m.meter
                    .f64_observable_gauge(p.name)
                    .with_unit(p.unit)
                    .with_description(p.description)
                    .with_callback(observe)
                    .build(),
            ),
            Kind::Counter => Box::new(
                m.meter
                    .f64_observable_counter(p.name)
                    .with_unit(p.unit)
                    .with_description(p.description)
                    .with_callback(observe)
                    .build(),
            ),
            Kind::UpDownCounter => Box::new(
                m.meter
                    .f64_observable_up_down_counter(p.name)
                    .with_unit(p.unit)
                    .with_description(p.description)
                    .with_callback(observe)
                    .build(),
            ),
        };
        instruments.insert(p.name, instrument);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn no_endpoint_or_disabled_exports_nothing() {
        assert_eq!(Settings::resolve("labctl", None, env(&[])), Ok(None));
        let disabled = env(&[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x:4318"),
        ]);
        assert_eq!(
            Settings::resolve("labctl", Some("http://y:4317"), disabled),
            Ok(None)
        );
    }

    #[test]
    fn flag_overrides_env_and_standard_variables_apply() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=lab, team=a%2Cb",
            ),
            ("OTEL_SDK_DISABLED", "false"),
        ]);
        let s = Settings::resolve("labctl-proxy", Some("http://flag:4317/"), e)
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "http://flag:4317");
        assert_eq!(s.protocol, Proto::Grpc);
        assert_eq!(s.service_name, "labctl-proxy");
        assert_eq!(
            s.attributes,
            vec![
                ("deployment.environment".into(), "lab".into()),
                ("team".into(), "a,b".into())
            ]
        );
        let named = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
            ("OTEL_SERVICE_NAME", "mine"),
        ]);
        let s = Settings::resolve("labctl", None, named).unwrap().unwrap();
        assert_eq!(
            (s.service_name.as_str(), s.protocol),
            ("mine", Proto::HttpProtobuf)
        );
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let cases = [
            ("OTEL_SDK_DISABLED", "yes", "`OTEL_SDK_DISABLED`"),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "http/json",
                "`OTEL_EXPORTER_OTLP_PROTOCOL`",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "novalue",
                "`OTEL_RESOURCE_ATTRIBUTES`",
            ),
            ("OTEL_RESOURCE_ATTRIBUTES", "a=%zz", "bad percent escape"),
            (
                "OTEL_METRIC_EXPORT_INTERVAL",
                "soon",
                "`OTEL_METRIC_EXPORT_INTERVAL`",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "localhost:4317",
                "`OTEL_EXPORTER_OTLP_ENDPOINT`",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://c:4317",
                "https is not supported",
            ),
        ];
        for (var, value, want) in cases {
            let mut pairs = vec![(var, value)];
            if var != "OTEL_EXPORTER_OTLP_ENDPOINT" {
                pairs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"));
            }
            let err = Settings::resolve("labctl", None, env(&pairs)).unwrap_err();
            assert!(err.contains(want), "{var}={value}: {err}");
        }
    }

    #[test]
    fn resource_follows_the_conventions() {
        let s = Settings::resolve(
            "labctl-gate",
            Some("http://c:4318"),
            env(&[("OTEL_RESOURCE_ATTRIBUTES", "host.name=box,labctl.stack=old")]),
        )
        .unwrap()
        .unwrap();
        let r = resource(&s, Some("lab".into()));
        let get = |k: &'static str| {
            r.get(&opentelemetry::Key::from_static_str(k))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("labctl-gate"));
        assert_eq!(
            get("service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(get("host.name").as_deref(), Some("box"));
        // Prometheus's `instance`, through the OTel Collector: the host, unless given.
        assert_eq!(get("service.instance.id").as_deref(), Some("box"));
        assert_eq!(get("labctl.stack").as_deref(), Some("lab"));
        let s = Settings::resolve(
            "labctl-gate",
            Some("http://c:4318"),
            env(&[("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=gate-1")]),
        )
        .unwrap()
        .unwrap();
        let r = resource(&s, None);
        assert_eq!(
            r.get(&opentelemetry::Key::from_static_str("service.instance.id"))
                .map(|v| v.to_string())
                .as_deref(),
            Some("gate-1")
        );
    }

    #[test]
    fn drops_are_counted_per_signal_under_one_metric() {
        let points = dropped_points(&[3, 0, 1]);
        let by_signal: Vec<(&str, f64)> = points
            .iter()
            .map(|p| (p.attributes[0].1.as_str(), p.value))
            .collect();
        assert_eq!(by_signal, [("spans", 3.0), ("logs", 0.0), ("metrics", 1.0)]);
        assert!(
            points
                .iter()
                .all(|p| p.name == DROPPED && p.kind == Kind::Counter)
        );
    }
}
