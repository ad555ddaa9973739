//! Failpoints: named places where a test can make labctl die or panic, deterministically.
//!
//! `LABCTL_FAILPOINT=POINT[#N][:ACTION][,…]` arms a point: its `N`th hit (the first without `#N`)
//! runs `ACTION`: `kill` (the default: the process sends itself SIGKILL, as an OOM killer or a
//! power cut would stop it: no destructor, no flush) or `panic`. The fault-injection tests
//! (`tests/it/faults/`) kill `labctl apply` after each file write, after the daemon-reload,
//! between jobs and between kube objects this way, and then check that a second run converges.
//!
//! Killing from outside at an observed step would be racy (a host apply takes milliseconds between
//! steps); a point inside the step is exact and repeatable. Every build has them, so the suite
//! tests the binary it ships; unset, a hit costs one load of an initialised `OnceLock`.
//!
//! Points (each hit counts once):
//! - `apply.systemd.write`: after each env or unit file is put in place (and after each removal);
//! - `apply.systemd.daemon-reload`: after the daemon-reload;
//! - `apply.systemd.job`: after each job of the stop, reload, restart and start phases finished,
//!   and after enabling and disabling;
//! - `apply.kube.object`: after each kube object was applied or deleted;
//! - `proxy.sync`: in the proxy, after a sync's apply and before its commit is recorded;
//! - `proxy.delivery`: in the proxy, after a delivery was written and before it is answered;
//! - `command`: at the start of every command (`LABCTL_FAILPOINT=command:panic` checks how a
//!   panic ends the binary).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What an armed point does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Panic,
}

#[derive(Debug)]
struct Armed {
    point: String,
    nth: usize,
    action: Action,
    hits: AtomicUsize,
}

static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();

/// The variable that arms failpoints.
pub const VAR: &str = "LABCTL_FAILPOINT";

fn parse(spec: &str) -> Vec<Armed> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .filter_map(|s| {
            let (point, action) = match s.trim().split_once(':') {
                Some((p, "panic")) => (p, Action::Panic),
                Some((p, "kill")) | Some((p, "")) => (p, Action::Kill),
                Some((_, other)) => {
                    // A typo must not pass for a run that survived the fault.
                    eprintln!("warning: {VAR}: unknown action `{other}` (kill, panic)");
                    return None;
                }
                None => (s.trim(), Action::Kill),
            };
            let (point, nth) = match point.split_once('#') {
                Some((p, n)) => match n.parse::<usize>() {
                    Ok(n) if n > 0 => (p, n),
                    _ => {
                        eprintln!("warning: {VAR}: `#{n}` is not a positive count");
                        return None;
                    }
                },
                None => (point, 1),
            };
            Some(Armed {
                point: point.to_string(),
                nth,
                action,
                hits: AtomicUsize::new(0),
            })
        })
        .collect()
}

/// Pass the failpoint `point`: nothing happens unless [`VAR`] arms it.
pub fn hit(point: &str) {
    let armed = ARMED.get_or_init(|| std::env::var(VAR).map(|s| parse(&s)).unwrap_or_default());
    for a in armed.iter().filter(|a| a.point == point) {
        if a.hits.fetch_add(1, Ordering::SeqCst) + 1 != a.nth {
            continue;
        }
        match a.action {
            Action::Panic => panic!("failpoint `{point}` (#{})", a.nth),
            Action::Kill => {
                // Stderr is unbuffered: the line is out before the signal lands, so a test can
                // tell a failpoint's death from any other.
                eprintln!("failpoint `{point}` #{}: SIGKILL", a.nth);
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
                // SIGKILL to oneself is delivered before kill(2) returns; should it not be,
                // no code after the point may run.
                std::process::abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points_counts_and_actions() {
        let a = parse("apply.systemd.write#3, apply.kube.object:panic,x:kill,y:boom,z#0");
        let got: Vec<_> = a
            .iter()
            .map(|a| (a.point.as_str(), a.nth, a.action))
            .collect();
        assert_eq!(
            got,
            vec![
                ("apply.systemd.write", 3, Action::Kill),
                ("apply.kube.object", 1, Action::Panic),
                ("x", 1, Action::Kill),
            ]
        );
        assert!(parse("").is_empty());
    }
}
