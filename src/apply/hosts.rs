//! The systemd plane of a plan that spans hosts: every host with changes at once (up to
//! `--hosts-concurrency`), each in the order of [`super::systemd`], each failing alone. A host that
//! cannot be reached, or goes away halfway, is named with why (ssh's own words); the others go on.
//! Progress from every host goes to the one [`Events`], each line saying its host.

use std::sync::Mutex;

use futures_util::StreamExt as _;

use super::{Events, Options, systemd};
use crate::backend::systemd::{Systemd, Target};
use crate::error::{Error, Failure, HostFailure};
use crate::plan::{Cost, Plan, PlaneTarget};
use crate::resource::ResourceId;
use crate::stack::{LOCAL_HOST, Plane};

/// What applying the hosts did.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// Changes that failed on hosts that were reached.
    pub failures: Vec<Failure>,
    /// Hosts that could not be reached or went away, and why.
    pub down: Vec<HostFailure>,
    /// Hosts whose changes all went through, by name.
    pub done: Vec<String>,
    /// What each host cost.
    pub costs: Vec<Cost>,
}

/// One host's events, passed on to the run's own with the host in front of every line.
struct HostEvents<'a, 'e, 'o> {
    shared: &'a Mutex<&'e mut (dyn Events + 'o)>,
    host: String,
}

impl HostEvents<'_, '_, '_> {
    fn with(&self, f: impl FnOnce(&mut dyn Events)) {
        let mut events = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut **events);
    }
}

impl Events for HostEvents<'_, '_, '_> {
    // The run's own start and finish cover every host.
    fn start(&mut self, _plane: Plane, _steps: usize) {}
    fn finish(&mut self, _plane: Plane) {}

    fn phase(&mut self, plane: Plane, what: &str) {
        self.with(|e| e.phase(plane, &format!("{}: {what}", self.host)));
    }
    fn step(&mut self, plane: Plane, line: &str) {
        self.with(|e| e.step(plane, &format!("{}: {line}", self.host)));
    }
    fn progress(&mut self, id: &ResourceId, status: Option<&str>) {
        self.with(|e| e.progress(id, status));
    }
    fn cost(&mut self, cost: &Cost) {
        self.with(|e| e.cost(cost));
    }
}

/// How one host went.
enum HostResult {
    Done,
    Failed(Vec<Failure>),
    Down(HostFailure),
}

/// Apply the systemd changes of `plan` on every host that has some.
pub(super) async fn apply<'o>(
    plan: &Plan,
    options: &Options,
    events: &mut (dyn Events + 'o),
) -> Applied {
    let busy: Vec<&Target> = plan
        .targets
        .iter()
        .filter_map(|t| match t {
            PlaneTarget::Systemd(t) => Some(t),
            PlaneTarget::Kube(_) => None,
        })
        .filter(|t| {
            plan.actionable()
                .any(|c| c.id.plane() == Plane::Systemd && c.id.host() == t.host())
        })
        .collect();
    let mut applied = Applied::default();
    if busy.is_empty() {
        return applied;
    }
    let steps = busy
        .iter()
        .map(|t| systemd::Steps::of(plan, t.host()).len())
        .sum();
    events.start(Plane::Systemd, steps);
    let results: Vec<(String, Option<Cost>, HostResult)> = {
        let shared = Mutex::new(&mut *events);
        // This machine beside the hosts, not counted in their concurrency.
        let (local, remote): (Vec<&Target>, Vec<&Target>) =
            busy.into_iter().partition(|t| t.remote.is_none());
        let local = futures_util::future::join_all(
            local
                .into_iter()
                .map(|target| apply_named(plan, target, options, &shared)),
        );
        let each: Vec<_> = remote
            .into_iter()
            .map(|target| apply_named(plan, target, options, &shared))
            .collect();
        let remote = futures_util::stream::iter(each)
            .buffer_unordered(options.hosts_concurrency.max(1))
            .collect::<Vec<_>>();
        let (mut local, remote) = futures_util::join!(local, remote);
        local.extend(remote);
        local
    };
    events.finish(Plane::Systemd);
    let mut results = results;
    // This machine first, then the hosts by name, as plans list them.
    results.sort_by(|a, b| (a.0 != LOCAL_HOST, &a.0).cmp(&(b.0 != LOCAL_HOST, &b.0)));
    for (name, cost, result) in results {
        if let Some(c) = cost {
            events.cost(&c);
            applied.costs.push(c);
        }
        match result {
            HostResult::Done => applied.done.push(name),
            HostResult::Failed(f) => applied.failures.extend(f),
            HostResult::Down(d) => applied.down.push(d),
        }
    }
    applied
}

async fn apply_named(
    plan: &Plan,
    target: &Target,
    options: &Options,
    shared: &Mutex<&mut (dyn Events + '_)>,
) -> (String, Option<Cost>, HostResult) {
    let name = target.host().unwrap_or(LOCAL_HOST).to_string();
    let mut events = HostEvents {
        shared,
        host: name.clone(),
    };
    let (cost, result) = apply_host(plan, target, options, &mut events).await;
    (name, cost, result)
}

async fn apply_host(
    plan: &Plan,
    target: &Target,
    options: &Options,
    events: &mut dyn Events,
) -> (Option<Cost>, HostResult) {
    let down = async |e: &Error, gone: Option<String>| {
        let mut why = e.report();
        let mut words = gone.or_else(|| target.remote.as_ref().and_then(|r| r.last_words()));
        // A connection that went says nothing itself (its master's words go nowhere): ssh
        // says why when asked to reach the host again.
        if words.is_none()
            && let Some(r) = &target.remote
        {
            words = Some(
                r.diagnose()
                    .await
                    .unwrap_or_else(|| "the connection went; the host answers again now".into()),
            );
        }
        if let Some(words) = words
            && !why.contains(&words)
        {
            why = format!("{why} (ssh: {words})");
        }
        HostResult::Down(HostFailure {
            host: target.host().unwrap_or(LOCAL_HOST).to_string(),
            why,
        })
    };
    let sd = match Systemd::connect(target.clone()).await {
        Ok(sd) => sd,
        Err(e) => return (None, down(&e, None).await),
    };
    let before = sd.stats();
    let result = systemd::apply(plan, &sd, options.settle, events).await;
    let cost = Cost {
        plane: Plane::Systemd,
        host: target.host().map(str::to_string),
        phase: "apply",
        stats: sd.stats().since(before),
    };
    let result = match result {
        Ok(()) => HostResult::Done,
        // A connection that went carries no more jobs: the host is down, not its units.
        Err(Error::ApplyFailed { failed, .. }) if sd.gone().is_none() => HostResult::Failed(failed),
        Err(e) => {
            let gone = sd.gone_reason().await;
            down(&e, gone).await
        }
    };
    (Some(cost), result)
}
