//! The systemd backend: observes units and runs jobs over D-Bus (`org.freedesktop.systemd1`). The
//! only importer of `zbus`. It never decides what to do: [`crate::plan`] does, [`crate::apply`]
//! sequences.
//!
//! Every method counts its D-Bus calls and the time spent, for `-v` ([`Systemd::stats`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use tokio::sync::mpsc;
use zbus::names::InterfaceName;
use zbus::proxy::CacheProperties;
use zbus::{Connection, OwnedObjectPath, OwnedVariant, fdo, proxy};

use super::Stats;
use crate::error::Error;
use crate::observed::{ObservedUnit, UnitState};
use crate::stack::Scope;

const SERVICE: &str = "org.freedesktop.systemd1";
const UNIT_IFACE: InterfaceName<'static> =
    InterfaceName::from_static_str_unchecked("org.freedesktop.systemd1.Unit");
/// How long one batch of jobs may take. systemd's own start timeout (90 s by default) ends a stuck
/// job with result `timeout` well before this.
const JOB_WAIT: Duration = Duration::from_secs(600);

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

/// Which manager, and where its unit files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// System manager (system bus) or the user's (session bus).
    pub scope: Scope,
    /// Folder labctl writes unit files to and looks for its own files in.
    pub unit_dir: PathBuf,
}

impl Target {
    /// The target for a stack: `--user` (or `host.scope = "user"`) picks the user manager;
    /// `host.unit_dir` overrides the scope's folder (`/etc/systemd/system`,
    /// `$XDG_CONFIG_HOME/systemd/user`, by default `~/.config/systemd/user`).
    ///
    /// # Errors
    /// [`Error::Backend`] when the user folder is asked for and neither `XDG_CONFIG_HOME` nor `HOME`
    /// is set.
    pub fn resolve(scope: Scope, user_flag: bool, unit_dir: Option<&Path>) -> Result<Self, Error> {
        let scope = if user_flag { Scope::User } else { scope };
        let unit_dir = match (unit_dir, scope) {
            (Some(d), _) => d.to_path_buf(),
            (None, Scope::System) => PathBuf::from("/etc/systemd/system"),
            (None, Scope::User) => {
                let config = std::env::var_os("XDG_CONFIG_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                    .ok_or_else(|| {
                        backend(
                            "find the user unit folder",
                            "neither XDG_CONFIG_HOME nor HOME is set",
                        )
                    })?;
                config.join("systemd/user")
            }
        };
        Ok(Target { scope, unit_dir })
    }

    /// The command that shows a unit's log.
    pub fn log_command(&self, unit: &str) -> String {
        match self.scope {
            Scope::User => format!("journalctl --user -u {unit}"),
            Scope::System => format!("journalctl -u {unit}"),
        }
    }

    /// Where labctl keeps `unit`'s file.
    pub fn unit_path(&self, unit: &str) -> PathBuf {
        self.unit_dir.join(unit)
    }
}

/// A job labctl asks systemd to run on a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobKind {
    /// `StartUnit`.
    Start,
    /// `StopUnit`.
    Stop,
    /// `RestartUnit`.
    Restart,
    /// `ReloadUnit`.
    Reload,
}

impl JobKind {
    /// Lowercase verb, as `start`.
    pub fn verb(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
            JobKind::Reload => "reload",
        }
    }
}

/// How one job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// The unit.
    pub unit: String,
    /// What was asked.
    pub kind: JobKind,
    /// How it ended.
    pub result: JobResult,
}

/// How one job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// It ran; systemd's result word: `done`, `failed`, `timeout`, `dependency`, `canceled`,
    /// `skipped`.
    Ran(String),
    /// systemd refused to queue it (a bad unit file, say): its message.
    NotQueued(String),
}

impl JobOutcome {
    /// Whether the job did what was asked.
    pub fn ok(&self) -> bool {
        self.result == JobResult::Ran("done".into())
    }
}

