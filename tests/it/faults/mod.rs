//! Faults injected on both planes, each followed by a run that must converge (a plan that says
//! `No changes.`) with nothing half-written or lost: `labctl apply` killed (SIGKILL, through the
//! binary's failpoints, see `src/failpoint.rs`) at every step of a host apply and at each object
//! of a kube apply; a full disk under each folder labctl writes; the API server failing or stalling
//! mid-apply; a panic's exit.

mod dbus;
mod disk;
mod host_kill;
mod kube;
mod panic;
mod proxy_kill;

/// How the run that met a failpoint ended: killed by it (true) or done before it was reached.
#[track_caller]
pub fn killed(out: &crate::support::Output, point: &str) -> bool {
    if out.stderr.contains(&format!("failpoint `{point}`")) {
        assert_eq!(out.code, -1, "a failpoint kills:\n{}", out.stderr);
        return true;
    }
    out.code(0);
    false
}
