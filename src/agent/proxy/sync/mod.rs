//! The GitOps sync: the commit waiting in the [`pending`](super::pending) slot is fetched, read
//! and checked from git's objects (the live checkout is not touched), planned and applied through
//! the ops layer with its health gates and automatic rollback, one sync at a time. A push wakes
//! it; so does the start, so a sync cut off by a kill is redone from the slot.
//!
//! [`commit`] syncs one commit; [`memory`] is what the sync remembers across restarts (the
//! commits it rolled back, the last good stack).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tracing::Instrument;

mod commit;
pub mod memory;

use super::Proxy;
use crate::agent::runtime::{MAX_BACKOFF, Shutdown, backoff};
use crate::plan::Summary;

/// What `GET /sync/status` shows: the latest sync since the process started.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Status {
    /// The commit synced.
    pub commit: Option<String>,
    /// When it started, RFC 3339 UTC.
    pub started: Option<String>,
    /// When it finished, RFC 3339 UTC.
    pub finished: Option<String>,
    /// `ok`, `failed`, `refused` (never tried again: an invalid stack, a refusal, a commit
    /// rolled back before), `rolled-back` (the last good generation runs again), `sealed` (the
    /// secret store is sealed: tried again after a push or every minute, quietly), `running`, or
    /// `interrupted` (by the stop); `null` before the first sync.
    pub result: Option<&'static str>,
    /// The plan's summary.
    pub summary: Option<Summary>,
    /// Why it failed, was refused or rolled back.
    pub error: Option<String>,
    /// Every problem of an invalid stack, each at its `file:line:col`.
    pub problems: Vec<String>,
    /// The generation the sync recorded.
    pub generation: Option<u64>,
    /// The generation a rollback put back.
    pub restored: Option<u64>,
    /// After a failure: when the commit waiting is tried again by itself, RFC 3339 UTC (a newer
    /// push is tried sooner).
    pub next_attempt: Option<String>,
}

/// The sync's shared half: the wake-up and the status.
#[derive(Debug, Default)]
pub struct Sync {
    wake: tokio::sync::Notify,
    status: std::sync::Mutex<Status>,
}

