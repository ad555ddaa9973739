//! Backends observe and change the outside world; they decide nothing. Each plane has one, and
//! each is the only importer of its client crate (`kube` for the cluster, `zbus` for systemd,
//! `reqwest` for OpenBao); [`ssh`] carries the systemd backend (and the host lock) to other
//! machines.

pub mod kube;
pub mod openbao;
pub mod ssh;
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
    /// The `-v` line, as `kube: 12 API requests in 85 ms`.
    pub fn line(&self, plane: &str, what: &str) -> String {
        format!(
            "{plane}: {} {what} in {} ms",
            self.calls,
            self.elapsed.as_millis()
        )
    }

    /// What was spent since `before`.
    pub fn since(&self, before: Stats) -> Stats {
        Stats {
            calls: self.calls - before.calls,
            elapsed: self.elapsed.saturating_sub(before.elapsed),
        }
    }
}
