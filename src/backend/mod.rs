//! Backends observe and change the outside world; they decide nothing. Each plane has one, and
//! each is the only importer of its client crate (`zbus` for systemd).

pub mod systemd;

use std::time::Duration;

/// What a backend cost: requests sent and wall time spent in them, for `-v`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests (D-Bus method calls, HTTP requests) sent.
    pub calls: u64,
    /// Wall time spent inside the backend.
    pub elapsed: Duration,
}

impl Stats {
    /// The `-v` line, as `systemd: 14 D-Bus calls in 20 ms`.
    pub fn line(&self, plane: &str, what: &str) -> String {
        format!(
            "{plane}: {} {what} in {} ms",
            self.calls,
            self.elapsed.as_millis()
        )
    }
}
