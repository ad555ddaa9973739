//! [`apply`]: a plan made under the stack's lock, applied, checked by the health gates, recorded
//! as a generation, and rolled back to the last good generation when it fails and the request
//! asks.

use super::{
    Applied, ApplyRequest, Events, PlanRequest, Planned, SavedRequest, StackSource, build, gates,
    load, lock_spec, read_secrets, secrets_for, snapshot, stack_hash,
};
use crate::error::Error;
use crate::generations::{Outcome, Record, Snapshot, Store};
use crate::lock::{self, Holder};
use crate::plan::saved;
use crate::plan::{Against, Plan, Selection};
use crate::render::Templates;
use crate::sensitive::Secrets;
use crate::stack::{LoadedStack, Scope};

/// How an attempt failed: before anything changed, or after apply began.
enum Failed {
    /// Nothing was changed (a refusal, the prompt, a plan that could not be made).
    Before(Error),
    /// Apply began: the lab may be half changed.
    After(Box<Plan>, Error),
}

/// Make the plan `request` asks for under the stack's lock and apply it (see the module's
/// sequence). Never prints and never reads stdin: showing and asking are [`Events`].
///
/// # Errors
/// [`Error::Locked`] when another writer holds the lock; [`Error::Refused`] when a saved plan no
/// longer holds, a refusal the plan noted is not lifted, or the plan was not made against the
/// live planes; whatever [`Events::confirm`] returns; [`Error::ApplyFailed`] naming every change
/// that failed and [`Error::GateFailed`] a gate that did not pass, or, when the request rolls
/// back, [`Error::RolledBack`] (or [`Error::RollbackFailed`]) with that failure; and the errors
/// of [`super::plan`].
pub async fn apply(request: &ApplyRequest, events: &mut dyn Events) -> Result<Applied, Error> {
    let (loaded, templates) = load(&request.plan.stack)?;
    let snapshot = snapshot(&request.plan.stack, &loaded, &templates)?;
    let secrets = secrets_for(&request.plan, &loaded, &templates).await?;
    let store = Store::of(&loaded.stack, scope(&request.plan, &loaded));
    let mut spec = lock_spec(&loaded.stack, request.plan.plane, &request.plan.against)?;
    spec.lease = request.lock.lease;
    let holder = Holder::this_process(&request.lock.command);
    // The records' folder is made before any unit starts: see `Store::prepare`.
    let acquired = match store.prepare() {
        Ok(()) => lock::acquire(&spec, &holder, request.lock.wait).await,
        Err(e) => Err(e),
    };
    let lock = match acquired {
        Ok(lock) => lock,
        Err(e) => {
            super::close_hosts(&request.plan.against);
            return Err(e);
        }
    };
    let attempt = attempt(
        &request.plan,
        Attempt {
            options: &request.options,
            saved: request.saved.as_ref(),
            confirm: request.confirm,
        },
        &loaded,
        &templates,
        secrets,
        events,
    )
    .await;
    let result = settle(request, &store, snapshot, attempt, events).await;
    let lock_lost = lock.lost();
    lock.release().await;
    super::close_hosts(&request.plan.against);
    // Said whether the apply went well or not: either way another writer may have run.
    if let Some(why) = &lock_lost {
        events.warning(&format!(
            "warning: {why}: another writer may have run at the same time"
        ));
    }
    let (plan, outcome, generation) = result?;
    Ok(Applied {
        planned: Planned {
            loaded,
            templates,
            plan,
        },
        outcome,
        lock_lost,
        generation,
    })
}

/// The manager whose host keeps the generations: the user's with `--user`, else the stack's.
fn scope(plan: &PlanRequest, loaded: &LoadedStack) -> Scope {
    match &plan.against {
        Against::Live(how) if how.user => Scope::User,
        _ => loaded.stack.host.scope,
    }
}

/// How one attempt applies.
struct Attempt<'a> {
    options: &'a crate::apply::Options,
    saved: Option<&'a SavedRequest>,
    confirm: bool,
}

/// Plan `plan` and apply it: refusals, the question, apply, the health gates.
async fn attempt(
    plan: &PlanRequest,
    how: Attempt<'_>,
    loaded: &LoadedStack,
    templates: &Templates,
    secrets: Secrets,
    events: &mut dyn Events,
) -> Result<(Plan, Option<crate::apply::Outcome>), Failed> {
    let mut made = build(plan, loaded, templates, secrets, events)
        .await
        .map_err(Failed::Before)?;
    if let Some(saved) = how.saved {
        let sha = stack_hash(loaded, templates).map_err(Failed::Before)?;
        saved::check(&saved.path, &saved.plan, &sha, &mut made).map_err(Failed::Before)?;
    }
    events.planned(&made);
    let unreached = made.unreached.clone();
    if made.is_empty() {
        if !unreached.is_empty() {
            // Nothing to do where labctl got, but a host it did not get to.
            return Err(Failed::Before(Error::ApplyFailed {
                failed: Vec::new(),
                hosts: unreached,
                done: Vec::new(),
            }));
        }
        return Ok((made, None));
    }
    crate::apply::check(&made, how.options).map_err(Failed::Before)?;
    if how.confirm {
        events.confirm(&made).map_err(Failed::Before)?;
    }
    events.before_changes(&made).await.map_err(Failed::Before)?;
    // Hosts that could not be reached (when planning, or when applying) fail alone: the
    // others are applied and gated, and the error names them all.
    let (outcome, down) = match crate::apply::run(&made, how.options, events).await {
        Ok(o) if unreached.is_empty() => (Some(o), None),
        Ok(o) => {
            let done = made
                .places()
                .into_iter()
                .filter(|(p, s)| {
                    p.name() != "cluster" && s.is_some_and(|s| s != Default::default())
                })
                .map(|(p, _)| p.name().to_string())
                .collect();
            let e = Error::ApplyFailed {
                failed: Vec::new(),
                hosts: unreached,
                done,
            };
            (Some(o), Some(e))
        }
        // A refusal apply itself makes comes before anything is sent.
        Err(e @ Error::Refused { .. }) => return Err(Failed::Before(e)),
        Err(Error::ApplyFailed {
            failed,
            mut hosts,
            done,
        }) => {
            hosts.splice(0..0, unreached);
            let e = Error::ApplyFailed {
                failed,
                hosts,
                done,
            };
            if !e.hosts_only() {
                return Err(Failed::After(Box::new(made), e));
            }
            (None, Some(e))
        }
        Err(e) => return Err(Failed::After(Box::new(made), e)),
    };
    if let Err(e) = gates::check(&loaded.stack).await {
        return Err(Failed::After(Box::new(made), e));
    }
    if let Some(e) = down {
        return Err(Failed::After(Box::new(made), e));
    }
    Ok((made, outcome))
}

