//! The systemd backend: observes units and runs jobs over D-Bus (`org.freedesktop.systemd1`). The
//! only importer of `zbus`. It never decides what to do: [`crate::plan`] does, [`crate::apply`]
//! sequences.
//!
//! Every method counts its D-Bus calls and the time spent, for `-v` ([`Systemd::stats`]).

mod files;
mod jobs;
mod observe;
mod proxies;
mod status;

pub use files::{Staged, UnitDir, Writes};
pub use proxies::{ManagerProxy, ServiceProxy, UnitProxy};
pub use status::ServiceStatus;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use tokio::sync::mpsc;
use zbus::names::InterfaceName;
use zbus::proxy::CacheProperties;
use zbus::{Connection, OwnedVariant, fdo};

use super::Stats;
use super::ssh::{Bridge, Remote};
use crate::error::Error;
use crate::observed::{ObservedUnit, UnitState};
use crate::stack::Scope;

const SERVICE: &str = "org.freedesktop.systemd1";
const UNIT_IFACE: InterfaceName<'static> =
    InterfaceName::from_static_str_unchecked("org.freedesktop.systemd1.Unit");
/// How long one batch of jobs may take. systemd's own start timeout (90 s by default) ends a stuck
/// job with result `timeout` well before this.
const JOB_WAIT: Duration = Duration::from_secs(600);

/// Which manager, on which machine, and where its unit files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// System manager (system bus) or the user's (session bus).
    pub scope: Scope,
    /// Folder labctl writes unit files to and looks for its own files in.
    pub unit_dir: PathBuf,
    /// The `[hosts.<name>]` machine, reached over ssh; `None` for the one labctl runs on.
    pub remote: Option<Remote>,
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
        Ok(Target {
            scope,
            unit_dir,
            remote: None,
        })
    }

    /// The target for the manager of another machine: reaches it (its master connection, the
    /// check that the bridge is installed), which finds its unit folder there (the one the
    /// stack names, else `/etc/systemd/system`, or the ssh user's
    /// `$XDG_CONFIG_HOME/systemd/user`).
    ///
    /// # Errors
    /// As [`Remote::connect`]; [`Error::Backend`] when the user's folders are unknown there.
    pub async fn on(remote: Remote) -> Result<Self, Error> {
        remote.connect().await?;
        let unit_dir = remote
            .unit_dir()
            .filter(|d| d.is_absolute())
            .ok_or_else(|| {
                backend(
                    &format!("find the user unit folder on host `{}`", remote.name()),
                    "neither XDG_CONFIG_HOME nor HOME is set there",
                )
            })?;
        Ok(Target {
            scope: remote.scope(),
            unit_dir,
            remote: Some(remote),
        })
    }

    /// The `[hosts.<name>]` this manager runs on; `None` for the machine labctl runs on.
    pub fn host(&self) -> Option<&str> {
        self.remote.as_ref().map(Remote::name)
    }

    /// A variable of the manager's user's environment (`HOME`, `XDG_CONFIG_HOME`): this
    /// process's own here, as the probe found it on another host.
    pub fn var(&self, name: &str) -> Option<String> {
        match &self.remote {
            Some(r) => r.var(name),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.is_empty())
    }

    /// The command that shows a unit's log.
    pub fn log_command(&self, unit: &str) -> String {
        let local = match self.scope {
            Scope::User => format!("journalctl --user -u {unit}"),
            Scope::System => format!("journalctl -u {unit}"),
        };
        match &self.remote {
            Some(r) => format!("ssh {} {local}", r.destination()),
            None => local,
        }
    }

    /// Where labctl keeps `unit`'s file.
    pub fn unit_path(&self, unit: &str) -> PathBuf {
        self.unit_dir.join(unit)
    }

    /// The marker of a restart (or reload) that `unit` is owed: an apply makes it before it
    /// changes the files the unit runs with and removes it once the unit's job is done, so an
    /// apply killed in between leaves it for the next plan, which restarts the unit although its
    /// files already match (NixOS's switch-to-configuration keeps such a list in /run for the
    /// same reason). Hidden, and no unit suffix: systemd and the folder's observation skip it.
    /// The removal goes once systemd has the job (the job runs to its end without labctl).
    pub fn restart_marker(&self, unit: &str) -> PathBuf {
        self.unit_dir.join(format!(".{unit}{MARKER_SUFFIX}"))
    }
}

/// The end of a restart marker's name ([`Target::restart_marker`]); `list` in `ssh/script.rs`
/// reads the same names on another host.
const MARKER_SUFFIX: &str = ".labctl-restart";

/// The unit a restart marker's file name marks, if it is one.
fn marked_unit(file_name: &str) -> Option<&str> {
    file_name.strip_prefix('.')?.strip_suffix(MARKER_SUFFIX)
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
    /// The ssh that carries the connection to another machine's manager.
    bridge: Option<tokio::sync::Mutex<Bridge>>,
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
    /// Connect to the target's manager: the system bus, or the session bus for the user manager;
    /// on another machine, the same bus through `systemd-stdio-bridge` over ssh.
    ///
    /// # Errors
    /// [`Error::Backend`] when the bus cannot be reached (on another machine, with what ssh or
    /// the bridge said).
    pub async fn connect(target: Target) -> Result<Self, Error> {
        let start = Instant::now();
        let bus = match target.scope {
            Scope::System => "system bus",
            Scope::User => "session bus",
        };
        let (conn, bridge) = match &target.remote {
            None => {
                let conn = match target.scope {
                    Scope::System => Connection::system().await,
                    Scope::User => Connection::session().await,
                };
                (
                    conn.map_err(|e| backend(&format!("connect to the {bus}"), e))?,
                    None,
                )
            }
            Some(remote) => {
                let step = format!("connect to the {bus} of host `{}`", remote.name());
                let (stream, mut bridge) = remote.bridge(target.scope).await?;
                match zbus::connection::Builder::unix_stream(stream).build().await {
                    Ok(conn) => (conn, Some(tokio::sync::Mutex::new(bridge))),
                    Err(e) => {
                        // The bridge's (or ssh's) own words say why, once it has ended.
                        let why = bridge.reason().await;
                        return Err(backend(
                            &step,
                            match why {
                                Some(w) => format!("{e} ({w})"),
                                None => e.to_string(),
                            },
                        ));
                    }
                }
            }
        };
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| backend("create the manager proxy", e))?;
        Ok(Systemd {
            target,
            bridge,
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

    /// On another machine, once the ssh carrying the connection has ended: what it (or the
    /// bridge) said last, the reason the connection went.
    pub fn gone(&self) -> Option<String> {
        self.bridge
            .as_ref()
            .and_then(|b| b.try_lock().ok().and_then(|mut b| b.gone()))
    }

    /// As [`Systemd::gone`], after a failure: waits a moment for the ssh to end and for its last
    /// words, which can trail the connection closing.
    pub async fn gone_reason(&self) -> Option<String> {
        match &self.bridge {
            Some(b) => b.lock().await.reason().await,
            None => None,
        }
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
}

/// The text of a D-Bus error without zbus's wrapping (`org.freedesktop.systemd1.NoSuchUnit: ...`).
fn dbus_message(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{msg} ({name})"),
        other => other.to_string(),
    }
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
