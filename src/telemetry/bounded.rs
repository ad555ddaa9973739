//! Bounded queues in front of the exporters: what does not fit is dropped and counted, never
//! waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{BatchLogProcessor, LogProcessor};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanData, SpanProcessor};

use super::redact::redact_span;
use super::*;

/// The span queue's bound, kept here so that every drop is counted: the SDK's own queue is as
/// large, so it never overflows, and what would not fit is dropped here.
#[derive(Debug)]
pub(super) struct BoundedSpans {
    pub(super) inner: BatchSpanProcessor,
    pub(super) in_flight: Arc<AtomicUsize>,
    pub(super) health: Arc<Health>,
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

/// The log queue's bound, as [`BoundedSpans`].
#[derive(Debug)]
pub(super) struct BoundedLogs {
    pub(super) inner: BatchLogProcessor,
    pub(super) in_flight: Arc<AtomicUsize>,
    pub(super) health: Arc<Health>,
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
