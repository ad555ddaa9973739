//! The points agents record ([`record`]), kept as the latest value of each series and exported at
//! every interval; and the count of what the bounded queues dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter};

use super::*;
use crate::metric::{Kind, Point};

/// The latest value of every series agents recorded, read by observable instruments at each
/// metrics export.
pub(super) struct Metrics {
    pub(super) meter: Meter,
    /// name → attributes → value. Never locked while calling into the SDK.
    pub(super) values: Arc<Mutex<Series>>,
    /// One observable instrument per metric name, kept alive here.
    pub(super) instruments: Mutex<HashMap<&'static str, Box<dyn std::any::Any + Send + Sync>>>,
    /// What the exporters dropped, exported as [`DROPPED`].
    pub(super) health: Arc<Health>,
}

/// The metric counting what this process's telemetry dropped, by `signal`.
pub const DROPPED: &str = "labctl.telemetry.dropped";

impl Metrics {
    /// Export the drop counts at every metrics export: read at that moment, not recorded.
    pub(super) fn observe_drops(&self) {
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
pub(super) fn dropped_points(counts: &[u64; 3]) -> Vec<Point> {
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

pub(super) type Series = HashMap<&'static str, HashMap<Vec<(&'static str, String)>, f64>>;

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

pub(super) fn record_points(points: &[Point], replace: bool) {
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
