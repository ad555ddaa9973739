//! Applying the kube part of a plan: deletions in reverse dependency order, then server-side
//! applies in dependency order, then rollout waits. Within one ordering tier the changes run
//! concurrently (at most [`Options::concurrency`] at once), and a failure stops nothing but
//! the changes that depend on it (see [`crate::plan::kube::depends_on`]): every other change is
//! made, and every failure is reported at the end. Apply ops and wait ops are separate (as in
//! kapp): [`apply`] returns the workloads to wait for, [`wait`] waits for them. The objects
//! applied are the plan's own `after` contents: apply re-renders and re-diffs nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tracing::Instrument as _;

use super::{Events, Options, change_span, finish_span};
use crate::backend::kube::Kube;
use crate::error::{ApiStatus, Error, Failure, Remedy};
use crate::plan::kube::{
    Inventory, Rollout, apply_rank, depends_on, inventory_object, is_workload, rollout,
};
use crate::plan::{Action, Change, Plan};
use crate::resource::ResourceId;
use crate::stack::Plane;

fn kube_changes(plan: &Plan) -> impl Iterator<Item = &Change> {
    plan.actionable().filter(|c| c.id.plane() == Plane::Kube)
}

fn rank(c: &Change) -> u8 {
    apply_rank(c.id.kind().unwrap_or_default())
}

/// What applying the kube changes did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Workloads written, whose rollout to wait for.
    pub workloads: Vec<ResourceId>,
    /// Each change that failed or was skipped: the object, the server's message, and what to
    /// do.
    pub failures: Vec<Failure>,
}

/// What to do about a failure, from the server's answer (`None`: it was not the server's).
fn remedy(status: Option<&ApiStatus>) -> Remedy {
    let say = |s: &str| Remedy::Say(s.to_string());
    match status.map(|s| (s.code, s.conflicts.is_empty())) {
        Some((409, false)) => Remedy::ForceConflicts,
        Some((409, true)) => say("it changed while applying: plan and apply again"),
        Some((403, _)) => say(
            "the account or a quota forbids it: ask for the permission or the quota, then apply again",
        ),
        Some((400 | 422, _)) => say(
            "the server finds the object invalid: fix it in the stack (or the live object), then apply again",
        ),
        _ => say("fix the cause, then apply again"),
    }
}

/// The server's answer inside `e`, if the server refused.
fn status_of(e: &Error) -> Option<&ApiStatus> {
    match e {
        Error::Api { status, .. } => Some(status),
        _ => None,
    }
}

