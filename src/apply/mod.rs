//! Apply runs a [`Plan`] exactly as planned: it never re-diffs and never changes an action. Each
//! plane has its own sequence ([`kube::apply`], [`systemd::apply`]); what they share lives here:
//! the `--adopt` gate and progress output.

pub mod kube;
pub mod systemd;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Error;
use crate::plan::{Action, Plan};

/// Refuse a plan that takes over resources this stack does not own, unless `--adopt` allows it.
///
/// # Errors
/// [`Error::NotOwned`] naming every such resource.
pub fn check_adopt(plan: &Plan, adopt: bool) -> Result<(), Error> {
    let foreign: Vec<String> = plan
        .actionable()
        .filter(|c| c.action == Action::Adopt)
        .map(|c| c.id.to_string())
        .collect();
    if foreign.is_empty() || adopt {
        Ok(())
    } else {
        Err(Error::NotOwned { resources: foreign })
    }
}

/// Progress of an apply: a bar on a terminal, one plain line per step otherwise (logs, CI).
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Progress over `total` steps; `tty` picks the bar.
    pub fn new(total: usize, tty: bool) -> Self {
        let bar = tty.then(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template("{spinner} waiting on {msg} [{pos}/{len}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message("changes");
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        Progress { bar }
    }

    /// A phase starts: what it waits on.
    pub fn phase(&self, what: &str) {
        match &self.bar {
            Some(b) => b.set_message(what.to_string()),
            None => eprintln!("{what} ..."),
        }
    }

    /// One step finished, with a line saying how.
    pub fn step(&self, line: &str) {
        match &self.bar {
            Some(b) => {
                b.println(line);
                b.inc(1);
            }
            None => eprintln!("{line}"),
        }
    }

    /// All done: the bar goes away, the lines stay.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
