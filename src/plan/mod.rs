//! The plan: pure data saying what apply would do, the pure function that computes it
//! ([`diff`]), and [`build`], the whole pipeline from a stack to a plan (render, observe through
//! the backends, compare, keep volumes, note refusals, order the planes).

mod body;
mod build;
mod diff;
pub mod kube;
pub mod saved;
mod select;
mod units;

use std::collections::BTreeMap;

use serde::Serialize;

pub use body::{Body, SENSITIVE, SENSITIVE_CHANGED};
pub use build::{Against, DEFAULT_HOSTS_CONCURRENCY, Observe, Options, Secrets, Sources, build};
pub use diff::{Live, LiveObject, diff};
pub use saved::Precondition;
pub use select::{Selection, kept_ids, select};
pub use units::{
    ObservedUnit, UnitState, env_file_path, env_file_path_on, installable, live_units,
    units_to_observe, wants_active,
};

use crate::backend::Stats;
use crate::backend::kube::Cluster;
use crate::backend::systemd::Target;
use crate::error::{ApiStatus, HostFailure};
use crate::resource::ResourceId;
use crate::stack::Plane;

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// It does not exist and will be created.
    Create,
    /// It exists and will be changed in place.
    Update,
    /// It will be deleted (or stopped and removed, for units).
    Delete,
    /// It must be deleted and created again (an immutable field changed).
    Replace,
    /// It exists but this stack does not own it: apply takes it over only with `--adopt`.
    Adopt,
    /// Nothing changes.
    NoOp,
}

impl Action {
    /// The word for it in summaries and traces: `add`, `change`, `destroy`, `replace`, `adopt`,
    /// `no-op`.
    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "add",
            Action::Update => "change",
            Action::Delete => "destroy",
            Action::Replace => "replace",
            Action::Adopt => "adopt",
            Action::NoOp => "no-op",
        }
    }

    /// The glyph shown in front of the change.
    pub fn glyph(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::Replace => "±",
            Action::Adopt => "!",
            Action::NoOp => " ",
        }
    }

    /// The verb, as in "will be created".
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "created",
            Action::Update => "updated",
            Action::Delete => "destroyed",
            Action::Replace => "replaced",
            Action::Adopt => "adopted",
            Action::NoOp => "left as is",
        }
    }
}

/// A consequence of a change beyond the object itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Impact {
    /// A workload's pod template changes: its pods are replaced.
    RollsPods,
    /// A unit is started.
    Start,
    /// A unit's file changed: it is restarted.
    Restart,
    /// A unit's file changed and it is marked `reload_on_change`: it is reloaded.
    Reload,
    /// A unit is stopped.
    Stop,
    /// A unit is enabled.
    Enable,
    /// A unit is disabled.
    Disable,
    /// systemd re-reads its unit files although no file changes (it had not loaded the current one).
    DaemonReload,
}

impl Impact {
    /// Short human text.
    pub fn text(&self) -> &'static str {
        match self {
            Impact::RollsPods => "rolls pods",
            Impact::Start => "starts unit",
            Impact::Restart => "restarts unit",
            Impact::Reload => "reloads unit",
            Impact::Stop => "stops unit",
            Impact::Enable => "enables unit",
            Impact::Disable => "disables unit",
            Impact::DaemonReload => "reloads systemd",
        }
    }
}

/// Why apply refuses a change unless told otherwise: the plan notes it, apply obeys it (and
/// re-derives nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// It exists but this stack does not own it: `--adopt` allows taking it over.
    Adopt,
    /// It is deleted and created again: `--allow-replace` allows it. `why` names the immutable
    /// field.
    Replace {
        /// Which immutable field changed.
        why: String,
    },
    /// It holds data and would be replaced: never.
    ReplaceData,
}

/// One planned change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What it is.
    pub id: ResourceId,
    /// Its component in stack.toml (empty for live objects no component renders any more).
    pub component: String,
    /// What happens to it.
    pub action: Action,
    /// Content before (none when created), sensitive values marked.
    pub before: Option<Body>,
    /// Content after (none when deleted): exactly what apply writes, sensitive values marked.
    pub after: Option<Body>,
    /// Consequences, in the order they happen.
    pub impact: Vec<Impact>,
    /// Explanations: why a replace, what drifted. They explain; they decide nothing.
    pub notes: Vec<String>,
    /// Refusals apply obeys (see [`Guard`]).
    pub guards: Vec<Guard>,
    /// What the server answered to a dry run of this change (`--server-dry-run`); `None` when
    /// not asked.
    pub dry_run: Option<DryRunAnswer>,
}

