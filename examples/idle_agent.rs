//! An idle agent on the shared runtime (`labctl::agent::runtime`), for measuring what the runtime
//! and its telemetry cost while an agent waits (benches/telemetry.sh): it says READY, records a
//! few metric points and logs a line every second, and stops on SIGTERM.
//!
//! `idle_agent [OTLP-ENDPOINT]`

use std::process::ExitCode;
use std::time::Duration;

use labctl::metric::{Kind, Point};

fn main() -> ExitCode {
    let endpoint = std::env::args().nth(1);
    labctl::agent::runtime::start("idle", endpoint.as_deref(), |shutdown| async move {
        shutdown.ready();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks = 0.0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    ticks += 1.0;
                    labctl::telemetry::record(&[
                        Point::new("idle.ticks", "{tick}", "ticks so far", Kind::Counter, ticks),
                        Point::new("idle.load", "1", "a gauge", Kind::Gauge, 0.5).with("cpu", "0"),
                    ]);
                    tracing::info!(ticks, "tick");
                }
            }
        }
    })
}