impl Sync {
    /// Ask for a sync of what waits in the slot.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The latest sync's status.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// How soon after a failed sync a newer push is synced: soon, since it may be the fix, but not in
/// a tight loop of fetches while pushes keep coming and the origin stays unreachable.
const NEWER_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// How often a sync that found the secret store sealed looks again: unsealing is a person's
/// job, so a slow, steady look rather than the failure backoff's burst of retries.
const SEALED_RECHECK: Duration = Duration::from_secs(60);

/// The last sync this process ran.
#[derive(Debug, Clone)]
struct Attempt {
    commit: String,
    /// Failed syncs in a row, this one included (0: it applied or was refused).
    failures: u32,
    /// It found the secret store sealed.
    sealed: bool,
    finished: Instant,
}

/// When the sync of `waiting` may start, after `last`: at once after a success, never again for
/// the commit just applied or refused (only a new push changes that), and after a failure the
/// same commit again on the runtime's backoff (1 s, 2 s, 4 s, … 5 min), a newer one after
/// [`NEWER_AFTER_FAILURE`].
fn next_start(last: Option<&Attempt>, waiting: &str, now: Instant) -> Option<Instant> {
    let Some(last) = last else {
        return Some(now);
    };
    if last.sealed {
        return Some(if last.commit == waiting {
            last.finished + SEALED_RECHECK
        } else {
            last.finished + NEWER_AFTER_FAILURE
        });
    }
    match (last.failures, last.commit == waiting) {
        (0, true) => None,
        (0, false) => Some(now),
        (n, true) => Some(last.finished + backoff(n - 1, MAX_BACKOFF)),
        (_, false) => Some(last.finished + NEWER_AFTER_FAILURE),
    }
}

/// Sync until `shutdown`: wait for a push (or a failed sync's retry time), sync the slot's
/// commit, repeat. A sync under way when the stop comes gets `grace` to finish; past that it is
/// dropped where it is (the commit stays in the slot, and the next start syncs it again), so the
/// process still stops within the runtime's deadline.
pub async fn run(proxy: Arc<Proxy>, stack_file: PathBuf, grace: Duration, shutdown: Shutdown) {
    super::metrics::sync_started();
    let mut last: Option<Attempt> = None;
    // A dead-man switch that fired put this proxy back: finish that rollback first.
    if let Some(rescue) = super::rescue::rescued(&proxy.state_dir) {
        let commit = rescue.commit.clone();
        let started = Instant::now();
        let ended = commit::after_rescue(&proxy, rescue).await;
        super::metrics::sync_ended(&commit, ended.result, started.elapsed());
        proxy.sync.set(|s| {
            *s = Status {
                commit: Some(commit),
                finished: Some(now()),
                result: Some(ended.result),
                error: ended.error,
                restored: ended.restored,
                ..Status::default()
            };
        });
    }
    loop {
        // At start this finds a commit left in the slot by a kill, and syncs it again.
        let due = proxy
            .pending
            .read()
            .and_then(|p| next_start(last.as_ref(), &p.commit, Instant::now()));
        let wait_due = async {
            match due {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // Once the stop came, no new sync starts, even one already due.
            biased;
            () = shutdown.cancelled() => return,
            // A push: look again at what waits and when it may start.
            () = proxy.sync.wake.notified() => continue,
            () = wait_due => {}
        }
        let Some(pending) = proxy.pending.read() else {
            continue;
        };
        if next_start(last.as_ref(), &pending.commit, Instant::now())
            .is_none_or(|t| t > Instant::now())
        {
            continue;
        }
        let span = tracing::info_span!(
            "proxy sync",
            labctl.commit = %pending.commit,
            labctl.result = tracing::field::Empty
        );
        // Failures in a row of this commit: a newer one starts its own count.
        let failures = last
            .as_ref()
            .filter(|l| l.commit == pending.commit)
            .map_or(0, |l| l.failures);
        let was_sealed = last.as_ref().is_some_and(|l| l.sealed);
        let sync = commit::sync_one(&proxy, &stack_file, &pending.commit, failures, was_sealed)
            .instrument(span.clone());
        let stopped = async {
            shutdown.cancelled().await;
            // This sync restarts the proxy itself: the new one redoes the commit from the slot.
            if !proxy
                .restarting_itself
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                tokio::time::sleep(grace).await;
            }
        };
        let started = Instant::now();
        let ended = tokio::select! {
            ended = sync => ended,
            () = stopped => {
                let why = format!(
                    "stopped: the sync did not finish within {} of the stop signal; the \
                     commit stays queued and the next start syncs it again",
                    humantime::format_duration(grace)
                );
                tracing::warn!(parent: &span, commit = %pending.commit, "{why}");
                span.record("labctl.result", "interrupted");
                super::metrics::sync_ended(&pending.commit, "interrupted", started.elapsed());
                proxy.sync.set(|s| {
                    s.finished = Some(now());
                    s.result = Some("interrupted");
                    s.error = Some(why);
                    s.next_attempt = None;
                });
                return;
            }
        };
        let result = ended.result;
        span.record("labctl.result", result);
        super::metrics::sync_ended(&pending.commit, result, started.elapsed());
        let failed = result == "failed";
        let sealed = result == "sealed";
        let attempt = Attempt {
            commit: pending.commit,
            failures: if failed { failures + 1 } else { 0 },
            sealed,
            finished: Instant::now(),
        };
        // After a failure: what waits now (the same commit, or a newer push) and when it is
        // tried.
        let next = proxy
            .pending
            .read()
            .filter(|_| failed || sealed)
            .and_then(|p| {
                Some(next_start(Some(&attempt), &p.commit, attempt.finished)? - attempt.finished)
            });
        if let Some(wait) = next.filter(|_| !(sealed && was_sealed)) {
            tracing::info!(
                parent: &span,
                "next sync attempt in {}",
                humantime::format_duration(wait)
            );
        }
        proxy.sync.set(|s| {
            s.finished = Some(now());
            s.result = Some(result);
            s.summary = ended.summary;
            s.error = ended.error;
            s.problems = ended.problems;
            s.generation = ended.generation;
            s.restored = ended.restored;
            s.next_attempt = next.map(|wait| {
                humantime::format_rfc3339_seconds(SystemTime::now() + wait).to_string()
            });
        });
        last = Some(attempt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_syncs_are_retried_on_a_backoff_and_newer_pushes_soon() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(next_start(None, "a", t0), Some(t0));
        let ok = Attempt {
            commit: "a".into(),
            failures: 0,
            sealed: false,
            finished: t0,
        };
        // Applied (or refused): not again, but a newer push at once.
        assert_eq!(next_start(Some(&ok), "a", t0 + s(9)), None);
        assert_eq!(next_start(Some(&ok), "b", t0 + s(9)), Some(t0 + s(9)));
        let failed = |failures| Attempt {
            failures,
            ..ok.clone()
        };
        assert_eq!(next_start(Some(&failed(1)), "a", t0), Some(t0 + s(1)));
        assert_eq!(next_start(Some(&failed(3)), "a", t0), Some(t0 + s(4)));
        assert_eq!(
            next_start(Some(&failed(30)), "a", t0),
            Some(t0 + MAX_BACKOFF)
        );
        assert_eq!(
            next_start(Some(&failed(30)), "b", t0),
            Some(t0 + NEWER_AFTER_FAILURE)
        );
        // Sealed: a slow, steady look again whatever the count; a new push soon.
        let sealed = Attempt {
            sealed: true,
            failures: 0,
            ..ok.clone()
        };
        assert_eq!(
            next_start(Some(&sealed), "a", t0),
            Some(t0 + SEALED_RECHECK)
        );
        assert_eq!(
            next_start(Some(&sealed), "b", t0),
            Some(t0 + NEWER_AFTER_FAILURE)
        );
    }
}
