//! The proxy updating itself, safely. A sync that changes the proxy's own unit or env file
//! restarts the process that could undo it. So before it applies such a plan, the proxy keeps the
//! files as they are and arms a dead-man switch in systemd: a timer that lives only in the manager
//! (`StartTransientUnit`) and, unless stopped first, runs `labctl agent rescue`, which puts the
//! files back and restarts the previous proxy. The new proxy stops the timer once it serves
//! ([`confirm`]); the previous proxy, back, finishes the rollback of the rest of the lab and
//! remembers the commit ([`rescued`]).
//!
//! The state folder holds `rescue.json` while the switch is armed, and `rescued.json` once it
//! fired, until the previous proxy has taken it in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::atomic::{self, Access};
use crate::backend::systemd::{JobKind, Systemd, Target};
use crate::error::Error;
use crate::plan::Plan;
use crate::resource::ResourceId;
use crate::stack::{Scope, Stack};

/// The switch's timer and service, `NAME.timer` and `NAME.service`.
pub const NAME: &str = "labctl-proxy-rescue";
/// The armed switch, in the state folder.
const ARMED: &str = "rescue.json";
/// The fired switch, until the previous proxy has taken it in.
const FIRED: &str = "rescued.json";

/// What the switch puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rescue {
    /// The commit whose sync armed it.
    pub commit: String,
    /// The proxy's unit.
    pub unit: String,
    /// The manager.
    pub scope: Scope,
    /// Each file as it was before the sync: its text, or `None` when it did not exist.
    pub files: Vec<(PathBuf, Option<String>)>,
    /// When it was armed (RFC 3339).
    pub armed: String,
}

/// The files of the proxy's own unit that `plan` changes: its unit file and its env files.
fn own_files(plan: &Plan, unit: &str, target: &Target) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for c in plan.actionable() {
        match &c.id {
            ResourceId::Systemd {
                host: None,
                unit: u,
            } if u == unit => files.push(target.unit_path(u)),
            ResourceId::EnvFile {
                host: None,
                path,
                unit: u,
            } if u == unit => {
                files.push(crate::plan::env_file_path(path, target.scope)?);
            }
            _ => {}
        }
    }
    Ok(files)
}

/// Arm the switch when `plan` (of `stack`, synced from `commit`) changes the proxy's own unit:
/// keep its files as they are now, and start the timer that restores them after `within`. Returns
/// whether it was armed.
///
/// # Errors
/// [`Error::Write`] when the files cannot be kept, [`Error::Backend`] when systemd refuses the
/// timer: the sync then fails before changing anything.
pub async fn arm(
    state_dir: &Path,
    plan: &Plan,
    stack: &Stack,
    commit: &str,
    systemd: &Systemd,
) -> Result<bool, Error> {
    let unit = format!("{}.service", stack.host.proxy.unit);
    // Where the plan found the files: the target it observed.
    let Some(target) = plan.targets.iter().find_map(|t| match t {
        crate::plan::PlaneTarget::Systemd(t) => Some(t.clone()),
        crate::plan::PlaneTarget::Kube(_) => None,
    }) else {
        return Ok(false);
    };
    let paths = own_files(plan, &unit, &target)?;
    if paths.is_empty() {
        return Ok(false);
    }
    let mut files = Vec::new();
    for p in paths {
        match std::fs::read_to_string(&p) {
            Ok(t) => files.push((p, Some(t))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => files.push((p, None)),
            Err(source) => return Err(Error::Read { path: p, source }),
        }
    }
    let rescue = Rescue {
        commit: commit.to_string(),
        unit,
        scope: target.scope,
        files,
        armed: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    let json = serde_json::to_string_pretty(&rescue).expect("a rescue serialises");
    // Owner-only: an env file's secrets are in it.
    atomic::write(&state_dir.join(ARMED), json.as_bytes(), Access::Private)?;
    let within = humantime::parse_duration(&stack.host.proxy.confirm_within)
        .unwrap_or(Duration::from_secs(60));
    // The binary running now is the one that knows how to put this proxy back.
    let exe = std::env::current_exe()
        .map(|p| {
            let s = p.to_string_lossy();
            PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s).to_string())
        })
        .map_err(|e| Error::backend("systemd", "find the running labctl", e))?;
    let argv = vec![
        exe.display().to_string(),
        "agent".into(),
        "rescue".into(),
        "--state-dir".into(),
        state_dir.display().to_string(),
    ];
    systemd
        .start_transient_timer(
            NAME,
            within,
            &format!(
                "labctl: put the previous proxy back unless the new one serves (commit {commit})"
            ),
            &argv,
        )
        .await?;
    tracing::warn!(
        commit,
        "this sync changes the proxy itself: the previous proxy comes back unless the new one \
         serves within {}",
        humantime::format_duration(within)
    );
    Ok(true)
}

