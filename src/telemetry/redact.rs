//! No secret value leaves the process in telemetry: span attributes and events, and the log lines
//! written to stderr, are passed through the redactor.

use opentelemetry_sdk::trace::SpanData;

/// Mask secret values ([`crate::sensitive::redact`]) in what a span carries: its name, string
/// attributes, events and status.
pub(super) fn redact_span(span: &mut SpanData) {
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
pub(super) struct RedactedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedLine;
    fn make_writer(&'a self) -> Self::Writer {
        RedactedLine(Vec::new())
    }
}

/// One event's text, written (masked) when dropped.
pub(super) struct RedactedLine(Vec<u8>);

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
