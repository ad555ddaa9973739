//! One commit's sync: fetched, read and checked from git's objects (never in the live checkout,
//! which stays at the last good commit), applied through the ops layer with its health gates and
//! automatic rollback, and remembered: a good commit becomes the checkout and the proxy's own
//! settings, a rolled-back one is never applied again.

use std::path::Path;
use std::time::Duration;

use super::super::{Proxy, agent_error};
use super::memory;
use super::{Status, now};
use crate::apply::{self, Events};
use crate::backend::kube::Cluster;
use crate::error::Error;
use crate::generations::{Snapshot, Who};
use crate::ops;
use crate::plan::{Plan, Selection, Summary};
use crate::stack::{Plane, Scope, Stack};

/// How one sync ended, as the status and the loop see it.
#[derive(Debug, Default)]
pub(super) struct Ended {
    /// `ok`, `refused`, `failed` or `rolled-back`.
    pub result: &'static str,
    pub summary: Option<Summary>,
    pub error: Option<String>,
    pub problems: Vec<String>,
    pub generation: Option<u64>,
    pub restored: Option<u64>,
}

impl Ended {
    fn refused(summary: Option<Summary>, error: &Error) -> Self {
        let problems = match error {
            Error::Invalid { file, problems } => {
                problems.iter().map(|p| p.one_line(file)).collect()
            }
            _ => Vec::new(),
        };
        Ended {
            result: "refused",
            summary,
            error: Some(error.report()),
            problems,
            ..Ended::default()
        }
    }

    fn failed(summary: Option<Summary>, error: &Error) -> Self {
        Ended {
            result: "failed",
            summary,
            error: Some(error.report()),
            ..Ended::default()
        }
    }
}

/// Sync `commit` and say how it ended. A `refused` or `rolled-back` commit leaves the slot (only a
/// new push can change it); a `failed` one stays, to be tried again.
pub(super) async fn sync_one(
    proxy: &Proxy,
    stack_file: &Path,
    commit: &str,
    failures: u32,
    was_sealed: bool,
) -> Ended {
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
    match ended.result {
        "ok" => tracing::info!(
            commit,
            generation = ended.generation,
            "sync applied: {}",
            summary_text(ended.summary.as_ref())
        ),
        "failed" => tracing::error!(
            commit,
            "sync failed (attempt {}): {}",
            failures + 1,
            ended.error.as_deref().unwrap_or_default()
        ),
        // Said once: the store stays sealed until a person unseals it, and each look again would
        // only repeat it.
        "sealed" if was_sealed => {}
        "sealed" => tracing::warn!(
            commit,
            "sync waits: {}",
            ended.error.as_deref().unwrap_or_default()
        ),
        other => tracing::warn!(
            commit,
            "sync {other}: {}",
            ended.error.as_deref().unwrap_or_default()
        ),
    }
    for p in &ended.problems {
        tracing::warn!(commit, "{p}");
    }
    if !matches!(ended.result, "failed" | "sealed")
        && let Err(e) = proxy.pending.clear_if(commit).await
    {
        tracing::error!("cannot clear the pending sync: {e}");
    }
    ended
}

fn summary_text(s: Option<&Summary>) -> String {
    s.map_or_else(String::new, |s| {
        format!(
            "{} added, {} changed, {} destroyed",
            s.add, s.change, s.destroy
        )
    })
}

