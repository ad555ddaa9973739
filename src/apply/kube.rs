//! Applying the kube part of a plan: gates first (replacements, unset secrets), then deletions in
//! reverse dependency order, then server-side applies in dependency order, then rollout waits.
//! Apply ops and wait ops are separate (as in kapp): [`apply`] returns the workloads to wait for,
//! [`wait`] waits for them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::backend::kube::Kube;
use crate::error::Error;
use crate::plan::kube::{
    Rollout, apply_rank, comparable, holds_data, is_workload, kinds_to_observe, live_set, rollout,
    selector, unset_secrets,
};
use crate::plan::{Action, Change, Live, Plan};
use crate::render::SECRET_NAMES;
use crate::resource::{Content, Desired, ResourceId};
use crate::telemetry::ChangeSpans;

/// What apply may do beyond updating in place.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Take ownership of fields another field manager owns (`--force-conflicts`).
    pub force_conflicts: bool,
    /// Delete and re-create objects whose immutable fields change (`--allow-replace`).
    pub allow_replace: bool,
}

/// Observe the cluster for a plan: the stack's objects of every kind it may own, projected for
/// comparison. With `server_dry_run`, each owned object that differs locally is confirmed by a
/// dry-run apply, and counts as unchanged when the server would store what is live.
///
/// # Errors
/// [`Error::Backend`] naming the request that failed.
pub async fn observe(
    kube: &Kube,
    stack: &str,
    desired: &Desired,
    server_dry_run: bool,
) -> Result<Live, Error> {
    let kinds = kinds_to_observe(desired);
    let ids: Vec<ResourceId> = desired
        .objects
        .keys()
        .filter(|id| matches!(id, ResourceId::Kube { .. }))
        .cloned()
        .collect();
    let observed = kube.observe(&selector(stack), &kinds, &ids).await?;
    let mut live = live_set(&observed.objects, desired, stack);
    if server_dry_run {
        for (id, want) in &desired.objects {
            let (Some(have), Some(obj)) = (live.objects.get_mut(id), want.content.as_kube()) else {
                continue;
            };
            if have.content == want.content || !have.owned {
                continue;
            }
            // A dry run that fails (a conflict, say) confirms nothing: the local diff stands,
            // and apply reports the failure.
            if let Ok(result) = kube.apply(id, obj, false, true).await
                && Content::kube(comparable(&result, Some(obj))) == have.content
            {
                have.content = want.content.clone();
            }
        }
    }
    Ok(live)
}

fn kube_changes(plan: &Plan) -> impl Iterator<Item = &Change> {
    plan.actionable()
        .filter(|c| matches!(c.id, ResourceId::Kube { .. }))
}

/// Refuse, before anything is sent, a plan that replaces without `--allow-replace`, replaces a
/// PersistentVolumeClaim, or applies an object holding a secret nobody set.
///
/// # Errors
/// [`Error::Usage`] naming every object (and secret) concerned.
pub fn check(plan: &Plan, desired: &Desired, opts: Options) -> Result<(), Error> {
    let replaced: Vec<&Change> = kube_changes(plan)
        .filter(|c| c.action == Action::Replace)
        .collect();
    let volumes: Vec<String> = replaced
        .iter()
        .filter(|c| holds_data(&c.id))
        .map(|c| format!("`{}`", c.id))
        .collect();
    if !volumes.is_empty() {
        return Err(Error::Usage(format!(
            "refusing to replace {}: a PersistentVolumeClaim is never replaced (its data would be lost); \
             change its immutable fields back, or move the data and delete the claim by hand",
            volumes.join(", ")
        )));
    }
    if !replaced.is_empty() && !opts.allow_replace {
        let names: Vec<String> = replaced
            .iter()
            .map(|c| {
                let why = c.notes.last().cloned().unwrap_or_default();
                format!("`{}` ({why})", c.id)
            })
            .collect();
        return Err(Error::Usage(format!(
            "refusing to replace {}: it is deleted and created again; pass `--allow-replace` to do so",
            names.join(", ")
        )));
    }
    let mut unset = Vec::new();
    for c in kube_changes(plan).filter(|c| c.action != Action::Delete) {
        if let Some(obj) = desired.objects.get(&c.id).and_then(|o| o.content.as_kube()) {
            for s in unset_secrets(obj, SECRET_NAMES) {
                unset.push(format!("`{s}` (in `{}`)", c.id));
            }
        }
    }
    if !unset.is_empty() {
        return Err(Error::Usage(format!(
            "refusing to apply: secret {} is not set; set `LABCTL_SECRET_<NAME>` (as `LABCTL_SECRET_POSTGRES_PASSWORD`)",
            unset.join(", ")
        )));
    }
    Ok(())
}

fn rank(c: &Change) -> u8 {
    apply_rank(c.id.kind().unwrap_or_default())
}

/// Run the kube changes of `plan`: deletions (reverse order), then replacements and applies in
/// dependency order. Reports one line per object through `report`. Returns the workloads whose
/// rollout to wait for.
///
/// # Errors
/// The first failing request, as [`Error::Backend`] naming the step; later changes are not
/// attempted (they may depend on the failed one).
pub async fn apply(
    plan: &Plan,
    desired: &Desired,
    kube: &Kube,
    opts: Options,
    report: &mut dyn FnMut(String),
) -> Result<Vec<ResourceId>, Error> {
    let mut spans = ChangeSpans::of(plan, |id| matches!(id, ResourceId::Kube { .. }));
    let result = apply_each(plan, desired, kube, opts, report, &mut spans).await;
    spans.finish(&result);
    result
}

