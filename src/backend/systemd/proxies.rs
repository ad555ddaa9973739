//! The manager's D-Bus interfaces (`org.freedesktop.systemd1.*`), the parts labctl uses, as zbus
//! proxies.

use zbus::OwnedObjectPath;
use zbus::proxy;

/// `org.freedesktop.systemd1.Manager`, the part labctl uses.
#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Manager {
    /// Ask for signals (`JobRemoved`); systemd sends none to a bus nobody subscribed from.
    fn subscribe(&self) -> zbus::Result<()>;
    /// The object path of a unit, loading it if needed (never starting it).
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    /// Queue a start job.
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Queue a stop job.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Queue a restart job.
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Queue a reload job.
    fn reload_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// `daemon-reload`: re-read every unit file. Returns when done.
    fn reload(&self) -> zbus::Result<()>;
    /// Create the `[Install]` symlinks of unit files.
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;
    /// Unit files matching the patterns, with their enablement read from disk now (the
    /// `UnitFileState` unit property is cached until the next daemon-reload and misses a
    /// `systemctl disable`). An empty `states` means every state.
    fn list_unit_files_by_patterns(
        &self,
        states: &[&str],
        patterns: &[&str],
    ) -> zbus::Result<Vec<(String, String)>>;
    /// Remove the `[Install]` symlinks of unit files.
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;
    /// A job finished, with its result: `done`, `canceled`, `timeout`, `failed`, `dependency` or
    /// `skipped`.
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: zbus::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

/// `org.freedesktop.systemd1.Unit`, the part labctl reads one at a time (observation batches with
/// `GetAll` instead).
#[proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    assume_defaults = false
)]
pub trait Unit {
    /// `active`, `reloading`, `inactive`, `failed`, `activating` or `deactivating`.
    #[zbus(property(emits_changed_signal = "false"))]
    fn active_state(&self) -> zbus::Result<String>;
    /// Finer state, as `running` or `dead`.
    #[zbus(property(emits_changed_signal = "false"))]
    fn sub_state(&self) -> zbus::Result<String>;
}

/// `org.freedesktop.systemd1.Service`, the part the collector reads.
#[proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1",
    assume_defaults = false
)]
pub trait Service {
    /// The unit's `Type=`: `simple`, `exec`, `notify`, `oneshot`, `forking`, ...
    #[zbus(property(emits_changed_signal = "false"), name = "Type")]
    fn service_type(&self) -> zbus::Result<String>;
    /// Automatic restarts (`Restart=`) since the service was last started by hand.
    #[zbus(property(emits_changed_signal = "false"), name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;
}
