//! Apply runs a [`Plan`] exactly as planned: it never re-diffs and never changes an action, never
//! prints and never reads stdin. [`run`] is the one call; each plane has its own sequence
//! ([`kube::apply`] then [`kube::wait`], [`systemd::apply`]), run in the plan's plane order, and
//! reports progress through [`Events`], which each front end implements (the terminal view,
//! the proxy's tracing, a test's recorder).

mod hosts;
pub mod kube;
pub mod systemd;

use std::time::{Duration, Instant};

use tracing::field::Empty;

use crate::backend::Stats;
use crate::backend::systemd::Systemd;
use crate::error::{Error, Failure, HostFailure, Remedy};
use crate::plan::{Change, Cost, Guard, Plan, PlaneTarget, Summary};
use crate::resource::ResourceId;
use crate::stack::Plane;

/// What apply may do beyond what the plan shows, and how long it waits.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Take over resources this stack does not own (`--adopt`).
    pub adopt: bool,
    /// Delete and re-create objects whose immutable fields change (`--allow-replace`).
    pub allow_replace: bool,
    /// Take ownership of fields another field manager owns (`--force-conflicts`).
    pub force_conflicts: bool,
    /// How long to wait for workloads to roll out; `None` does not wait (`--no-wait`).
    pub wait: Option<Duration>,
    /// How long a started unit must stay up before it counts as started (`--settle`).
    pub settle: Duration,
    /// How many kube changes of one ordering tier are sent at once (`--concurrency`).
    pub concurrency: usize,
    /// How many hosts are applied at once (`--hosts-concurrency`).
    pub hosts_concurrency: usize,
}

/// The default of [`Options::concurrency`].
pub const DEFAULT_CONCURRENCY: usize = 16;

impl Default for Options {
    fn default() -> Self {
        Options {
            adopt: false,
            allow_replace: false,
            force_conflicts: false,
            wait: Some(Duration::from_secs(300)),
            settle: Duration::from_secs(1),
            concurrency: DEFAULT_CONCURRENCY,
            hosts_concurrency: crate::plan::DEFAULT_HOSTS_CONCURRENCY,
        }
    }
}

/// How apply reports what it does. Every method has a default that ignores the event, so an
/// implementation overrides only what it shows.
pub trait Events: Send {
    /// Work on `plane` starts: `steps` is how many steps [`Events::step`] will report.
    fn start(&mut self, plane: Plane, steps: usize) {
        let _ = (plane, steps);
    }
    /// A phase starts: what it waits on (`stopping removed units`, `start jobs`).
    fn phase(&mut self, plane: Plane, what: &str) {
        let _ = (plane, what);
    }
    /// One step is done; `line` says how (`Deployment lab/web: created`,
    /// `start a.service: done`).
    fn step(&mut self, plane: Plane, line: &str) {
        let _ = (plane, line);
    }
    /// Something waited on moved: `status` (as `1/2 updated, 0/2 available`), or `None` once it
    /// is done waiting.
    fn progress(&mut self, id: &ResourceId, status: Option<&str>) {
        let _ = (id, status);
    }
    /// Work on `plane` is over (successfully or not).
    fn finish(&mut self, plane: Plane) {
        let _ = plane;
    }
    /// A phase's cost (requests, wall time), for `-v`.
    fn cost(&mut self, cost: &Cost) {
        let _ = cost;
    }
}

/// Events that go nowhere.
#[derive(Debug, Default)]
pub struct Silent;

impl Events for Silent {}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// What was applied (the plan's summary: apply does exactly the plan).
    pub summary: Summary,
    /// What each phase cost.
    pub costs: Vec<Cost>,
}

