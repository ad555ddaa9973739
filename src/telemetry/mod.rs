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

mod bounded;
mod guard;
mod metrics;
mod pipeline;
mod redact;
mod settings;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use self::bounded::{BoundedLogs, BoundedSpans};
use self::guard::{Guarded, Health, Signal};
use self::metrics::Metrics;
use self::pipeline::Pipeline;
use self::redact::RedactedStderr;

pub use metrics::{DROPPED, dropped, record, record_only};
pub use pipeline::process_resource;
pub use settings::{Proto, Settings};

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