async fn apply_each(
    plan: &Plan,
    desired: &Desired,
    kube: &Kube,
    opts: Options,
    report: &mut dyn FnMut(String),
    spans: &mut ChangeSpans,
) -> Result<Vec<ResourceId>, Error> {
    let mut deletes: Vec<&Change> = kube_changes(plan)
        .filter(|c| c.action == Action::Delete)
        .collect();
    deletes.sort_by_key(|c| std::cmp::Reverse(rank(c)));
    for c in deletes {
        spans.begin(&c.id.to_string());
        kube.delete(&c.id).await?;
        spans.ok(&c.id.to_string());
        report(format!("{}: deleted", c.id));
    }
    let mut writes: Vec<&Change> = kube_changes(plan)
        .filter(|c| c.action != Action::Delete)
        .collect();
    writes.sort_by_key(|c| rank(c));
    let mut workloads = Vec::new();
    for c in writes {
        let Some(obj) = desired.objects.get(&c.id).and_then(|o| o.content.as_kube()) else {
            continue;
        };
        spans.begin(&c.id.to_string());
        // A custom resource whose definition this run just applied: learn its kind once the
        // server serves it (a new definition takes a moment to be established).
        if let ResourceId::Kube {
            kind, api_version, ..
        } = &c.id
        {
            for _ in 0..20 {
                if kube.resource(api_version, kind).is_some() {
                    break;
                }
                kube.rediscover().await?;
                if kube.resource(api_version, kind).is_none() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let verb = match c.action {
            Action::Replace => {
                kube.delete(&c.id).await?;
                kube.wait_gone(&c.id, Duration::from_secs(120)).await?;
                kube.apply(&c.id, obj, opts.force_conflicts, false).await?;
                "replaced"
            }
            // Adopting is consenting to take over what another tool set.
            Action::Adopt => {
                kube.apply(&c.id, obj, true, false).await?;
                "adopted"
            }
            Action::Create => {
                kube.apply(&c.id, obj, opts.force_conflicts, false).await?;
                "created"
            }
            _ => {
                kube.apply(&c.id, obj, opts.force_conflicts, false).await?;
                "updated"
            }
        };
        spans.ok(&c.id.to_string());
        report(format!("{}: {verb}", c.id));
        if c.id.kind().is_some_and(is_workload) {
            workloads.push(c.id.clone());
        }
    }
    Ok(workloads)
}

/// Wait until every workload has rolled out (see [`rollout`]), polling its status: one bar per
/// workload on a terminal, a line per finished workload otherwise.
///
/// # Errors
/// [`Error::Backend`] (step `wait <workload>`) naming the first workload not rolled out after
/// `timeout`, or that failed, with its unready condition.
pub async fn wait(
    kube: &Kube,
    workloads: &[ResourceId],
    timeout: Duration,
    tty: bool,
    report: &mut dyn FnMut(String),
) -> Result<(), Error> {
    if workloads.is_empty() {
        return Ok(());
    }
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix}: {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut pending: BTreeMap<ResourceId, (Option<ProgressBar>, String)> = workloads
        .iter()
        .map(|id| {
            let bar = tty.then(|| {
                let b = multi.add(ProgressBar::new_spinner());
                b.set_style(style.clone());
                b.set_prefix(id.to_string());
                b.enable_steady_tick(Duration::from_millis(120));
                b
            });
            (id.clone(), (bar, "not observed yet".to_string()))
        })
        .collect();
    report(format!(
        "waiting on {} workload rollout(s) [0/{}]",
        workloads.len(),
        workloads.len()
    ));
    let started = Instant::now();
    let poll = Duration::from_millis(250);
    loop {
        let ids: Vec<ResourceId> = pending.keys().cloned().collect();
        for id in ids {
            let state = match kube.get(&id).await? {
                Some(obj) => rollout(&obj),
                None => Rollout::Progressing {
                    progress: "not found".into(),
                    condition: "the object does not exist".into(),
                },
            };
            match state {
                Rollout::Complete => {
                    if let Some((Some(bar), _)) = pending.get(&id) {
                        bar.finish_and_clear();
                    }
                    pending.remove(&id);
                    report(format!(
                        "{id}: rolled out [{}/{}]",
                        workloads.len() - pending.len(),
                        workloads.len()
                    ));
                }
                Rollout::Failed(why) => {
                    clear(&pending);
                    return Err(Error::Backend {
                        plane: "kube",
                        step: format!("wait {id}"),
                        message: format!("rollout failed: {why}"),
                    });
                }
                Rollout::Progressing {
                    progress,
                    condition,
                } => {
                    if let Some((bar, last)) = pending.get_mut(&id) {
                        if let Some(b) = bar {
                            b.set_message(progress);
                        }
                        *last = condition;
                    }
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            clear(&pending);
            let (id, (_, condition)) = pending.iter().next().expect("pending is not empty");
            let others = pending.len() - 1;
            return Err(Error::Backend {
                plane: "kube",
                step: format!("wait {id}"),
                message: format!(
                    "not rolled out after {}: {condition}{}",
                    human(timeout),
                    if others > 0 {
                        format!(" (and {others} more workload(s) not rolled out)")
                    } else {
                        String::new()
                    }
                ),
            });
        }
        tokio::time::sleep(poll.min(timeout.saturating_sub(started.elapsed()))).await;
    }
}

fn clear(pending: &BTreeMap<ResourceId, (Option<ProgressBar>, String)>) {
    for (bar, _) in pending.values() {
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if d.subsec_millis() == 0 {
        format!("{s}s")
    } else {
        format!("{} ms", d.as_millis())
    }
}