/// A connection to one systemd manager.
pub struct Systemd {
    target: Target,
    conn: Connection,
    manager: ManagerProxy<'static>,
    calls: AtomicU64,
    elapsed: Mutex<Duration>,
    jobs: tokio::sync::Mutex<Option<Jobs>>,
}

/// Finished jobs as `JobRemoved` reports them, collected by a task that drains the signal stream
/// (an undrained stream would stall the connection once its queue fills).
struct Jobs {
    rx: mpsc::UnboundedReceiver<(String, String, String)>,
    done: HashMap<String, (String, String)>,
    drain: tokio::task::JoinHandle<()>,
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if let Ok(mut j) = self.jobs.try_lock()
            && let Some(j) = j.take()
        {
            j.drain.abort();
        }
    }
}

fn backend(step: &str, cause: impl Into<crate::error::Cause>) -> Error {
    Error::backend("systemd", step, cause)
}

/// The D-Bus object path of a unit: systemd escapes every byte that is not a letter (or a digit
/// after the first) as `_xx`.
pub fn unit_object_path(unit: &str) -> String {
    let mut out = String::from("/org/freedesktop/systemd1/unit/");
    if unit.is_empty() {
        out.push('_');
    }
    for (i, b) in unit.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

impl Systemd {
    /// Connect to the target's manager: the system bus, or the session bus for the user manager.
    ///
    /// # Errors
    /// [`Error::Backend`] when the bus cannot be reached.
    pub async fn connect(target: Target) -> Result<Self, Error> {
        let start = Instant::now();
        let (bus, conn) = match target.scope {
            Scope::System => ("system bus", Connection::system().await),
            Scope::User => ("session bus", Connection::session().await),
        };
        let conn = conn.map_err(|e| backend(&format!("connect to the {bus}"), e))?;
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| backend("create the manager proxy", e))?;
        Ok(Systemd {
            target,
            conn,
            manager,
            // `Hello`, which every connection sends first.
            calls: AtomicU64::new(1),
            elapsed: Mutex::new(start.elapsed()),
            jobs: tokio::sync::Mutex::new(None),
        })
    }

    /// Where this backend reads and writes.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Calls made and time spent so far.
    pub fn stats(&self) -> Stats {
        Stats {
            calls: self.calls.load(Ordering::Relaxed),
            elapsed: *self.elapsed.lock().expect("not poisoned"),
        }
    }

    fn count(&self, n: u64) {
        self.calls.fetch_add(n, Ordering::Relaxed);
    }

    fn spent(&self, since: Instant) {
        *self.elapsed.lock().expect("not poisoned") += since.elapsed();
    }

    /// The regular files in the unit folder by name, with their text (no `*.wants/` folders, no
    /// `systemctl link` symlinks, no dot files).
    ///
    /// # Errors
    /// [`Error::Read`] when the folder or a file in it cannot be read.
    pub fn unit_files(&self) -> Result<BTreeMap<String, String>, Error> {
        read_unit_dir(&self.target.unit_dir)
    }

    /// What systemd reports about each unit in `names`: its properties, its file's enablement
    /// read from disk now, and, when systemd loaded it from a file outside labctl's unit folder,
    /// that file's text. One `GetAll` per unit and one `ListUnitFilesByPatterns` for all, every
    /// call in flight at once: one round trip.
    ///
    /// # Errors
    /// [`Error::Read`] when a loaded file cannot be read; [`Error::Backend`] when systemd does
    /// not answer.
    pub async fn observe(&self, names: &[String]) -> Result<Vec<ObservedUnit>, Error> {
        let start = Instant::now();
        let patterns: Vec<&str> = names.iter().map(String::as_str).collect();
        let (states, files_now) = futures_util::join!(
            join_all(names.iter().map(|n| self.unit_state(n))),
            self.manager.list_unit_files_by_patterns(&[], &patterns)
        );
        self.count(names.len() as u64 + 1);
        let file_states: HashMap<String, String> = files_now
            .map_err(|e| backend("list unit files", e))?
            .into_iter()
            .filter_map(|(path, state)| {
                let name = Path::new(&path).file_name()?.to_string_lossy().into_owned();
                Some((name, state))
            })
            .collect();
        let mut out = Vec::new();
        for (name, state) in names.iter().zip(states) {
            let mut state = state?;
            if let Some(s) = file_states.get(name) {
                state.unit_file_state = s.clone();
            }
            let fragment = Path::new(&state.fragment_path);
            let elsewhere = if !state.fragment_path.is_empty()
                && fragment != self.target.unit_path(name)
                && fragment.exists()
            {
                Some(
                    std::fs::read_to_string(fragment).map_err(|source| Error::Read {
                        path: fragment.to_path_buf(),
                        source,
                    })?,
                )
            } else {
                None
            };
            out.push(ObservedUnit {
                name: name.clone(),
                state,
                loaded_elsewhere: elsewhere,
            });
        }
        self.spent(start);
        Ok(out)
    }

    async fn unit_state(&self, unit: &str) -> Result<UnitState, Error> {
        let step = || format!("read the state of `{unit}`");
        let props = fdo::PropertiesProxy::builder(&self.conn)
            .destination(SERVICE)
            .path(unit_object_path(unit))
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| backend(&step(), e))?;
        let all = props
            .get_all(UNIT_IFACE)
            .await
            .map_err(|e| backend(&step(), e))?;
        let text = |k: &str| {
            all.get(k)
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| String::try_from(v).ok())
                .unwrap_or_default()
        };
        let flag = |k: &str| {
            all.get(k)
                .and_then(|v| bool::try_from(v.try_clone().ok()?).ok())
                .unwrap_or(false)
        };
        let list = |k: &str| -> Vec<String> {
            all.get(k)
                .and_then(|v: &OwnedVariant| v.try_clone().ok())
                .and_then(|v| Vec::<String>::try_from(v).ok())
                .unwrap_or_default()
        };
        let drop_in_paths = list("DropInPaths");
        // systemd caches folder listings until a daemon-reload, so `NeedDaemonReload` misses a new
        // drop-in in labctl's own folder; compare with the disk.
        let unread = drop_ins_on_disk(&self.target.unit_dir, unit)
            .iter()
            .any(|p| !drop_in_paths.contains(p));
        Ok(UnitState {
            load_state: text("LoadState"),
            active_state: text("ActiveState"),
            sub_state: text("SubState"),
            // Replaced by the fresh state from the file listing, when the unit has a file.
            unit_file_state: text("UnitFileState"),
            need_daemon_reload: flag("NeedDaemonReload") || unread,
            fragment_path: text("FragmentPath"),
            drop_in_paths,
        })
    }

    /// `daemon-reload`; returns once systemd has re-read every unit file.
    ///
    /// # Errors
    /// [`Error::Backend`] when systemd refuses.
    pub async fn daemon_reload(&self) -> Result<(), Error> {
        let start = Instant::now();
        self.count(1);
        let r = self
            .manager
            .reload()
            .await
            .map_err(|e| backend("daemon-reload", e));
        self.spent(start);
        r
    }

    /// Enable unit files (create their `[Install]` symlinks), replacing conflicting symlinks.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the units when systemd refuses.
    pub async fn enable(&self, units: &[String]) -> Result<(), Error> {
        if units.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        self.count(1);
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        let r = self.manager.enable_unit_files(&names, false, true).await;
        self.spent(start);
        r.map(|_| ())
            .map_err(|e| backend(&format!("enable `{}`", units.join("`, `")), e))
    }

    /// Disable unit files (remove their `[Install]` symlinks).
    ///
    /// # Errors
    /// [`Error::Backend`] naming the units when systemd refuses.
    pub async fn disable(&self, units: &[String]) -> Result<(), Error> {
        if units.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        self.count(1);
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        let r = self.manager.disable_unit_files(&names, false).await;
        self.spent(start);
        r.map(|_| ())
            .map_err(|e| backend(&format!("disable `{}`", units.join("`, `")), e))
    }

    /// Queue one job per unit, all at once, and wait for each through `JobRemoved`. systemd orders
    /// them by the units' dependencies; a job whose dependency failed ends as `dependency` while the
    /// others carry on. `each` is called as every job ends (for progress).
    ///
    /// # Errors
    /// [`Error::Backend`] when the signal subscription fails or jobs outlast [`JOB_WAIT`]; a job
    /// that fails is an outcome, not an error.
    pub async fn run_jobs(
        &self,
        kind: JobKind,
        units: &[String],
        mut each: impl FnMut(&JobOutcome),
    ) -> Result<Vec<JobOutcome>, Error> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let start = Instant::now();
        let mut guard = self.jobs.lock().await;
        // Subscribed before the first job is queued: a job can finish before its call returns.
        if guard.is_none() {
            *guard = Some(self.subscribe().await?);
        }
        let jobs = guard.as_mut().expect("just set");
        let queued = join_all(units.iter().map(|u| async move {
            let r = match kind {
                JobKind::Start => self.manager.start_unit(u, "replace").await,
                JobKind::Stop => self.manager.stop_unit(u, "replace").await,
                JobKind::Restart => self.manager.restart_unit(u, "replace").await,
                JobKind::Reload => self.manager.reload_unit(u, "replace").await,
            };
            (u.clone(), r)
        }))
        .await;
        self.count(units.len() as u64);
        let mut outcomes = Vec::new();
        let mut pending: BTreeMap<String, String> = BTreeMap::new();
        for (unit, r) in queued {
            match r {
                Ok(job) => {
                    pending.insert(job.as_str().to_string(), unit);
                }
                Err(e) => {
                    let o = JobOutcome {
                        unit,
                        kind,
                        result: JobResult::NotQueued(dbus_message(&e)),
                    };
                    each(&o);
                    outcomes.push(o);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + JOB_WAIT;
        loop {
            let finished: Vec<String> = pending
                .keys()
                .filter(|j| jobs.done.contains_key(*j))
                .cloned()
                .collect();
            for job in finished {
                let unit = pending.remove(&job).expect("pending");
                let (_, result) = jobs.done.remove(&job).expect("done");
                let o = JobOutcome {
                    unit,
                    kind,
                    result: JobResult::Ran(result),
                };
                each(&o);
                outcomes.push(o);
            }
            if pending.is_empty() {
                break;
            }
            match tokio::time::timeout_at(deadline, jobs.rx.recv()).await {
                Ok(Some((job, unit, result))) => {
                    jobs.done.insert(job, (unit, result));
                }
                Ok(None) => {
                    self.spent(start);
                    return Err(backend(
                        &format!("wait for {} jobs", kind.verb()),
                        "the D-Bus connection closed",
                    ));
                }
                Err(_) => {
                    self.spent(start);
                    let units: Vec<&str> = pending.values().map(String::as_str).collect();
                    return Err(backend(
                        &format!("wait for {} jobs", kind.verb()),
                        format!(
                            "`{}` still queued after {} s",
                            units.join("`, `"),
                            JOB_WAIT.as_secs()
                        ),
                    ));
                }
            }
        }
        self.spent(start);
        Ok(outcomes)
    }

    async fn subscribe(&self) -> Result<Jobs, Error> {
        let mut stream = self
            .manager
            .receive_job_removed()
            .await
            .map_err(|e| backend("watch JobRemoved", e))?;
        self.manager
            .subscribe()
            .await
            .map_err(|e| backend("subscribe to systemd's signals", e))?;
        // `AddMatch` for the stream, then `Subscribe`.
        self.count(2);
        let (tx, rx) = mpsc::unbounded_channel();
        let drain = tokio::spawn(async move {
            while let Some(signal) = stream.next().await {
                if let Ok(a) = signal.args()
                    && tx
                        .send((
                            a.job().to_string(),
                            a.unit().to_string(),
                            a.result().to_string(),
                        ))
                        .is_err()
                {
                    break;
                }
            }
        });
        Ok(Jobs {
            rx,
            done: HashMap::new(),
            drain,
        })
    }

    /// `ActiveState` and `SubState` of each unit, read through the typed unit proxy.
    ///
    /// # Errors
    /// [`Error::Backend`] when systemd does not answer.
    pub async fn active_states(&self, units: &[String]) -> Result<Vec<(String, String)>, Error> {
        let start = Instant::now();
        let states = join_all(units.iter().map(|u| async move {
            let step = || format!("read the state of `{u}`");
            let p = UnitProxy::builder(&self.conn)
                .path(unit_object_path(u))
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(|e| backend(&step(), e))?;
            let (a, s) = futures_util::join!(p.active_state(), p.sub_state());
            Ok::<_, Error>((
                a.map_err(|e| backend(&step(), e))?,
                s.map_err(|e| backend(&step(), e))?,
            ))
        }))
        .await;
        self.count(2 * units.len() as u64);
        self.spent(start);
        states.into_iter().collect()
    }

    /// `Type` and `NRestarts` of each unit that is a service (`None` for the others), read
    /// through the typed service proxy.
    ///
    /// # Errors
    /// [`Error::Backend`] when systemd does not answer.
    pub async fn service_types_and_restarts(
        &self,
        units: &[String],
    ) -> Result<Vec<Option<(String, u32)>>, Error> {
        let start = Instant::now();
        let services = units.iter().filter(|u| u.ends_with(".service")).count();
        let out = join_all(units.iter().map(|u| async move {
            if !u.ends_with(".service") {
                return Ok(None);
            }
            let step = || format!("read the service state of `{u}`");
            let p = ServiceProxy::builder(&self.conn)
                .path(unit_object_path(u))
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(|e| backend(&step(), e))?;
            let (t, n) = futures_util::join!(p.service_type(), p.n_restarts());
            Ok::<_, Error>(Some((
                t.map_err(|e| backend(&step(), e))?,
                n.map_err(|e| backend(&step(), e))?,
            )))
        }))
        .await;
        self.count(2 * services as u64);
        self.spent(start);
        out.into_iter().collect()
    }
}

/// The text of a D-Bus error without zbus's wrapping (`org.freedesktop.systemd1.NoSuchUnit: ...`).
fn dbus_message(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{msg} ({name})"),
        other => other.to_string(),
    }
}