/// Run the kube changes of `plan`: deletions (reverse order), then replacements and applies in
/// dependency order, tier by tier, each tier's changes concurrently; one [`Events::step`] per
/// object. A change the server refused in the plan's dry run is not sent: it fails as it
/// would. A change that depends on a failed or skipped one is skipped. Returns the workloads
/// to wait for and every failure.
pub async fn apply(plan: &Plan, kube: &Kube, opts: &Options, events: &mut dyn Events) -> Applied {
    let mut deletes: BTreeMap<std::cmp::Reverse<u8>, Vec<&Change>> = BTreeMap::new();
    let mut writes: BTreeMap<u8, Vec<&Change>> = BTreeMap::new();
    for c in kube_changes(plan) {
        if c.action == Action::Delete {
            deletes
                .entry(std::cmp::Reverse(rank(c)))
                .or_default()
                .push(c);
        } else {
            writes.entry(rank(c)).or_default().push(c);
        }
    }
    let tiers: Vec<Vec<&Change>> = deletes.into_values().chain(writes.into_values()).collect();
    let mut out = Applied::default();
    // Changes that failed or were skipped: their dependents are skipped.
    let mut broken: Vec<&Change> = Vec::new();
    let limit = opts.concurrency.max(1);
    for tier in tiers {
        let mut run = Vec::new();
        for c in tier {
            if let Some(why) = c.refused() {
                let span = change_span(c);
                let message = format!("refused in the dry run: {why}");
                finish_span(&span, Err(&message));
                events.step(Plane::Kube, &format!("{}: failed: {message}", c.id));
                out.failures
                    .push(Failure::new(format!("`{}`: {message}", c.id)).with(remedy(Some(why))));
                broken.push(c);
                continue;
            }
            if let Some(on) = broken.iter().find(|b| depends_on(c, b)) {
                change_span(c).record("labctl.result", "skipped");
                let line = format!("skipped: it depends on `{}`, which was not applied", on.id);
                events.step(Plane::Kube, &format!("{}: {line}", c.id));
                out.failures.push(Failure::new(format!(
                    "`{}`: {line}; apply again once that is fixed",
                    c.id
                )));
                broken.push(c);
                continue;
            }
            run.push(c);
        }
        // The futures are made first: a stream holding the closure that makes them would not
        // be `Send` for every lifetime (and the engine's future must be).
        let futures: Vec<_> = run
            .into_iter()
            .map(|c| {
                let span = change_span(c);
                let expect = plan.expect_versions.get(&c.id);
                async move {
                    let r = one(c, kube, opts, expect).instrument(span.clone()).await;
                    (c, span, r)
                }
            })
            .collect();
        let mut done = futures_util::stream::iter(futures).buffer_unordered(limit);
        while let Some((c, span, result)) = done.next().await {
            match result {
                Ok(verb) => {
                    finish_span(&span, Ok(()));
                    events.step(Plane::Kube, &format!("{}: {verb}", c.id));
                    crate::failpoint::hit("apply.kube.object");
                    if c.action != Action::Delete && c.id.kind().is_some_and(is_workload) {
                        out.workloads.push(c.id.clone());
                    }
                }
                Err(e) => {
                    let message = e.report();
                    finish_span(&span, Err(&message));
                    events.step(Plane::Kube, &format!("{}: failed: {message}", c.id));
                    out.failures.push(
                        Failure::new(format!("`{}`: {message}", c.id)).with(remedy(status_of(&e))),
                    );
                    broken.push(c);
                }
            }
        }
    }
    out.workloads.sort();
    out
}

/// The inventory as it must be while the plan's changes are made: what was there and what the
/// plan adds (so that an interrupted apply leaves nothing unrecorded). `None`: no inventory.
fn inventory_during(plan: &Plan) -> Option<Inventory> {
    let inv = plan.inventory.as_ref()?;
    Some(match &inv.stored {
        Some(stored) => stored.union(&inv.wanted),
        None => inv.wanted.clone(),
    })
}

async fn write_inventory(plan: &Plan, kube: &Kube, what: &Inventory) -> Result<(), Error> {
    let Some(inv) = &plan.inventory else {
        return Ok(());
    };
    kube.apply(
        &inv.parent,
        &inventory_object(&inv.parent, what),
        true,
        false,
    )
    .await
    .map(|_| ())
}

/// Before the changes: record in the stack's inventory every kind and namespace the plan adds,
/// unless it records them already (no request then) or the plan creates the inventory's
/// namespace (then [`inventory_after`] writes it). Returns what the inventory records now.
///
/// # Errors
/// [`Error::Backend`] when the parent cannot be written.
pub async fn inventory_before(plan: &Plan, kube: &Kube) -> Result<Option<Inventory>, Error> {
    let (Some(inv), Some(during)) = (&plan.inventory, inventory_during(plan)) else {
        return Ok(None);
    };
    let namespace_created = plan.changes.iter().any(|c| {
        c.action == Action::Create
            && c.id.kind() == Some("Namespace")
            && matches!((&c.id, &inv.parent),
                (ResourceId::Kube { name, .. }, ResourceId::Kube { namespace: Some(ns), .. }) if name == ns)
    });
    if inv.stored.as_ref() == Some(&during) || namespace_created {
        return Ok(inv.stored.clone());
    }
    write_inventory(plan, kube, &during).await?;
    Ok(Some(during))
}

