//! Metric points as plain data. Agents measure into [`Point`]s; `telemetry` exports them over OTLP
//! and an agent's `/metrics` endpoint prints them as Prometheus text. Neither side needs to know
//! the other, and the points can be asserted in tests without any exporter.

/// How a point's value is to be read, as OpenTelemetry's data model names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value sampled now (memory in use, funnel on).
    Gauge,
    /// A cumulative, monotonic total since the process started (bytes read, transitions).
    Counter,
    /// A cumulative total that can go down (OpenTelemetry's non-monotonic sum).
    UpDownCounter,
}

/// One measurement of one time series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Semantic-convention name, as `system.cpu.time`.
    pub name: &'static str,
    /// UCUM unit, as `s`, `By`, `1`, `{packet}`.
    pub unit: &'static str,
    /// One line saying what it measures.
    pub description: &'static str,
    /// How the value is read.
    pub kind: Kind,
    /// Attributes identifying the series, as `("cpu", "0")`, `("state", "user")`.
    pub attributes: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

impl Point {
    /// A point without attributes.
    pub fn new(
        name: &'static str,
        unit: &'static str,
        description: &'static str,
        kind: Kind,
        value: f64,
    ) -> Self {
        Point {
            name,
            unit,
            description,
            kind,
            attributes: Vec::new(),
            value,
        }
    }

    /// The same point with one more attribute.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.attributes.push((key, value.into()));
        self
    }
}
