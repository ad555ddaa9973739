//! Applying the systemd part of a plan, in NixOS's order: stop (and disable) removed units →
//! write or remove files atomically → one daemon-reload → disable/enable → reload → restart →
//! start → check that every unit started is active.
//!
//! Files are staged (temp file in the unit folder, fsync, mode 0644) before anything else happens,
//! so a folder that cannot be written fails the apply before a single unit is touched. A job that
//! fails does not stop the others: systemd fails the jobs of units that depend on it (`dependency`)
//! and runs the rest; every failure is reported at the end.
//!
//! One manager at a time: the changes of the plan on the manager's host (this machine, or a
//! `[hosts.<name>]` one, whose files the backend writes over ssh with the same guarantees).

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Events, change_span, finish_span};
use crate::atomic::{self, Access};
use crate::backend::systemd::{JobKind, JobOutcome, JobResult, Systemd, Writes};
use crate::error::{Error, Failure};
use crate::plan::{Action, Impact, Plan};
use crate::resource::ResourceId;
use crate::stack::Plane;

/// The unit operations of a plan, grouped by phase.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Steps {
    /// Removed units to stop.
    pub stop: Vec<String>,
    /// Removed units to disable (before their files go: systemd needs the file to disable it).
    pub disable_removed: Vec<String>,
    /// Files to write: unit and text.
    pub write: Vec<(String, String)>,
    /// Env files to write, owner-only: the path as the unit names it (`%E/labctl/x.env`) and
    /// the text.
    pub write_env: Vec<(String, String)>,
    /// Env files to remove (as `EnvironmentFile=` names them), after their units stopped.
    pub remove_env: Vec<String>,
    /// Files to remove.
    pub remove: Vec<String>,
    /// Whether systemd must re-read unit files although none is written.
    pub daemon_reload: bool,
    /// Kept units to disable (a changed `[Install]` section, one that went away).
    pub disable: Vec<String>,
    /// Units to enable.
    pub enable: Vec<String>,
    /// Units to reload.
    pub reload: Vec<String>,
    /// Units to restart.
    pub restart: Vec<String>,
    /// Units to start.
    pub start: Vec<String>,
}

impl Steps {
    /// The systemd changes of `plan` on `host` (`None`: this machine), as steps. Pure: exactly
    /// the plan's actions and impacts.
    pub fn of(plan: &Plan, host: Option<&str>) -> Self {
        let mut s = Steps::default();
        let mut env_restarts = Vec::new();
        for c in plan.actionable().filter(|c| c.id.host() == host) {
            if let ResourceId::EnvFile { path, unit, .. } = &c.id {
                if c.action == Action::Delete {
                    s.remove_env.push(path.clone());
                    continue;
                }
                if let Some(text) = c.after.as_ref().and_then(|a| env_text(&plan.stack, a)) {
                    s.write_env.push((path.clone(), text));
                }
                if c.impact.contains(&Impact::Restart) {
                    env_restarts.push(unit.clone());
                }
                continue;
            }
            let ResourceId::Systemd { unit, .. } = &c.id else {
                continue;
            };
            let has = |i: Impact| c.impact.contains(&i);
            let u = || unit.clone();
            if c.action == Action::Delete {
                if has(Impact::Stop) {
                    s.stop.push(u());
                }
                if has(Impact::Disable) {
                    s.disable_removed.push(u());
                }
                s.remove.push(u());
                continue;
            }
            if let Some(after) = &c.after
                && c.before.as_ref().map(|b| b.content()) != Some(after.content())
            {
                s.write.push((u(), after.content().text()));
            }
            s.daemon_reload |= has(Impact::DaemonReload);
            for (impact, list) in [
                (Impact::Disable, &mut s.disable),
                (Impact::Enable, &mut s.enable),
                (Impact::Reload, &mut s.reload),
                (Impact::Restart, &mut s.restart),
                (Impact::Start, &mut s.start),
            ] {
                if c.impact.contains(&impact) {
                    list.push(u());
                }
            }
        }
        for unit in env_restarts {
            if !s.restart.contains(&unit) && !s.start.contains(&unit) {
                s.restart.push(unit);
            }
        }
        s.daemon_reload |= !s.write.is_empty() || !s.remove.is_empty();
        s
    }