/// After the changes: the inventory records what the plan leaves, or, when some change
/// failed, also what it would have removed (a later plan must still find it). Written only
/// when that differs from `now`.
///
/// # Errors
/// [`Error::Backend`] when the parent cannot be written.
pub async fn inventory_after(
    plan: &Plan,
    kube: &Kube,
    now: Option<Inventory>,
    failed: bool,
) -> Result<(), Error> {
    let (Some(inv), Some(during)) = (&plan.inventory, inventory_during(plan)) else {
        return Ok(());
    };
    let target = if failed { during } else { inv.wanted.clone() };
    if now.as_ref() == Some(&target) {
        return Ok(());
    }
    write_inventory(plan, kube, &target).await
}

/// Apply one change; the verb that says what happened.
async fn one(
    c: &Change,
    kube: &Kube,
    opts: &Options,
    expect: Option<&String>,
) -> Result<&'static str, Error> {
    if c.action == Action::Delete {
        kube.delete(&c.id).await?;
        return Ok("deleted");
    }
    let Some(obj) = c.after.as_ref().and_then(|b| b.content().as_kube()) else {
        return Ok("left as is");
    };
    // A saved plan's update must find the object as planned: the server refuses (409) otherwise.
    let guarded;
    let obj = match expect {
        Some(rv) => {
            guarded = with_resource_version(obj, rv);
            &guarded
        }
        None => obj,
    };
    // A custom resource whose definition this run just applied: learn its kind once the server
    // serves it (a new definition takes a moment to be established).
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
    Ok(match c.action {
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
    })
}

/// Wait until every workload has rolled out (see [`rollout`]), polling its status: each
/// workload's progress goes to [`Events::progress`], each finished one to [`Events::step`].
///
/// # Errors
/// [`Error::Backend`] (step `wait <workload>`) naming the first workload not rolled out after
/// `timeout`, or that failed, with its unready condition.
pub async fn wait(
    kube: &Kube,
    workloads: &[ResourceId],
    timeout: Duration,
    events: &mut dyn Events,
) -> Result<(), Error> {
    if workloads.is_empty() {
        return Ok(());
    }
    let mut pending: BTreeMap<ResourceId, String> = workloads
        .iter()
        .map(|id| (id.clone(), "not observed yet".to_string()))
        .collect();
    for id in workloads {
        events.progress(id, Some("not observed yet"));
    }
    events.step(
        Plane::Kube,
        &format!(
            "waiting on {} workload rollout(s) [0/{}]",
            workloads.len(),
            workloads.len()
        ),
    );
    let started = Instant::now();
    let poll = Duration::from_millis(250);
    let done_waiting = |events: &mut dyn Events, pending: &BTreeMap<ResourceId, String>| {
        for id in pending.keys() {
            events.progress(id, None);
        }
    };
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
                    pending.remove(&id);
                    events.progress(&id, None);
                    events.step(
                        Plane::Kube,
                        &format!(
                            "{id}: rolled out [{}/{}]",
                            workloads.len() - pending.len(),
                            workloads.len()
                        ),
                    );
                }
                Rollout::Failed(why) => {
                    done_waiting(events, &pending);
                    return Err(Error::backend(
                        "kube",
                        format!("wait {id}"),
                        format!("rollout failed: {why}"),
                    ));
                }
                Rollout::Progressing {
                    progress,
                    condition,
                } => {
                    events.progress(&id, Some(&progress));
                    pending.insert(id, condition);
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            done_waiting(events, &pending);
            let (id, condition) = pending.iter().next().expect("pending is not empty");
            let others = pending.len() - 1;
            return Err(Error::backend(
                "kube",
                format!("wait {id}"),
                format!(
                    "not rolled out after {}: {condition}{}",
                    human(timeout),
                    if others > 0 {
                        format!(" (and {others} more workload(s) not rolled out)")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        tokio::time::sleep(poll.min(timeout.saturating_sub(started.elapsed()))).await;
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

/// `obj` with `metadata.resourceVersion` set: server-side apply then writes only if the object
/// is still at that version (409 Conflict otherwise), as an update does.
fn with_resource_version(obj: &serde_json::Value, rv: &str) -> serde_json::Value {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.insert("resourceVersion".into(), rv.into());
    }
    o
}