/// The server's answer to a dry run of one change.
#[derive(Debug, Clone, PartialEq)]
pub enum DryRunAnswer {
    /// It would store this (compared as `before` is): views show it as the change's result.
    Stored(Body),
    /// It refuses the change (a conflict, an invalid object, an admission webhook, a quota):
    /// its answer. Apply would fail the same way, so the change is a failing one.
    Refused(ApiStatus),
}

impl Change {
    /// The server's refusal of this change in a dry run, if it refused.
    pub fn refused(&self) -> Option<&ApiStatus> {
        match &self.dry_run {
            Some(DryRunAnswer::Refused(why)) => Some(why),
            _ => None,
        }
    }
}

/// Where a plane of a plan lives: apply connects there again. A plan made without observing
/// (`--offline`, `--base`) has none and cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaneTarget {
    /// The cluster, as reached for the plan (apply uses the same client).
    Kube(Cluster),
    /// The systemd manager and its unit folder.
    Systemd(Target),
}

impl PlaneTarget {
    /// Its plane.
    pub fn plane(&self) -> Plane {
        match self {
            PlaneTarget::Kube(_) => Plane::Kube,
            PlaneTarget::Systemd(_) => Plane::Systemd,
        }
    }
}

/// What one phase of work on a plane cost (requests, wall time), for `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    /// The plane.
    pub plane: Plane,
    /// The `[hosts.<name>]` it was on; `None` for the cluster and this machine.
    pub host: Option<String>,
    /// `observe`, `apply` or `wait`.
    pub phase: &'static str,
    /// Requests sent and time spent.
    pub stats: Stats,
}

/// The whole plan, sorted by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The stack's name.
    pub stack: String,
    /// Every change, no-ops included (views hide them).
    pub changes: Vec<Change>,
    /// The planes observed, in the order apply runs them (the cluster first: host services talk
    /// to what runs there).
    pub targets: Vec<PlaneTarget>,
    /// Things the reader should know that are not about one resource (a plane left out).
    pub warnings: Vec<String>,
    /// What observing cost, per plane.
    pub costs: Vec<Cost>,
    /// How observing went, for `-v` (a fallback taken, where list merge types came from).
    pub details: Vec<String>,
    /// The stack's inventory in the cluster (kube observed only): apply records there every
    /// kind and namespace the stack has, so that later plans find what to prune.
    pub inventory: Option<kube::InventoryPlan>,
    /// Secrets the stack uses that this plan rendered as markers, without reading them
    /// (`--offline`, `--base`): their values are not compared.
    pub unread_secrets: Vec<String>,
    /// What each object the plan read was (its resourceVersion, its file's hash, or absent): a
    /// saved plan is applied only while they all still hold (see [`saved`]).
    pub preconditions: BTreeMap<ResourceId, Precondition>,
    /// Set when `--target`/`--exclude` cut the plan down ([`select`]): the plan is partial.
    pub targeting: Option<Targeting>,
    /// Kube: the `resourceVersion` each write must still find, sent as `metadata.resourceVersion`
    /// (the server answers 409 Conflict when the object moved). Set when applying a saved plan.
    pub expect_versions: BTreeMap<ResourceId, String>,
    /// The hosts (`[hosts.<name>]`) that could not be observed, and why: the plan has nothing
    /// of theirs, and applying it changes nothing there.
    pub unreached: Vec<HostFailure>,
}

/// Where a change happens, as plans group them: the cluster, then this machine, then each host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    /// The Kubernetes cluster.
    Cluster,
    /// The machine labctl runs on (`[host]`, named `local`).
    Local,
    /// A `[hosts.<name>]` machine.
    Host(String),
}

impl Place {
    /// Where `id` is.
    pub fn of(id: &ResourceId) -> Place {
        match (id.plane(), id.host()) {
            (Plane::Kube, _) => Place::Cluster,
            (Plane::Systemd, None) => Place::Local,
            (Plane::Systemd, Some(h)) => Place::Host(h.to_string()),
        }
    }