/// `DIR/UNIT.d/*.conf`, as systemd names drop-ins in `DropInPaths`.
fn drop_ins_on_disk(dir: &Path, unit: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join(format!("{unit}.d"))) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// Unit files in `dir` by name. A folder that does not exist (or is not a folder) holds none.
fn read_unit_dir(dir: &Path) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(out);
        }
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for e in entries {
        let e = e.map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        // Only regular files: `*.wants/` folders and `systemctl link` symlinks are not labctl's.
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if !ft.is_file() || name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read { path, source })?;
        out.insert(name, text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_are_escaped_as_systemd_does() {
        assert_eq!(
            unit_object_path("t1.service"),
            "/org/freedesktop/systemd1/unit/t1_2eservice"
        );
        assert_eq!(
            unit_object_path("1a-b.timer"),
            "/org/freedesktop/systemd1/unit/_31a_2db_2etimer"
        );
        assert_eq!(
            unit_object_path("x@y.service"),
            "/org/freedesktop/systemd1/unit/x_40y_2eservice"
        );
    }

    #[test]
    fn user_scope_uses_xdg_config_home_unless_overridden() {
        let t = Target::resolve(Scope::System, false, None).unwrap();
        assert_eq!(t.unit_dir, PathBuf::from("/etc/systemd/system"));
        let t = Target::resolve(Scope::System, true, Some(Path::new("/x"))).unwrap();
        assert_eq!(
            (t.scope, t.unit_dir.clone()),
            (Scope::User, PathBuf::from("/x"))
        );
        assert_eq!(t.log_command("a.service"), "journalctl --user -u a.service");
    }
}

