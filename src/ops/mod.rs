//! The ops layer: the one sequence every front end runs, from a stack to a plan ([`plan`]) and
//! from a plan to a changed lab ([`apply`]), and from a fresh host to a secret store that apply
//! reads ([`bootstrap()`], which applies the OpenBao unit through [`apply()`]). The command line's
//! `plan`, `apply` and `bootstrap`, the proxy's GitOps sync and the tests all come here with a
//! request and get events back; each front end only decides how to show them.
//!
//! The sequence, and why in this order:
//! 1. load the stack and its templates (a file on disk, or a stack already read from git);
//! 2. read the secrets the plan needs: those of the objects it keeps (its plane, its
//!    `--target`/`--exclude` selection, the host alone when no cluster is configured), so that a
//!    selection of what uses no secret reads none; a plan that compares no values reads none at
//!    all. A missing secret fails before anything is locked or observed;
//! 3. apply only: take the stack's lock, through the run's own cluster client, so that the plan
//!    is made in a world no other writer changes;
//! 4. build the plan ([`crate::plan::build`]) and cut it to the selection;
//! 5. apply only: check a saved plan still holds, show the plan, check its refusals, ask, run
//!    it ([`crate::apply::run`]), then the stack's health gates; record the generation; when
//!    the apply or a gate failed and the request asks, apply the last good generation again
//!    and check its gates; say whether the lock was lost meanwhile, let the lock go.

mod apply;
pub mod bootstrap;
mod gates;
mod secrets;

use std::path::PathBuf;
use std::time::Duration;

pub use apply::apply;
pub use bootstrap::{BootstrapEvents, BootstrapRequest, Bootstrapped, bootstrap};
pub use secrets::{needed as secrets_needed, read as read_secrets, read_selected};

use crate::backend::kube::Cluster;
use crate::backend::systemd::Target;
use crate::error::Error;
use crate::generations::{Generation, Snapshot, Who};
use crate::lock;
use crate::plan::saved::{self, SavedPlan};
use crate::plan::{self, Against, Observe, Plan, Selection, Sources};
use crate::render::Templates;
use crate::sensitive::Secrets;
use crate::stack::{self, LoadedStack, Plane, Stack};

/// Where a request's stack comes from.
#[derive(Debug, Clone)]
pub enum StackSource {
    /// A `stack.toml` on disk, with the templates beside it.
    File(PathBuf),
    /// A stack already read (from git, from a recorded generation), with its own templates.
    Read(Box<Snapshot>),
}

/// What to plan.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// The stack.
    pub stack: StackSource,
    /// Only this plane; both when `None`.
    pub plane: Option<Plane>,
    /// What the stack is compared with. Only a plan against the live planes reads secret values
    /// (the others compare none) and can be applied.
    pub against: Against,
    /// `--target` / `--exclude`.
    pub selection: Selection,
    /// Plan to delete volumes and protected components no longer rendered.
    pub prune_volumes: bool,
}

/// Who takes the stack's lock, and how long it waits for another writer.
#[derive(Debug, Clone)]
pub struct LockRequest {
    /// What the holder runs, as its lock shows it (`labctl apply --yes`).
    pub command: String,
    /// How long to wait for another writer; zero fails at once.
    pub wait: Duration,
    /// How long the cluster's Lease lasts without renewal.
    pub lease: Duration,
}

/// A plan saved by `labctl plan --out`, to be applied exactly.
#[derive(Debug)]
pub struct SavedRequest {
    /// The file, for messages.
    pub path: PathBuf,
    /// What it holds.
    pub plan: SavedPlan,
}

/// What to apply: a plan made now against the live planes (or a saved one, made again and
/// checked), with what apply may do.
#[derive(Debug)]
pub struct ApplyRequest {
    /// The plan to make; its `against` must be the live planes.
    pub plan: PlanRequest,
    /// What apply may do beyond the plan, and how long it waits.
    pub options: crate::apply::Options,
    /// The stack's lock.
    pub lock: LockRequest,
    /// A saved plan that the plan made now must match.
    pub saved: Option<SavedRequest>,
    /// Ask [`Events::confirm`] before changing anything.
    pub confirm: bool,
    /// Who applies, as the generation records it.
    pub who: Who,
    /// The git commit the stack was read from, for the record.
    pub commit: Option<String>,
    /// When the apply or a health gate fails, apply the last good generation again (both
    /// planes) and check its gates.
    pub rollback_on_failure: bool,
    /// The generation this apply puts back (`labctl rollback`), for the record.
    pub restores: Option<u64>,
}

