//! What the backends observe, as plain data: the one place both the backends (which fill it)
//! and planning (which decides what it means) import, so that neither imports the other.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiStatus;
use crate::resource::ResourceId;

/// The field manager labctl applies as.
pub const FIELD_MANAGER: &str = "labctl";

/// What the kube backend observed, raw: objects by id as the server returned them, and the
/// desired kinds the server does not serve (yet: a CRD applied in the same run defines them).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Objects carrying the stack's labels (from the LISTs), and desired objects that exist
    /// without them (from GETs).
    pub objects: BTreeMap<ResourceId, Value>,
    /// Desired kinds the server does not serve; their objects are planned as creations.
    pub unknown_kinds: BTreeSet<(String, String)>,
    /// Desired objects this account may not read (403), with the server's message: left out
    /// of the plan.
    pub forbidden: BTreeMap<ResourceId, String>,
    /// How observing went, for `-v` (a fallback to namespaced LISTs).
    pub details: Vec<String>,
}

/// A server-side dry-run apply, served by the backend: what the server would store for `obj`.
/// Planning uses it to check each change with the server (`--server-dry-run`).
pub trait DryRun: Sync {
    /// The object the server would store if `obj` were applied as labctl (`force`: taking
    /// ownership of conflicting fields), without storing it.
    ///
    /// # Errors
    /// [`DryRunError::Refused`] when the server answers with an error status,
    /// [`DryRunError::Unchecked`] when it could not be asked.
    fn dry_run<'a>(
        &'a self,
        id: &'a ResourceId,
        obj: &'a Value,
        force: bool,
    ) -> BoxFuture<'a, Result<Value, DryRunError>>;
}

/// Why a dry run gave no object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRunError {
    /// The server refused it (409, 422, 403 from admission or a quota...): its answer.
    Refused(ApiStatus),
    /// The server could not be asked (its kind is not served yet, the connection failed).
    Unchecked(String),
}

// The host.

/// What the systemd backend observed about one unit, raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedUnit {
    /// The unit's name.
    pub name: String,
    /// Its properties.
    pub state: UnitState,
    /// The text of the file systemd loaded it from, when that file is outside labctl's unit
    /// folder (a package's unit, or another tool's).
    pub loaded_elsewhere: Option<String>,
}

/// What systemd reported about one unit (`org.freedesktop.systemd1.Unit` properties).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnitState {
    /// `LoadState`: `loaded`, `not-found`, `bad-setting`, `error` or `masked`.
    pub load_state: String,
    /// `ActiveState`: `active`, `reloading`, `inactive`, `failed`, `activating`, `deactivating`.
    pub active_state: String,
    /// `SubState`, as `running`, `dead`, `auto-restart`.
    pub sub_state: String,
    /// `UnitFileState`: `enabled`, `disabled`, `static`, `masked`, ... (empty when unknown).
    pub unit_file_state: String,
    /// `NeedDaemonReload`: the file on disk is newer than what systemd loaded.
    pub need_daemon_reload: bool,
    /// `FragmentPath`: the file systemd loaded the unit from.
    pub fragment_path: String,
    /// `DropInPaths`: drop-ins that change the effective unit.
    pub drop_in_paths: Vec<String>,
    /// An apply wrote the unit's new content and was stopped before its restart (or reload)
    /// was done: its marker ([`crate::backend::systemd::Target::restart_marker`]) is still there.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restart_owed: bool,
}

impl UnitState {
    /// Running, or about to be: a unit in `auto-restart` has crashed and does not count.
    pub fn is_running(&self) -> bool {
        match self.active_state.as_str() {
            "active" | "reloading" => true,
            "activating" => self.sub_state != "auto-restart",
            _ => false,
        }
    }

    /// Whether its `[Install]` symlinks exist.
    pub fn is_enabled(&self) -> bool {
        matches!(
            self.unit_file_state.as_str(),
            "enabled" | "enabled-runtime" | "linked" | "linked-runtime"
        )
    }

    /// Whether the unit or its file is masked.
    pub fn is_masked(&self) -> bool {
        self.load_state == "masked" || self.unit_file_state.starts_with("masked")
    }
}