/// A service's state and how its last run ended, as `GET /pipelines/<name>` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceStatus {
    /// `loaded`, `not-found`, `bad-setting`, ...
    pub load_state: String,
    /// `active`, `activating`, `inactive`, `failed`, ...
    pub active_state: String,
    /// Finer state, as `running`, `start`, `dead`.
    pub sub_state: String,
    /// systemd's verdict on the last run: `success`, `exit-code`, `signal`, `timeout`, ...
    pub result: String,
    /// Exit status (or signal number) of the main process's last run.
    pub exec_main_status: i32,
    /// When the unit last left `inactive` (a run started), µs since the epoch (0: never).
    pub started_us: u64,
    /// When the unit last became `inactive` or `failed` again (a run ended), µs since the epoch
    /// (0: never).
    pub ended_us: u64,
}

impl Systemd {
    /// Whether the manager answers (`org.freedesktop.DBus.Peer.Ping`).
    ///
    /// # Errors
    /// [`Error::Backend`] when it does not.
    pub async fn ping(&self) -> Result<(), Error> {
        let start = Instant::now();
        self.count(1);
        let r = async {
            fdo::PeerProxy::builder(&self.conn)
                .destination(SERVICE)
                .path("/org/freedesktop/systemd1")
                .cache_properties(CacheProperties::No)
                .build()
                .await?
                .ping()
                .await
        }
        .await
        .map_err(|e| backend("ping the manager", dbus_message(&e)));
        self.spent(start);
        r
    }