type Settled = (
    Plan,
    Option<crate::apply::Outcome>,
    Option<crate::generations::Generation>,
);

/// Record how the attempt ended, and roll back when it failed after changing things and the
/// request asks.
async fn settle(
    request: &ApplyRequest,
    store: &Store,
    snapshot: Snapshot,
    attempt: Result<(Plan, Option<crate::apply::Outcome>), Failed>,
    events: &mut dyn Events,
) -> Result<Settled, Error> {
    let record = |result, failure: Option<String>, restored, summary, snapshot| Record {
        commit: request.commit.clone(),
        who: request.who.clone(),
        summary,
        result,
        failure,
        restored,
        snapshot,
    };
    // A selection applies part of the stack: no generation stands for the whole of it.
    let partial = !request.plan.selection.is_empty();
    let (plan, error) = match attempt {
        Ok((plan, outcome)) if partial => return Ok((plan, outcome, None)),
        // Nothing to change, but a stack other than the last one recorded: what runs is this
        // stack now (a change another run made, a commit of comments only).
        Ok((plan, None)) if recorded_other(store, &snapshot)? => {
            let g = store.record(record(
                Outcome::Ok,
                None,
                request.restores,
                plan.summary(),
                snapshot,
            ))?;
            return Ok((plan, None, Some(g)));
        }
        Ok((plan, None)) => return Ok((plan, None, None)),
        Ok((plan, Some(outcome))) => {
            let g = store.record(record(
                Outcome::Ok,
                None,
                request.restores,
                outcome.summary,
                snapshot,
            ))?;
            return Ok((plan, Some(outcome), Some(g)));
        }
        Err(Failed::Before(e)) => return Err(e),
        // Only hosts that could not be reached: rolling back could not reach them either, and
        // would undo what went well elsewhere. Recorded as failed (not a generation to come
        // back to); the next run applies the rest.
        Err(Failed::After(plan, e)) if e.hosts_only() => {
            store.record(record(
                Outcome::Failed,
                Some(e.report()),
                request.restores,
                plan.summary(),
                snapshot,
            ))?;
            return Err(e);
        }
        Err(Failed::After(plan, e)) => (plan, e),
    };
    let failure = error.report();
    let summary = plan.summary();
    let good = if request.rollback_on_failure {
        store.last_good()?
    } else {
        None
    };
    let Some(good) = good else {
        if request.rollback_on_failure {
            events.warning(
                "no good generation to roll back to: the lab stays as the failure left it",
            );
        }
        store.record(record(
            Outcome::Failed,
            Some(failure),
            None,
            summary,
            snapshot,
        ))?;
        return Err(error);
    };
    events.warning(&format!(
        "rolling back to generation {} ({}): {failure}",
        good.number,
        good.source()
    ));
    match roll_back(request, &good.record.snapshot, events).await {
        Ok(()) => {
            store.record(record(
                Outcome::RolledBack,
                Some(failure.clone()),
                Some(good.number),
                summary,
                snapshot,
            ))?;
            Err(Error::RolledBack {
                failure,
                restored: good.number,
                from: good.source(),
            })
        }
        Err(e) => {
            let rollback = e.report();
            store.record(record(
                Outcome::Failed,
                Some(format!(
                    "{failure}; rolling back to generation {} failed: {rollback}",
                    good.number
                )),
                None,
                summary,
                snapshot,
            ))?;
            Err(Error::RollbackFailed {
                failure,
                restored: good.number,
                rollback,
            })
        }
    }
}

/// Whether the newest generation recorded is of another stack than `snapshot` (or none is).
fn recorded_other(store: &Store, snapshot: &Snapshot) -> Result<bool, Error> {
    let newest = store.list()?.pop();
    Ok(newest.is_none_or(|g| g.stack_sha256 != snapshot.hash()))
}

/// Apply `good` again, whole (a failed apply's selection may name nothing it has), without
/// asking, and check its gates.
async fn roll_back(
    request: &ApplyRequest,
    good: &Snapshot,
    events: &mut dyn Events,
) -> Result<(), Error> {
    let plan = PlanRequest {
        stack: StackSource::Read(Box::new(good.clone())),
        plane: request.plan.plane,
        against: request.plan.against.clone(),
        selection: Selection::default(),
        prune_volumes: request.plan.prune_volumes,
    };
    let (loaded, templates) = good.load()?;
    let secrets = read_secrets(&loaded, &templates, plan.plane).await?;
    let how = Attempt {
        options: &request.options,
        saved: None,
        confirm: false,
    };
    match attempt(&plan, how, &loaded, &templates, secrets, events).await {
        Ok(_) => Ok(()),
        Err(Failed::Before(e) | Failed::After(_, e)) => Err(e),
    }
}