/// Every refusal the plan noted that `options` do not lift, as one error: foreign resources
/// first, then replacements of data, then replacements, then unset secrets. Pure: [`run`] calls
/// it first; front ends call it before asking for confirmation.
///
/// # Errors
/// [`Error::Refused`] naming every resource concerned.
pub fn check(plan: &Plan, options: &Options) -> Result<(), Error> {
    let with = |pred: fn(&Guard) -> bool| -> Vec<&Change> {
        plan.actionable()
            .filter(|c| c.guards.iter().any(pred))
            .collect()
    };
    let names = |cs: &[&Change]| {
        cs.iter()
            .map(|c| format!("`{}`", c.id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let foreign = with(|g| matches!(g, Guard::Adopt));
    if !foreign.is_empty() && !options.adopt {
        return Err(Error::Refused {
            what: format!("take over {}", names(&foreign)),
            why: "not managed by this stack".into(),
            remedy: Remedy::Adopt,
        });
    }
    let data = with(|g| matches!(g, Guard::ReplaceData));
    if !data.is_empty() {
        return Err(Error::Refused {
            what: format!("replace {}", names(&data)),
            why: "a PersistentVolumeClaim is never replaced (its data would be lost)".into(),
            remedy: Remedy::Say(
                "change its immutable fields back, or move the data and delete the claim by hand"
                    .into(),
            ),
        });
    }
    let replaced: Vec<String> = plan
        .actionable()
        .flat_map(|c| {
            c.guards.iter().filter_map(move |g| match g {
                Guard::Replace { why } => Some(format!("`{}` ({why})", c.id)),
                _ => None,
            })
        })
        .collect();
    if !replaced.is_empty() && !options.allow_replace {
        return Err(Error::Refused {
            what: format!("replace {}", replaced.join(", ")),
            why: "it is deleted and created again".into(),
            remedy: Remedy::AllowReplace,
        });
    }
    Ok(())
}

/// Apply `plan`: check its refusals against `options` ([`check`]), then run each plane in the
/// plan's order (the cluster first), connecting to where the plan observed. Never prints, never
/// reads stdin, creates no runtime: call it from any tokio runtime (the future is `Send`).
///
/// Emits one `apply change` span per change, with `labctl.resource`, `labctl.action`,
/// `labctl.result` (`ok`, `failed`, `skipped`) and, on failure, `error.message`.
///
/// ```no_run
/// # async fn sync(plan: labctl::plan::Plan) -> Result<(), labctl::error::Error> {
/// use labctl::apply::{self, Events, Options};
/// use labctl::stack::Plane;
///
/// struct Log;
/// impl Events for Log {
///     fn step(&mut self, plane: Plane, line: &str) {
///         tracing::info!(%plane, "{line}");
///     }
/// }
/// if !plan.is_empty() {
///     let outcome = apply::run(&plan, &Options::default(), &mut Log).await?;
///     tracing::info!(added = outcome.summary.add, "applied");
/// }
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Refused`] before anything is sent, when a refusal is not lifted or the plan was made
/// without observing; [`Error::Backend`], [`Error::Write`] when a plane cannot be reached;
/// [`Error::ApplyFailed`] naming each change that failed (with the server's message and what
/// to do) or was skipped because it depends on one that failed, after every other change of
/// every plane was made.
pub async fn run(
    plan: &Plan,
    options: &Options,
    events: &mut dyn Events,
) -> Result<Outcome, Error> {
    check(plan, options)?;
    let mut outcome = Outcome {
        summary: plan.summary(),
        costs: Vec::new(),
    };
    if plan.is_empty() {
        return Ok(outcome);
    }
    for plane in plan.actionable().map(|c| c.id.plane()) {
        if !plan.targets.iter().any(|t| t.plane() == plane) {
            return Err(Error::Refused {
                what: format!("apply the {plane} part of this plan"),
                why: "it was made without observing that plane (`--offline` or `--base`)".into(),
                remedy: Remedy::Say("plan against the live planes, then apply".into()),
            });
        }
    }
    // Every failure of every plane, reported together at the end: a failure stops only what
    // depends on it.
    let mut failures: Vec<Failure> = Vec::new();
    let mut hosts: Vec<HostFailure> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let several = !plan.hosts().is_empty();
    for target in &plan.targets {
        match target {
            PlaneTarget::Kube(cluster) => {
                let started = Instant::now();
                // Connecting (discovery) counts as part of applying; what the run did on a
                // client it connected before (the plan, the lock) does not.
                let fresh = !cluster.is_connected();
                let k = cluster.client().await?;
                let before = if fresh { Stats::default() } else { k.stats() };
                // Requests since `before`, wall time since `started`.
                let cost = |phase, before: Stats, started: Instant| {
                    let mut stats = k.stats().since(before);
                    stats.elapsed = started.elapsed();
                    Cost {
                        plane: Plane::Kube,
                        host: None,
                        phase,
                        stats,
                    }
                };
                let steps = plan
                    .actionable()
                    .filter(|c| c.id.plane() == Plane::Kube)
                    .count();
                events.start(Plane::Kube, steps);
                let recorded = kube::inventory_before(plan, &k).await?;
                let applied = kube::apply(plan, &k, options, events).await;
                let failed = !applied.failures.is_empty();
                failures.extend(applied.failures);
                if let Err(e) = kube::inventory_after(plan, &k, recorded, failed).await {
                    failures.push(Failure::new(e.report()));
                }
                let c = cost("apply", before, started);
                events.cost(&c);
                outcome.costs.push(c);
                if let Some(timeout) = options.wait {
                    let (before, started) = (k.stats(), Instant::now());
                    let result = kube::wait(&k, &applied.workloads, timeout, events).await;
                    let c = cost("wait", before, started);
                    events.cost(&c);
                    outcome.costs.push(c);
                    if let Err(e) = result {
                        failures.push(Failure::new(e.report()));
                    }
                }
                events.finish(Plane::Kube);
            }
            PlaneTarget::Systemd(_) if several => {}
            PlaneTarget::Systemd(target) => {
                let sd = Systemd::connect(target.clone()).await?;
                let before = sd.stats();
                let steps = systemd::Steps::of(plan, None);
                events.start(Plane::Systemd, steps.len());
                let result = systemd::apply(plan, &sd, options.settle, events).await;
                events.finish(Plane::Systemd);
                let c = Cost {
                    plane: Plane::Systemd,
                    host: None,
                    phase: "apply",
                    stats: sd.stats().since(before),
                };
                events.cost(&c);
                outcome.costs.push(c);
                match result {
                    Ok(()) => {}
                    Err(Error::ApplyFailed { failed, .. }) => failures.extend(failed),
                    Err(e) if failures.is_empty() => return Err(e),
                    Err(e) => failures.push(Failure::new(e.report())),
                }
            }
        }
    }
    if several {
        let applied = hosts::apply(plan, options, events).await;
        failures.extend(applied.failures);
        hosts.extend(applied.down);
        done = applied.done;
        outcome.costs.extend(applied.costs);
    }
    if !failures.is_empty() || !hosts.is_empty() {
        return Err(Error::ApplyFailed {
            failed: failures,
            hosts,
            done,
        });
    }
    Ok(outcome)
}

/// The span of one change being applied; `labctl.result` and `error.message` are recorded when
/// it ends ([`finish_span`]).
pub(crate) fn change_span(c: &Change) -> tracing::Span {
    tracing::info_span!(
        "apply change",
        labctl.resource = %c.id,
        labctl.action = c.action.word(),
        labctl.result = Empty,
        error.message = Empty,
    )
}

/// Record how a change ended on its span: `ok`, `skipped`, or `failed` with the error (whose
/// text names the object and the cause, never a secret value: errors carry no content).
pub(crate) fn finish_span(span: &tracing::Span, result: Result<(), &str>) {
    match result {
        Ok(()) => {
            span.record("labctl.result", "ok");
        }
        Err(message) => {
            span.record("labctl.result", "failed");
            span.record("error.message", message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Body};
    use crate::resource::Content;

    fn change(action: Action, guards: Vec<Guard>) -> Change {
        let id = ResourceId::Kube {
            namespace: Some("lab".into()),
            kind: "ConfigMap".into(),
            name: "c".into(),
            api_version: "v1".into(),
        };
        Change {
            after: Some(Body::new(
                &id,
                Content::kube(serde_json::json!({"data": {}})),
            )),
            id,
            component: "c".into(),
            action,
            before: None,
            impact: Vec::new(),
            notes: Vec::new(),
            guards,
            dry_run: None,
        }
    }

    fn plan(changes: Vec<Change>) -> Plan {
        Plan {
            changes,
            ..Plan::default()
        }
    }

    #[test]
    fn refusals_come_from_the_plan_and_options_lift_them() {
        let foreign = plan(vec![change(Action::Adopt, vec![Guard::Adopt])]);
        let e = check(&foreign, &Options::default()).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Refused {
                    remedy: Remedy::Adopt,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "refusing to take over `ConfigMap lab/c`: not managed by this stack; pass `--adopt` to take them over"
        );
        let adopt = Options {
            adopt: true,
            ..Options::default()
        };
        assert!(check(&foreign, &adopt).is_ok());
    }

    #[test]
    fn a_plan_made_without_observing_is_refused_before_anything_is_sent() {
        let offline = plan(vec![change(Action::Create, Vec::new())]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let e = rt
            .block_on(run(&offline, &Options::default(), &mut Silent))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("refusing to apply the kube part of this plan"),
            "{e}"
        );
    }

    #[test]
    fn the_engine_can_run_on_a_multi_thread_runtime() {
        fn send<T: Send>(_: &T) {}
        let plan = Plan::default();
        let mut events = Silent;
        let options = Options::default();
        let fut = run(&plan, &options, &mut events);
        send(&fut);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let outcome = rt
            .block_on(async {
                tokio::spawn(async move {
                    let plan = Plan::default();
                    run(&plan, &Options::default(), &mut Silent)
                        .await
                        .map(|o| o.summary)
                })
                .await
            })
            .unwrap()
            .unwrap();
        assert_eq!(outcome, Summary::default());
    }
}
