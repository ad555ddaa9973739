//! The GitOps sync: the commit waiting in the [`pending`](super::pending) slot is fetched,
//! checked out exactly, planned and applied through the library, one sync at a time. A push wakes
//! it; so does the start, so a sync cut off by a kill is redone from the slot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tracing::Instrument;

use super::Proxy;
use crate::agent::runtime::{MAX_BACKOFF, Shutdown, backoff};
use crate::apply::{self, Events};
use crate::backend::kube::Cluster;
use crate::error::Error;
use crate::ops;
use crate::plan::{Selection, Summary};
use crate::stack::{Plane, Scope};

/// The file in the state folder naming the last commit applied.
const LAST_APPLIED: &str = "last-applied";

/// What `GET /sync/status` shows: the latest sync since the process started.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Status {
    /// The commit synced.
    pub commit: Option<String>,
    /// When it started, RFC 3339 UTC.
    pub started: Option<String>,
    /// When it finished, RFC 3339 UTC.
    pub finished: Option<String>,
    /// `ok`, `failed`, `refused`, `sealed` (the secret store is sealed: tried again after a
    /// push or every minute, quietly), `running`, or `interrupted` (by the stop); `null` before
    /// the first sync.
    pub result: Option<&'static str>,
    /// The plan's summary.
    pub summary: Option<Summary>,
    /// Why it failed or was refused.
    pub error: Option<String>,
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
        let sync = sync_one(&proxy, &stack_file, &pending.commit, failures, was_sealed)
            .instrument(span.clone());
        let stopped = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        let started = Instant::now();
        let (result, summary, error) = tokio::select! {
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
            s.summary = summary;
            s.error = error;
            s.next_attempt = next.map(|wait| {
                humantime::format_rfc3339_seconds(SystemTime::now() + wait).to_string()
            });
        });
        last = Some(attempt);
    }
}

/// How one sync ended, before it goes into the status.
enum Ended {
    Ok(Summary),
    Refused(Summary, Error),
    Failed(Option<Summary>, Error),
    Sealed(Error),
}

/// Sync `commit`: how it ended (`ok`, `refused` or `failed`: the commit then stays in the slot,
/// to be tried again), with the plan's summary and the error.
async fn sync_one(
    proxy: &Proxy,
    stack_file: &Path,
    commit: &str,
    failures: u32,
    was_sealed: bool,
) -> (&'static str, Option<Summary>, Option<String>) {
    tracing::info!(commit, "sync started");
    proxy.sync.set(|s| {
        *s = Status {
            commit: Some(commit.to_string()),
            started: Some(now()),
            result: Some("running"),
            ..Status::default()
        };
    });
    let ended = sync_commit(proxy, stack_file, commit).await;
    match ended {
        Ended::Ok(s) => {
            tracing::info!(
                commit,
                add = s.add,
                change = s.change,
                destroy = s.destroy,
                "sync applied"
            );
            if let Err(e) = crate::atomic::write(
                &proxy.state_dir.join(LAST_APPLIED),
                format!("{commit}\n").as_bytes(),
                crate::atomic::Access::Private,
            ) {
                tracing::error!("cannot record the applied commit: {e}");
            }
            if let Err(e) = proxy.pending.clear_if(commit).await {
                tracing::error!("cannot clear the pending sync: {e}");
            }
            ("ok", Some(s), None)
        }
        Ended::Refused(s, e) => {
            let e = e.report();
            tracing::warn!(commit, "sync refused: {e}");
            // Refused again on every retry: only a new push can change that.
            if let Err(e) = proxy.pending.clear_if(commit).await {
                tracing::error!("cannot clear the pending sync: {e}");
            }
            ("refused", Some(s), Some(e))
        }
        Ended::Failed(s, e) => {
            let e = e.report();
            tracing::error!(commit, "sync failed (attempt {}): {e}", failures + 1);
            ("failed", s, Some(e))
        }
        // Said once: the store stays sealed until a person unseals it, and each look again
        // would only repeat it.
        Ended::Sealed(e) => {
            let e = e.report();
            if !was_sealed {
                tracing::warn!(commit, "sync waits: {e}");
            }
            ("sealed", None, Some(e))
        }
    }
}

async fn sync_commit(proxy: &Proxy, stack_file: &Path, commit: &str) -> Ended {
    if commit.len() < 7 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ended::Failed(
            None,
            Error::Git {
                rev: commit.into(),
                message: "not a commit id".into(),
            },
        );
    }
    let dir = proxy.repo_dir.clone();
    let branch = proxy.branch.clone();
    let c = commit.to_string();
    let ssh = proxy.git_ssh.clone();
    let git = tokio::task::spawn_blocking(move || {
        crate::git::fetch_with(&dir, "origin", &branch, ssh.as_deref())?;
        crate::git::checkout_detached(&dir, &c)
    })
    .await;
    match git {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Ended::Failed(None, e),
        Err(e) => return Ended::Failed(None, super::agent_error(e.to_string())),
    }
    let loaded = match crate::stack::load(&proxy.repo_dir.join(stack_file)) {
        Ok(l) => l,
        Err(e) => return Ended::Failed(None, e),
    };
    let templates = match crate::render::Templates::for_stack_dir(loaded.dir()) {
        Ok(t) => t,
        Err(e) => return Ended::Failed(None, e),
    };
    // The manager the stack names is the one the sync reaches.
    let user = loaded.stack.host.scope == Scope::User;
    let request = ops::ApplyRequest {
        plan: ops::PlanRequest {
            stack: ops::StackSource::Read(Box::new((loaded, templates))),
            plane: None,
            against: ops::live(Cluster::default(), user, false, false),
            selection: Selection::default(),
            prune_volumes: false,
        },
        options: apply::Options::default(),
        // One writer at a time: a person's `labctl apply` and this sync wait for each other.
        lock: ops::LockRequest {
            command: format!("labctl agent proxy: sync {commit}"),
            wait: Duration::from_secs(600),
            lease: crate::lock::DEFAULT_LEASE,
        },
        saved: None,
        confirm: false,
    };
    let mut events = Logged::default();
    match ops::apply(&request, &mut events).await {
        // Another writer may have changed the lab meanwhile: planned again, it converges.
        Ok(applied) if applied.lock_lost.is_some() => Ended::Failed(
            Some(applied.planned.plan.summary()),
            super::agent_error(applied.lock_lost.unwrap_or_default()),
        ),
        Ok(applied) => Ended::Ok(
            applied
                .outcome
                .map_or_else(|| applied.planned.plan.summary(), |o| o.summary),
        ),
        // A refusal the plan noted stays until a new push lifts it; so does an invalid stack.
        Err(e @ Error::Refused { .. }) => Ended::Refused(events.summary.unwrap_or_default(), e),
        Err(e @ Error::Sealed { .. }) => Ended::Sealed(e),
        Err(e) => Ended::Failed(events.summary, e),
    }
}

/// Apply's progress, as log lines; the plan's summary, for the status.
#[derive(Default)]
struct Logged {
    summary: Option<Summary>,
}

impl ops::Events for Logged {
    fn warning(&mut self, text: &str) {
        tracing::warn!("{text}");
    }
    fn planned(&mut self, plan: &crate::plan::Plan) {
        self.summary = Some(plan.summary());
    }
}

impl Events for Logged {
    fn phase(&mut self, plane: Plane, what: &str) {
        tracing::info!(%plane, "{what}");
    }
    fn step(&mut self, plane: Plane, line: &str) {
        tracing::info!(%plane, "{line}");
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