/// What a run reports besides apply's own progress ([`crate::apply::Events`]). Every method has a
/// default that ignores the event: a front end overrides what it shows.
pub trait Events: crate::apply::Events {
    /// Something the reader should know that is not a change (a plane left out, a lock lost).
    fn warning(&mut self, text: &str) {
        let _ = text;
    }
    /// How observing went, for `-v` (a fallback taken, where list merge types came from).
    fn detail(&mut self, text: &str) {
        let _ = text;
    }
    /// The plan about to be applied (apply shows it as `plan` would, before asking).
    fn planned(&mut self, plan: &Plan) {
        let _ = plan;
    }
    /// Whether to go on with the plan shown; `Err` cancels, changing nothing. Asked only when
    /// the request says so.
    ///
    /// # Errors
    /// Whatever the front end says stops the apply.
    fn confirm(&mut self, plan: &Plan) -> Result<(), Error> {
        let _ = plan;
        Ok(())
    }
    /// The plan is about to change the lab: the last moment to prepare for it (the proxy arms
    /// its dead-man switch when the plan changes the proxy itself).
    ///
    /// # Errors
    /// Whatever the front end says stops the apply before any change.
    fn before_changes<'a>(
        &'a mut self,
        plan: &'a Plan,
    ) -> futures_util::future::BoxFuture<'a, Result<(), Error>> {
        let _ = plan;
        Box::pin(async { Ok(()) })
    }
}

/// Events that go nowhere.
impl Events for crate::apply::Silent {}

/// A plan, and the stack it was made from.
#[derive(Debug)]
pub struct Planned {
    /// The stack as loaded.
    pub loaded: LoadedStack,
    /// Its templates.
    pub templates: Templates,
    /// The plan.
    pub plan: Plan,
}

/// What an apply did.
#[derive(Debug)]
pub struct Applied {
    /// The stack and the plan applied (an empty plan: nothing was done).
    pub planned: Planned,
    /// What apply did; `None` when the plan was empty.
    pub outcome: Option<crate::apply::Outcome>,
    /// Why the lock was lost while applying, if it was: another writer may have run meanwhile.
    pub lock_lost: Option<String>,
    /// The generation recorded; `None` when the plan changed nothing.
    pub generation: Option<Generation>,
}

/// Make the plan `request` asks for. Never prints, never reads stdin, locks nothing.
///
/// # Errors
/// As [`stack::load`], [`read_secrets`], [`plan::build`] and [`plan::select`].
pub async fn plan(request: &PlanRequest, events: &mut dyn Events) -> Result<Planned, Error> {
    let (loaded, templates) = load(&request.stack)?;
    let secrets = secrets_for(request, &loaded, &templates).await?;
    let plan = build(request, &loaded, &templates, secrets, events).await;
    close_hosts(&request.against);
    let plan = plan?;
    Ok(Planned {
        loaded,
        templates,
        plan,
    })
}