    /// Its name in summaries: `cluster`, `local` or the host's.
    pub fn name(&self) -> &str {
        match self {
            Place::Cluster => "cluster",
            Place::Local => crate::stack::LOCAL_HOST,
            Place::Host(h) => h,
        }
    }
}

/// How `--target`/`--exclude` cut a plan down.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Targeting {
    /// The `--target` patterns.
    pub targets: Vec<String>,
    /// The `--exclude` patterns.
    pub excludes: Vec<String>,
    /// Changes kept although no pattern named them: a targeted change depends on them.
    pub dependencies: Vec<ResourceId>,
    /// How many changes that do something were left out.
    pub left_out: usize,
}

/// Counts for the summary line. A replace counts as one add and one destroy, as in Terraform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Resources created (including replaced).
    pub add: usize,
    /// Resources changed in place.
    pub change: usize,
    /// Resources destroyed (including replaced).
    pub destroy: usize,
}

impl Plan {
    /// The `[hosts.<name>]` machines this plan is about (observed, changed or not reached), by
    /// name; empty for a plan of the cluster and this machine alone, which views show as they
    /// always have.
    pub fn hosts(&self) -> Vec<String> {
        let mut out: std::collections::BTreeSet<String> = self
            .changes
            .iter()
            .filter_map(|c| c.id.host().map(str::to_string))
            .collect();
        out.extend(self.targets.iter().filter_map(|t| match t {
            PlaneTarget::Systemd(t) => t.host().map(str::to_string),
            PlaneTarget::Kube(_) => None,
        }));
        out.extend(self.unreached.iter().map(|u| u.host.clone()));
        out.into_iter().collect()
    }

    /// The places a plan of several hosts shows, in order, each with its counts (`None` for a
    /// host not reached): the cluster when planned, this machine, each host.
    pub fn places(&self) -> Vec<(Place, Option<Summary>)> {
        let mut places: Vec<Place> = Vec::new();
        let kube = self.changes.iter().any(|c| c.id.plane() == Plane::Kube)
            || self.targets.iter().any(|t| t.plane() == Plane::Kube);
        if kube {
            places.push(Place::Cluster);
        }
        let local = self
            .changes
            .iter()
            .any(|c| Place::of(&c.id) == Place::Local)
            || self
                .targets
                .iter()
                .any(|t| matches!(t, PlaneTarget::Systemd(t) if t.host().is_none()));
        if local {
            places.push(Place::Local);
        }
        places.extend(self.hosts().into_iter().map(Place::Host));
        places
            .into_iter()
            .map(|p| {
                let reached = match &p {
                    Place::Host(h) => !self.unreached.iter().any(|u| &u.host == h),
                    _ => true,
                };
                let s =
                    reached.then(|| summarize(self.actionable().filter(|c| Place::of(&c.id) == p)));
                (p, s)
            })
            .collect()
    }

    /// Changes that do something.
    pub fn actionable(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action != Action::NoOp)
    }

    /// Changes the server refused in a dry run: applying them would fail.
    pub fn refused(&self) -> impl Iterator<Item = &Change> {
        self.actionable().filter(|c| c.refused().is_some())
    }

    /// Whether applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.actionable().next().is_none()
    }

    /// Counts by action.
    pub fn summary(&self) -> Summary {
        summarize(self.actionable())
    }
}

/// Counts by action of `changes`.
fn summarize<'a>(changes: impl Iterator<Item = &'a Change>) -> Summary {
    let mut s = Summary::default();
    for c in changes {
        match c.action {
            Action::Create => s.add += 1,
            Action::Update | Action::Adopt => s.change += 1,
            Action::Delete => s.destroy += 1,
            Action::Replace => {
                s.add += 1;
                s.destroy += 1;
            }
            Action::NoOp => {}
        }
    }
    s
}

/// Free `value` on a thread of its own. A plan of a large stack owns thousands of JSON trees,
/// and freeing them takes a tenth of the plan's own time: the caller goes on (prints, exits)
/// meanwhile. Only plain data comes here, nothing whose drop does something.
pub fn drop_later<T: Send + 'static>(value: T) {
    // When no thread can be started the closure, and `value` with it, is dropped right here.
    let _ = std::thread::Builder::new()
        .name("drop".into())
        .spawn(move || drop(value));
}