    /// Queue one job on `unit` and return its object path at once, without waiting for it.
    ///
    /// # Errors
    /// [`Error::Backend`] with systemd's reason when it refuses to queue the job (no such unit, a
    /// bad unit file).
    pub async fn queue_job(&self, kind: JobKind, unit: &str) -> Result<String, Error> {
        let start = Instant::now();
        self.count(1);
        let r = match kind {
            JobKind::Start => self.manager.start_unit(unit, "replace").await,
            JobKind::Stop => self.manager.stop_unit(unit, "replace").await,
            JobKind::Restart => self.manager.restart_unit(unit, "replace").await,
            JobKind::Reload => self.manager.reload_unit(unit, "replace").await,
        };
        self.spent(start);
        r.map(|job| job.as_str().to_string())
            .map_err(|e| backend(&format!("{} `{unit}`", kind.verb()), dbus_message(&e)))
    }

    /// The state of service `unit` and the result of its last run.
    ///
    /// # Errors
    /// [`Error::Backend`] when systemd does not answer.
    pub async fn service_status(&self, unit: &str) -> Result<ServiceStatus, Error> {
        const SERVICE_IFACE: InterfaceName<'static> =
            InterfaceName::from_static_str_unchecked("org.freedesktop.systemd1.Service");
        let start = Instant::now();
        let step = || format!("read the state of `{unit}`");
        // Loading the unit first gives a not-found unit an object to read `LoadState` from.
        let path = self
            .manager
            .load_unit(unit)
            .await
            .map_err(|e| backend(&step(), dbus_message(&e)))?;
        let props = fdo::PropertiesProxy::builder(&self.conn)
            .destination(SERVICE)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| backend(&step(), e))?;
        let (u, s) = futures_util::join!(props.get_all(UNIT_IFACE), props.get_all(SERVICE_IFACE));
        self.count(3);
        self.spent(start);
        let u = u.map_err(|e| backend(&step(), e))?;
        // A unit that does not exist has no Service interface to read.
        let s = s.unwrap_or_default();
        fn get<T: TryFrom<OwnedVariant>>(
            all: &HashMap<String, OwnedVariant>,
            k: &str,
        ) -> Option<T> {
            T::try_from(all.get(k)?.try_clone().ok()?).ok()
        }
        Ok(ServiceStatus {
            load_state: get(&u, "LoadState").unwrap_or_default(),
            active_state: get(&u, "ActiveState").unwrap_or_default(),
            sub_state: get(&u, "SubState").unwrap_or_default(),
            result: get(&s, "Result").unwrap_or_default(),
            exec_main_status: get(&s, "ExecMainStatus").unwrap_or_default(),
            started_us: get(&u, "InactiveExitTimestamp").unwrap_or_default(),
            ended_us: get(&u, "InactiveEnterTimestamp").unwrap_or_default(),
        })
    }
}