/// The lock an apply of `stack` needs: the cluster's Lease when the cluster is planned, the
/// host's lock file and each `[hosts.<name>]`'s when units are. A plan against nothing live
/// locks nothing.
///
/// # Errors
/// [`Error::Backend`] when the systemd target cannot be resolved.
pub fn lock_spec(
    stack: &Stack,
    plane: Option<Plane>,
    against: &Against,
) -> Result<lock::Spec, Error> {
    let mut spec = lock::Spec {
        stack: stack.stack.name.clone(),
        namespace: stack.stack.namespace().to_string(),
        kube: None,
        file: None,
        hosts: Vec::new(),
        lease: lock::DEFAULT_LEASE,
    };
    let Against::Live(how) = against else {
        return Ok(spec);
    };
    if plane != Some(Plane::Systemd) && (plane == Some(Plane::Kube) || how.kube.how().configured())
    {
        spec.kube = Some(how.kube.clone());
    }
    if plane != Some(Plane::Kube) {
        let host = &stack.host;
        let target = Target::resolve(host.scope, how.user, host.unit_dir.as_deref())?;
        spec.file = Some(lock::lock_file(&target, &spec.stack));
        // Every host the plan may touch: each declared one (a host nothing is placed on any
        // more may still have the stack's units to remove).
        for (name, h) in &stack.hosts {
            spec.hosts.push(
                how.hosts
                    .get(name, &h.ssh, h.scope, h.unit_dir.as_deref())?,
            );
        }
    }
    Ok(spec)
}

/// The hash a saved plan records of the stack file and its templates.
///
/// # Errors
/// [`Error::Read`] when the stack file cannot be read again.
pub fn stack_hash(loaded: &LoadedStack, templates: &Templates) -> Result<String, Error> {
    let text = std::fs::read(&loaded.path).map_err(|source| Error::Read {
        path: loaded.path.clone(),
        source,
    })?;
    Ok(saved::stack_hash(&text, templates))
}

/// How a request observes the live planes, from the command line's parts.
pub fn live(cluster: Cluster, user: bool, server_dry_run: bool, force_conflicts: bool) -> Against {
    Against::Live(Observe {
        kube: cluster,
        user,
        server_dry_run,
        force_conflicts,
        ..Observe::default()
    })
}

/// The run is over: its master connections to other hosts end now (rather than linger for
/// their persist time), and their sockets' folder goes. [`plan`] and [`apply()`] do this
/// themselves; a front end that reaches hosts otherwise (`force-unlock`) calls it.
pub fn close_hosts(against: &Against) {
    if let Against::Live(how) = against {
        how.hosts.close();
    }
}

fn load(source: &StackSource) -> Result<(LoadedStack, Templates), Error> {
    match source {
        StackSource::File(path) => {
            let loaded = stack::load(path)?;
            let templates = Templates::for_stack_dir(loaded.dir())?;
            Ok((loaded, templates))
        }
        StackSource::Read(snapshot) => snapshot.load(),
    }
}

/// The stack as applied, to record: read again from its file, or as given.
fn snapshot(
    source: &StackSource,
    loaded: &LoadedStack,
    templates: &Templates,
) -> Result<Snapshot, Error> {
    match source {
        StackSource::File(_) => Snapshot::of(loaded, templates),
        StackSource::Read(snapshot) => Ok((**snapshot).clone()),
    }
}

/// The secrets a plan renders with: when it compares live values, those of the objects it
/// keeps (its plane, its selection; the host's alone when no cluster is configured and none was
/// asked for), read from their sources; otherwise none at all (every one redacted).
async fn secrets_for(
    request: &PlanRequest,
    loaded: &LoadedStack,
    templates: &Templates,
) -> Result<Secrets, Error> {
    let Against::Live(how) = &request.against else {
        return Ok(Secrets::redacted());
    };
    // The same rule `plan::build` follows to leave the cluster out.
    let plane = match request.plane {
        None if !how.kube.how().configured() => Some(Plane::Systemd),
        p => p,
    };
    read_selected(loaded, templates, plane, &request.selection).await
}

async fn build(
    request: &PlanRequest,
    loaded: &LoadedStack,
    templates: &Templates,
    secrets: Secrets,
    events: &mut dyn Events,
) -> Result<Plan, Error> {
    let sources = Sources {
        templates: templates.clone(),
        secrets,
    };
    let options = plan::Options {
        plane: request.plane,
        against: request.against.clone(),
        prune_volumes: request.prune_volumes,
    };
    let plan = plan::build(&loaded.stack, &sources, &options).await?;
    let plan = plan::select(plan, &request.selection)?;
    for w in &plan.warnings {
        events.warning(w);
    }
    for d in &plan.details {
        events.detail(d);
    }
    for c in &plan.costs {
        events.cost(c);
    }
    Ok(plan)
}
