//! Applying the kube part of a plan: deletions in reverse dependency order, then server-side
//! applies in dependency order, then rollout waits. Apply ops and wait ops are separate (as in
//! kapp): [`apply`] returns the workloads to wait for, [`wait`] waits for them. The objects
//! applied are the plan's own `after` contents: apply re-renders and re-diffs nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use super::{Events, Options, change_span, finish_span, skipped};
use crate::backend::kube::Kube;
use crate::error::Error;
use crate::plan::kube::{Rollout, apply_rank, is_workload, rollout};
use crate::plan::{Action, Change, Plan};
use crate::resource::ResourceId;
use crate::stack::Plane;

fn kube_changes(plan: &Plan) -> impl Iterator<Item = &Change> {
    plan.actionable().filter(|c| c.id.plane() == Plane::Kube)
}

fn rank(c: &Change) -> u8 {
    apply_rank(c.id.kind().unwrap_or_default())
}

/// Run the kube changes of `plan`: deletions (reverse order), then replacements and applies in
/// dependency order, one [`Events::step`] per object. Returns the workloads whose rollout to
/// wait for.
///
/// # Errors
/// The first failing request, as [`Error::Backend`] naming the step; later changes are not
/// attempted (they may depend on the failed one).
pub async fn apply(
    plan: &Plan,
    kube: &Kube,
    opts: &Options,
    events: &mut dyn Events,
) -> Result<Vec<ResourceId>, Error> {
    let mut deletes: Vec<&Change> = kube_changes(plan)
        .filter(|c| c.action == Action::Delete)
        .collect();
    deletes.sort_by_key(|c| std::cmp::Reverse(rank(c)));
    let mut writes: Vec<&Change> = kube_changes(plan)
        .filter(|c| c.action != Action::Delete)
        .collect();
    writes.sort_by_key(|c| rank(c));
    let order: Vec<&Change> = deletes.into_iter().chain(writes).collect();
    let mut workloads = Vec::new();
    for (i, c) in order.iter().enumerate() {
        let span = change_span(c);
        let expect = plan.expect_versions.get(&c.id);
        let result = one(c, kube, opts, expect).instrument(span.clone()).await;
        match result {
            Ok(verb) => {
                finish_span(&span, Ok(()));
                events.step(Plane::Kube, &format!("{}: {verb}", c.id));
                if c.action != Action::Delete && c.id.kind().is_some_and(is_workload) {
                    workloads.push(c.id.clone());
                }
            }
            Err(e) => {
                finish_span(&span, Err(&e.report()));
                skipped(order[i + 1..].iter().copied());
                return Err(e);
            }
        }
    }
    Ok(workloads)
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
