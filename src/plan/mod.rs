//! The plan: pure data saying what apply would do, and the pure function that computes it.

mod diff;
pub mod kube;
mod redact;
mod units;

use serde::Serialize;

pub use diff::{Live, LiveObject, diff};
pub use redact::redact_secret;
pub use units::{UnitState, installable, wants_active};

use crate::resource::ResourceId;

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

/// One planned change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// What it is.
    pub id: ResourceId,
    /// Its component in stack.toml (empty for live objects no component renders any more).
    pub component: String,
    /// What happens to it.
    pub action: Action,
    /// Content before, redacted (none when created).
    pub before: Option<String>,
    /// Content after, redacted (none when deleted).
    pub after: Option<String>,
    /// Consequences, in the order they happen.
    pub impact: Vec<Impact>,
    /// Explanations: why a replace, what drifted. They explain; they decide nothing.
    pub notes: Vec<String>,
}

/// The whole plan, sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Every change, no-ops included (views hide them).
    pub changes: Vec<Change>,
}

/// Counts for the summary line. A replace counts as one add and one destroy, as in Terraform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Resources created (including replaced).
    pub add: usize,
    /// Resources changed in place.
    pub change: usize,
    /// Resources destroyed (including replaced).
    pub destroy: usize,
}

impl Plan {
    /// Changes that do something.
    pub fn actionable(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action != Action::NoOp)
    }

    /// Whether applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.actionable().next().is_none()
    }

    /// Counts by action.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in self.actionable() {
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
}