async fn sync_commit(proxy: &Proxy, stack_file: &Path, commit: &str) -> Ended {
    if commit.len() < 7 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        let e = Error::Git {
            rev: commit.into(),
            message: "not a commit id".into(),
        };
        return Ended::refused(None, &e);
    }
    if memory::was_rolled_back(&proxy.state_dir, commit) {
        let e = agent_error(format!(
            "commit {commit} was rolled back before: it is not applied again; push a fix"
        ));
        return Ended::refused(None, &e);
    }
    let dir = proxy.repo_dir.clone();
    let branch = proxy.branch.clone();
    let path = dir.join(stack_file);
    let (c, p) = (commit.to_string(), path.clone());
    let ssh = proxy.git_ssh.clone();
    let read = tokio::task::spawn_blocking(move || {
        crate::git::fetch_with(&dir, "origin", &branch, ssh.as_deref())?;
        crate::git::committed(&p, &c)
    })
    .await
    .unwrap_or_else(|e| Err(agent_error(format!("reading the commit stopped: {e}"))));
    let committed = match read {
        Ok(Some(c)) => c,
        Ok(None) => {
            let e = agent_error(format!("commit {commit} has no `{}`", stack_file.display()));
            return Ended::refused(None, &e);
        }
        Err(e) => return Ended::failed(None, &e),
    };
    // Checked before anything is touched: an invalid commit is refused with every problem.
    let (stack, _) = match committed.parse() {
        Ok(parsed) => parsed,
        Err(e) => return Ended::refused(None, &e),
    };
    let snapshot = Snapshot {
        path,
        stack_toml: committed.text.clone(),
        templates: committed.templates.clone(),
    };
    // The manager the stack names is the one the sync reaches.
    let user = stack.host.scope == Scope::User;
    // One writer at a time: a person's `labctl apply` and this sync wait for each other.
    let request = ApplyOf {
        snapshot: snapshot.clone(),
        user,
        command: format!("labctl agent proxy: sync {commit}"),
        commit: Some(committed.commit.clone()),
        rollback_on_failure: true,
        restores: None,
    }
    .request();
    let mut events = Logged {
        proxy,
        stack: &stack,
        commit,
        summary: None,
    };
    let applied = match ops::apply(&request, &mut events).await {
        Ok(a) => a,
        Err(e) => return ended_by(proxy, commit, events.summary, e),
    };
    let summary = applied
        .outcome
        .as_ref()
        .map_or_else(|| applied.planned.plan.summary(), |o| o.summary);
    // Another writer may have changed the lab meanwhile: planned again, it converges.
    if let Some(lost) = applied.lock_lost {
        return Ended::failed(Some(summary), &agent_error(lost));
    }
    crate::failpoint::hit("proxy.sync");
    remember(proxy, commit, &snapshot).await;
    Ended {
        result: "ok",
        summary: Some(summary),
        generation: applied.generation.map(|g| g.number),
        ..Ended::default()
    }
}

/// How a sync whose apply returned `error` ended.
fn ended_by(proxy: &Proxy, commit: &str, summary: Option<Summary>, error: Error) -> Ended {
    match &error {
        Error::RolledBack { restored, .. } | Error::RollbackFailed { restored, .. } => {
            // Whatever the rollback did, this commit broke the lab: never again by itself.
            if let Err(e) = memory::remember_rolled_back(&proxy.state_dir, commit) {
                tracing::error!("cannot remember the rolled-back commit: {}", e.report());
            }
            let rolled_back = matches!(error, Error::RolledBack { .. });
            Ended {
                result: if rolled_back { "rolled-back" } else { "failed" },
                summary,
                error: Some(error.report()),
                restored: rolled_back.then_some(*restored),
                ..Ended::default()
            }
        }
        // Unsealing is a person's job: the commit waits, quietly.
        Error::Sealed { .. } => Ended {
            result: "sealed",
            summary,
            error: Some(error.report()),
            ..Ended::default()
        },
        // The commit itself is wrong: trying it again cannot help.
        Error::Invalid { .. }
        | Error::Template { .. }
        | Error::Manifest { .. }
        | Error::Duplicate { .. }
        | Error::Refused { .. } => Ended::refused(summary, &error),
        _ => Ended::failed(summary, &error),
    }
}

/// A good sync: the live checkout moves to the commit, and the proxy's next start takes its own
/// settings from its stack.
async fn remember(proxy: &Proxy, commit: &str, snapshot: &Snapshot) {
    let (dir, c) = (proxy.repo_dir.clone(), commit.to_string());
    let checkout = tokio::task::spawn_blocking(move || crate::git::checkout_detached(&dir, &c))
        .await
        .unwrap_or_else(|e| Err(agent_error(e.to_string())));
    if let Err(e) = checkout {
        tracing::warn!(
            "applied, but the checkout stays where it was: {}",
            e.report()
        );
    }
    if let Err(e) = memory::remember_good(&proxy.state_dir, commit, snapshot) {
        tracing::error!("cannot record the applied commit: {}", e.report());
    }
}

/// Apply's progress, as log lines; the plan's summary, for the status; and, before a plan that
/// changes the proxy itself, its dead-man switch.
struct Logged<'a> {
    proxy: &'a Proxy,
    stack: &'a Stack,
    commit: &'a str,
    summary: Option<Summary>,
}

impl ops::Events for Logged<'_> {
    fn warning(&mut self, text: &str) {
        tracing::warn!("{text}");
    }
    fn planned(&mut self, plan: &Plan) {
        self.summary = Some(plan.summary());
    }
    fn before_changes<'a>(
        &'a mut self,
        plan: &'a Plan,
    ) -> futures_util::future::BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let sd = self.proxy.systemd().await?;
            let armed = super::super::rescue::arm(
                &self.proxy.state_dir,
                plan,
                self.stack,
                self.commit,
                &sd,
            )
            .await?;
            if armed {
                self.proxy
                    .restarting_itself
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        })
    }
}

