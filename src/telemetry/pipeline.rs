//! The three exporter pipelines (traces, logs, metrics) of one process, and the resource they
//! describe it with.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};

use super::settings::parse_attributes;
use super::*;

/// The exporters of one process and the runtime that drives their IO.
pub(super) struct Pipeline {
    pub(super) tracer: SdkTracerProvider,
    pub(super) meter: SdkMeterProvider,
    pub(super) logger: SdkLoggerProvider,
    pub(super) health: Arc<Health>,
    // Drives the exporters' IO; dropped last.
    pub(super) rt: Option<tokio::runtime::Runtime>,
}

impl Pipeline {
    pub(super) fn build(
        s: &Settings,
        stack: Option<String>,
        agent: bool,
    ) -> Result<Pipeline, String> {
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
pub(super) fn resource(s: &Settings, stack: Option<String>) -> Resource {
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
pub(super) fn resource_attributes(
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

pub(super) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::settings::tests::env;

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
}