/// The new proxy serves: stop the switch, if one is armed. Returns the commit whose sync armed
/// it.
///
/// # Errors
/// [`Error::Backend`] when systemd does not stop the timer (the switch may still fire).
pub async fn confirm(state_dir: &Path, systemd: &Systemd) -> Result<Option<String>, Error> {
    let Some(rescue) = read(&state_dir.join(ARMED)) else {
        return Ok(None);
    };
    let stopped = systemd
        .run_jobs(JobKind::Stop, &[format!("{NAME}.timer")], |_| {}, |_| {})
        .await?;
    if stopped.iter().any(|o| !o.ok()) {
        // Already fired (or firing): the rescue decides; its marker says so at the next start.
        tracing::warn!("the proxy's dead-man switch could not be stopped: it may have fired");
    }
    atomic::remove(&state_dir.join(ARMED))?;
    tracing::info!(commit = %rescue.commit, "the new proxy serves: dead-man switch stopped");
    Ok(Some(rescue.commit))
}

/// The switch fired while a previous proxy ran: the rescue it left, taken (removed) once read.
pub fn rescued(state_dir: &Path) -> Option<Rescue> {
    let path = state_dir.join(FIRED);
    let r = read(&path)?;
    let _ = atomic::remove(&path);
    Some(r)
}

fn read(path: &Path) -> Option<Rescue> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// `labctl agent rescue`: put the proxy's files back as the armed switch kept them, reload
/// systemd, restart the proxy, and leave the marker its next start reads.
///
/// # Errors
/// [`Error::Agent`] when no switch is armed; [`Error::Write`], [`Error::Backend`] when the files
/// cannot be written or systemd cannot be told.
pub async fn run(state_dir: &Path) -> Result<(), Error> {
    let Some(rescue) = read(&state_dir.join(ARMED)) else {
        return Err(Error::Agent {
            agent: "rescue",
            message: format!("no armed switch in `{}`", state_dir.display()),
        });
    };
    for (path, text) in &rescue.files {
        match text {
            Some(t) => atomic::write(path, t.as_bytes(), access_of(path))?,
            None => {
                atomic::remove(path)?;
            }
        }
    }
    // Marked before the restart: the previous proxy reads it as soon as it starts.
    let json = serde_json::to_string_pretty(&rescue).expect("a rescue serialises");
    atomic::write(&state_dir.join(FIRED), json.as_bytes(), Access::Private)?;
    atomic::remove(&state_dir.join(ARMED))?;
    let target = Target::resolve(rescue.scope, false, None)?;
    let sd = Systemd::connect(target).await?;
    sd.daemon_reload().await?;
    let restarted = sd
        .run_jobs(
            JobKind::Restart,
            std::slice::from_ref(&rescue.unit),
            |_| {},
            |_| {},
        )
        .await?;
    tracing::warn!(
        commit = %rescue.commit,
        unit = %rescue.unit,
        ok = restarted.iter().all(|o| o.ok()),
        "the new proxy did not confirm it serves: the previous one is back"
    );
    Ok(())
}

/// Env files are secrets (owner-only); unit files are not.
fn access_of(path: &Path) -> Access {
    if path.extension().is_some_and(|e| e == "env") {
        Access::Private
    } else {
        Access::Public
    }
}