impl Events for Logged<'_> {
    fn phase(&mut self, plane: Plane, what: &str) {
        tracing::info!(%plane, "{what}");
    }
    fn step(&mut self, plane: Plane, line: &str) {
        tracing::info!(%plane, "{line}");
    }
}

/// The proxy's dead-man switch fired while a previous proxy ran (the one a sync started did not
/// serve in time): remember the commit, apply the last good stack again so the rest of the lab
/// comes back too, and record the commit's generation as rolled back.
pub(super) async fn after_rescue(proxy: &Proxy, rescue: super::super::rescue::Rescue) -> Ended {
    let commit = rescue.commit.as_str();
    tracing::warn!(
        commit,
        armed = %rescue.armed,
        "the proxy this commit started did not serve in time: systemd put the previous one back"
    );
    if let Err(e) = memory::remember_rolled_back(&proxy.state_dir, commit) {
        tracing::error!("cannot remember the rolled-back commit: {}", e.report());
    }
    // Handled here: the slot does not hand it to the loop again.
    if let Err(e) = proxy.pending.clear_if(commit).await {
        tracing::error!("cannot clear the pending sync: {e}");
    }
    let failure = format!(
        "the proxy commit {commit} started did not serve within its confirmation time: \
         systemd put the previous proxy back"
    );
    // The generations of the proxy's own stack, where every apply of it was recorded.
    let user = proxy.stack.host.scope == Scope::User;
    let store = crate::generations::Store::of(&proxy.stack, proxy.stack.host.scope);
    let good = match store.last_good() {
        Ok(Some(g)) => g,
        Ok(None) => {
            let e = agent_error(format!(
                "{failure}; no good generation to roll the rest back to"
            ));
            return Ended::failed(None, &e);
        }
        Err(e) => return Ended::failed(None, &e),
    };
    let stack = match good.record.snapshot.load() {
        Ok((loaded, _)) => loaded.stack,
        Err(e) => return Ended::failed(None, &e),
    };
    let request = ApplyOf {
        snapshot: good.record.snapshot.clone(),
        user,
        command: format!("labctl agent proxy: roll back {commit}"),
        commit: good.record.commit.clone(),
        rollback_on_failure: false,
        restores: Some(good.number),
    }
    .request();
    let mut events = Logged {
        proxy,
        stack: &stack,
        commit,
        summary: None,
    };
    let back = ops::apply(&request, &mut events).await;
    let restored = Some(good.number);
    // The record is the failed commit's: its stack from git, when git still has it.
    let path = proxy.repo_dir.join(&proxy.stack_file);
    let (p, c) = (path.clone(), commit.to_string());
    let failed = tokio::task::spawn_blocking(move || crate::git::committed(&p, &c))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .map(|c| Snapshot {
            path,
            stack_toml: c.text,
            templates: c.templates,
        });
    let record = crate::generations::Record {
        commit: Some(commit.to_string()),
        who: Who::Proxy,
        summary: events.summary.unwrap_or_default(),
        result: crate::generations::Outcome::RolledBack,
        failure: Some(failure.clone()),
        restored,
        snapshot: failed.unwrap_or(good.record.snapshot),
    };
    if let Err(e) = store.record(record) {
        tracing::error!("cannot record the rolled-back generation: {}", e.report());
    }
    match back {
        Ok(_) => Ended {
            result: "rolled-back",
            error: Some(failure),
            restored,
            ..Ended::default()
        },
        Err(e) => Ended::failed(
            None,
            &agent_error(format!(
                "{failure}; rolling the rest back failed: {}",
                e.report()
            )),
        ),
    }
}

/// What differs between the proxy's whole-stack applies: a sync and the roll-back after a rescue.
struct ApplyOf {
    snapshot: Snapshot,
    user: bool,
    command: String,
    commit: Option<String>,
    rollback_on_failure: bool,
    restores: Option<u64>,
}

impl ApplyOf {
    fn request(self) -> ops::ApplyRequest {
        ops::ApplyRequest {
            plan: ops::PlanRequest {
                stack: ops::StackSource::Read(Box::new(self.snapshot)),
                plane: None,
                against: ops::live(Cluster::default(), self.user, false, false),
                selection: Selection::default(),
                prune_volumes: false,
            },
            options: apply::Options::default(),
            lock: ops::LockRequest {
                command: self.command,
                wait: Duration::from_secs(600),
                lease: crate::lock::DEFAULT_LEASE,
            },
            saved: None,
            confirm: false,
            who: Who::Proxy,
            commit: self.commit,
            rollback_on_failure: self.rollback_on_failure,
            restores: self.restores,
        }
    }
}
