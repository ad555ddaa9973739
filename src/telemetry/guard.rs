//! Exports that never hold up the work: each has a deadline, runs on the exporters' own runtime,
//! and reports its failures at most once a minute per signal.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::LogBatch;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::SpanData;

use super::*;

/// The signal a [`Guarded`] exporter carries, for reports.
#[derive(Debug, Clone, Copy)]
pub(super) enum Signal {
    Spans,
    Logs,
    Metrics,
}

impl Signal {
    /// The value of [`DROPPED`]'s `signal` attribute.
    pub(super) fn label(self) -> &'static str {
        match self {
            Signal::Spans => "spans",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    pub(super) fn noun(self) -> &'static str {
        match self {
            Signal::Spans => "spans",
            Signal::Logs => "log records",
            Signal::Metrics => "metric exports",
        }
    }
}

/// Drops and failures, counted; reported at most once per [`REPORT_EVERY`].
#[derive(Debug)]
pub(super) struct Health {
    pub(super) endpoint: String,
    /// The CLI has no stderr log layer: reports are printed directly.
    pub(super) print: bool,
    pub(super) dropped: [AtomicU64; 3],
    pub(super) last: Mutex<(Option<Instant>, Option<String>)>,
}

impl Health {
    pub(super) fn new(print: bool, endpoint: String) -> Self {
        Health {
            endpoint,
            print,
            dropped: Default::default(),
            last: Mutex::new((None, None)),
        }
    }

    pub(super) fn counts(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.dropped[i].load(Ordering::Relaxed))
    }

    pub(super) fn drop_some(&self, signal: Signal, n: usize, why: &str) {
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

    pub(super) fn summary(&self, why: &str) -> String {
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

    pub(super) fn report_now(&self, message: String) {
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
pub(super) struct Guarded<E> {
    pub(super) inner: E,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) health: Arc<Health>,
    pub(super) signal: Signal,
    /// Items handed to the batch processor and not yet exported (spans, logs).
    pub(super) in_flight: Arc<AtomicUsize>,
}

impl<E> Guarded<E> {
    /// Run `fut` (an export of `n` items) in the telemetry runtime's context with a deadline.
    pub(super) async fn run(
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

/// Polls its future inside the telemetry runtime's context: the SDK's batch threads poll exports
/// with a plain executor, and the transports need tokio's reactor and timers.
pub(super) struct InRuntime<'a> {
    pub(super) rt: tokio::runtime::Handle,
    pub(super) fut: Pin<Box<dyn Future<Output = OTelSdkResult> + Send + 'a>>,
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