    /// How many progress steps this is.
    pub fn len(&self) -> usize {
        self.stop.len()
            + self.disable_removed.len()
            + self.write.len()
            + self.write_env.len()
            + self.remove_env.len()
            + self.remove.len()
            + usize::from(self.daemon_reload)
            + self.disable.len()
            + self.enable.len()
            + self.reload.len()
            + self.restart.len()
            + self.start.len()
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Apply the systemd changes of `plan`, reporting each phase and step through `events`, and
/// each change's result on its `apply change` span (the units' jobs run in batches, so each span
/// covers the whole sequence).
///
/// `settle` is how long started units get to fail before their state is read: a `Type=simple`
/// service's start job is `done` as soon as its process is forked, so `ExecStart=/bin/false` only
/// shows as `failed` a moment later (`apply --settle`).
///
/// # Errors
/// [`Error::Write`] when a unit file cannot be staged or put in place (nothing is half-written);
/// [`Error::Backend`] when systemd cannot be asked; [`Error::ApplyFailed`] naming each unit whose
/// job failed, its result and the command that shows its log, after everything else was applied.
pub async fn apply(
    plan: &Plan,
    sd: &Systemd,
    settle: Duration,
    events: &mut dyn Events,
) -> Result<(), Error> {
    let host = sd.target().host();
    let spans: Vec<(String, tracing::Span)> = plan
        .actionable()
        .filter(|c| c.id.host() == host)
        .filter_map(|c| match &c.id {
            ResourceId::Systemd { unit, .. } => Some((unit.clone(), change_span(c))),
            ResourceId::EnvFile { path, .. } => Some((path.clone(), change_span(c))),
            ResourceId::Kube { .. } => None,
        })
        .collect();
    let result = sequence(plan, sd, settle, &mut Progress(events)).await;
    for (unit, span) in &spans {
        match &result {
            Ok(failed) => match failed.iter().find(|(u, _)| u == unit) {
                Some((_, why)) => finish_span(span, Err(why)),
                None => finish_span(span, Ok(())),
            },
            Err(e) => finish_span(span, Err(&e.report())),
        }
    }
    let failed = result?;
    if failed.is_empty() {
        Ok(())
    } else {
        let target = sd.target();
        // Named as the plan names the unit: `nas:x.service` on another host.
        let shown = |unit: &str| match host {
            Some(h) => format!("{h}:{unit}"),
            None => unit.to_string(),
        };
        Err(Error::ApplyFailed {
            failed: failed
                .into_iter()
                .map(|(unit, what)| {
                    Failure::new(format!(
                        "`{}`: {what}; see `{}`",
                        shown(&unit),
                        target.log_command(&unit)
                    ))
                })
                .collect(),
            hosts: Vec::new(),
            done: Vec::new(),
        })
    }
}

/// [`Events`] for the systemd plane.
struct Progress<'a>(&'a mut dyn Events);

impl Progress<'_> {
    fn phase(&mut self, what: &str) {
        self.0.phase(Plane::Systemd, what);
    }
    fn step(&mut self, line: &str) {
        self.0.step(Plane::Systemd, line);
    }
}

/// The sequence itself; each unit that failed, with how.
async fn sequence(
    plan: &Plan,
    sd: &Systemd,
    settle: Duration,
    progress: &mut Progress<'_>,
) -> Result<Vec<(String, String)>, Error> {
    let target = sd.target().clone();
    let steps = Steps::of(plan, target.host());
    let mut failed: Vec<(String, String)> = Vec::new();
    let fail = |failed: &mut Vec<(String, String)>, unit: &str, what: String| {
        failed.push((unit.to_string(), what));
    };
    let env_path =
        |path: &str| crate::plan::env_file_path_on(path, target.scope, &|k| target.var(k));

    // Staged before anything changes: an unwritable folder fails here, with no unit touched.
    let units: Vec<(std::path::PathBuf, String)> = steps
        .write
        .iter()
        .map(|(unit, text)| (target.unit_path(unit), text.clone()))
        .collect();
    let staged = sd.stage(&units, Access::Public).await?;
    // Each unit owed a restart or reload is marked before its files change (its marker placed
    // first, with the env files), and unmarked once systemd has its job: a kill in between
    // leaves the next plan a restart to make that the files alone no longer show.
    let owed: BTreeSet<&String> = steps.restart.iter().chain(&steps.reload).collect();
    let markers: Vec<(std::path::PathBuf, String)> = owed
        .iter()
        .map(|u| (target.restart_marker(u), String::new()))
        .collect();
    let envs: Vec<(std::path::PathBuf, String)> = steps
        .write_env
        .iter()
        .map(|(path, text)| Ok((env_path(path)?, text.clone())))
        .collect::<Result<_, Error>>()?;
    let staged_env = sd
        .stage(&[markers.clone(), envs].concat(), Access::Private)
        .await?;

    if !steps.stop.is_empty() {
        progress.phase("stopping removed units");
    }
    for o in sd
        .run_jobs(
            JobKind::Stop,
            &steps.stop,
            |_| {},
            |o| {
                progress.step(&line(o));
                crate::failpoint::hit("apply.systemd.job");
            },
        )
        .await?
    {
        if !o.ok() {
            fail(&mut failed, &o.unit, job_failure(&o));
        }
    }
    if !steps.disable_removed.is_empty() {
        progress.phase("disabling removed units");
        match sd.disable(&steps.disable_removed).await {
            Ok(()) => steps
                .disable_removed
                .iter()
                .for_each(|u| progress.step(&format!("disabled {u}"))),
            Err(e) => steps
                .disable_removed
                .iter()
                .for_each(|u| fail(&mut failed, u, format!("disable failed: {e}"))),
        }
    }

    // Every file change at once (on another host, one command), then each reported in order.
    let remove_env = steps
        .remove_env
        .iter()
        .map(|p| env_path(p))
        .collect::<Result<Vec<_>, _>>()?;
    let env_written: Vec<std::path::PathBuf> = staged_env
        .paths()
        .into_iter()
        .filter(|p| !markers.iter().any(|(m, _)| m == p))
        .collect();
    let units_written = staged.paths();
    let removed: Vec<std::path::PathBuf> =
        steps.remove.iter().map(|u| target.unit_path(u)).collect();
    sd.write(Writes {
        remove_env: remove_env.clone(),
        env: staged_env,
        units: staged,
        // A removed unit's marker goes with it.
        remove: removed
            .iter()
            .cloned()
            .chain(steps.remove.iter().map(|u| target.restart_marker(u)))
            .collect(),
    })
    .await?;
    if !remove_env.is_empty() {
        progress.phase("removing env files");
    }
    for file in &remove_env {
        progress.step(&format!("removed {}", file.display()));
    }
    if !env_written.is_empty() {
        progress.phase("writing env files");
    }
    for path in &env_written {
        progress.step(&format!("wrote {}", path.display()));
    }
    if !units_written.is_empty() || !removed.is_empty() {
        progress.phase("writing unit files");
    }
    for path in &units_written {
        progress.step(&format!("wrote {}", path.display()));
    }
    for path in &removed {
        progress.step(&format!("removed {}", path.display()));
    }
    if steps.daemon_reload {
        progress.phase("daemon-reload");
        sd.daemon_reload().await?;
        progress.step("reloaded systemd");
        crate::failpoint::hit("apply.systemd.daemon-reload");
    }

    for (verb, doing, done, units) in [
        ("disable", "disabling", "disabled", &steps.disable),
        ("enable", "enabling", "enabled", &steps.enable),
    ] {
        if units.is_empty() {
            continue;
        }
        progress.phase(&format!("{doing} units"));
        let r = if verb == "enable" {
            sd.enable(units).await
        } else {
            sd.disable(units).await
        };
        match r {
            Ok(()) => {
                units
                    .iter()
                    .for_each(|u| progress.step(&format!("{done} {u}")));
                crate::failpoint::hit("apply.systemd.job");
            }
            Err(e) => units
                .iter()
                .for_each(|u| fail(&mut failed, u, format!("{verb} failed: {e}"))),
        }
    }

    let mut check = BTreeSet::new();
    for (kind, units) in [
        (JobKind::Reload, &steps.reload),
        (JobKind::Restart, &steps.restart),
        (JobKind::Start, &steps.start),
    ] {
        if units.is_empty() {
            continue;
        }
        progress.phase(&format!("{} jobs", kind.verb()));
        // Once systemd holds the job the restart happens whatever becomes of this process (the
        // proxy restarting its own unit is ended by it): the marker goes as the job is queued,
        // on this machine at once, on another host in one command once the jobs are done.
        let local = target.remote.is_none();
        let mut unmarked = Ok(());
        let mut queued = Vec::new();
        let outcomes = sd
            .run_jobs(
                kind,
                units,
                |u| {
                    if !owed.iter().any(|o| o.as_str() == u) {
                        return;
                    }
                    let marker = target.restart_marker(u);
                    if !local {
                        queued.push(marker);
                    } else if unmarked.is_ok() {
                        unmarked = atomic::remove(&marker).map(drop);
                    }
                },
                |o| {
                    progress.step(&line(o));
                    crate::failpoint::hit("apply.systemd.job");
                },
            )
            .await?;
        unmarked?;
        if !queued.is_empty() {
            sd.write(Writes {
                remove: queued,
                ..Writes::default()
            })
            .await?;
        }
        for o in outcomes {
            if o.ok() {
                check.insert(o.unit.clone());
            } else {
                fail(&mut failed, &o.unit, job_failure(&o));
            }
        }
    }
    if !check.is_empty() {
        // The health gate of every started or restarted unit: still active after the settle
        // time, and not restarted by systemd meanwhile (a crash loop can look active between
        // two restarts).
        progress.phase("checking that started units stay active");
        let units: Vec<String> = check.into_iter().collect();
        let restarts_before = sd.service_types_and_restarts(&units).await?;
        tokio::time::sleep(settle).await;
        let states = sd.active_states(&units).await?;
        let restarts_after = sd.service_types_and_restarts(&units).await?;
        for (((unit, (active, sub)), before), after) in units
            .iter()
            .zip(states)
            .zip(restarts_before)
            .zip(restarts_after)
        {
            let running = active == "active"
                || active == "reloading"
                || (active == "activating" && sub != "auto-restart");
            if !running {
                fail(
                    &mut failed,
                    unit,
                    format!("its job was `done` but it is `{active}` ({sub})"),
                );
            } else if let (Some((_, a)), Some((_, b))) = (before, after)
                && b > a
            {
                fail(
                    &mut failed,
                    unit,
                    format!(
                        "systemd restarted it {} time(s) within the settle time of {} \
                         (`NRestarts` {a} -> {b})",
                        b - a,
                        humantime::format_duration(settle)
                    ),
                );
            }
        }
    }
    Ok(failed)
}

fn line(o: &JobOutcome) -> String {
    match &o.result {
        JobResult::Ran(r) => format!("{} {}: {r}", o.kind.verb(), o.unit),
        JobResult::NotQueued(e) => format!("{} {}: not queued: {e}", o.kind.verb(), o.unit),
    }
}

fn job_failure(o: &JobOutcome) -> String {
    match &o.result {
        JobResult::Ran(r) if r == "dependency" => format!(
            "{} job `dependency` (a unit it needs failed)",
            o.kind.verb()
        ),
        JobResult::Ran(r) => format!("{} job `{r}`", o.kind.verb()),
        JobResult::NotQueued(e) => format!("{} refused: {e}", o.kind.verb()),
    }
}

/// The text of an env file the plan holds (its variables), as [`crate::render::env_file_text`]
/// writes it.
fn env_text(stack: &str, body: &crate::plan::Body) -> Option<String> {
    let env = body.content().as_kube()?.get("env")?.as_object()?;
    let vars = env
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    Some(crate::render::env_file_text(stack, &vars))
}
