//! Apply's progress on a terminal: the [`Events`] of the CLI. On a TTY, a bar over the systemd
//! steps and a spinner per workload rolling out; otherwise (logs, CI) one plain line per step.
//! Everything goes to stderr; stdout keeps the plan.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::render_cost;
use crate::apply::Events;
use crate::plan::Cost;
use crate::resource::ResourceId;
use crate::stack::Plane;

/// Progress on stderr.
pub struct Terminal {
    tty: bool,
    verbose: bool,
    multi: MultiProgress,
    bar: Option<ProgressBar>,
    spinners: BTreeMap<ResourceId, ProgressBar>,
}

impl Terminal {
    /// Progress for a terminal (`tty`: bars and spinners) or a log; `verbose` adds the cost
    /// lines of `-v`.
    pub fn new(tty: bool, verbose: bool) -> Self {
        Terminal {
            tty,
            verbose,
            multi: MultiProgress::new(),
            bar: None,
            spinners: BTreeMap::new(),
        }
    }

    fn line(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None if !self.spinners.is_empty() => {
                let _ = self.multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

impl Events for Terminal {
    fn start(&mut self, plane: Plane, steps: usize) {
        if plane != Plane::Systemd || !self.tty {
            return;
        }
        let b = ProgressBar::new(steps as u64);
        b.set_style(
            ProgressStyle::with_template("{spinner} waiting on {msg} [{pos}/{len}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_message("changes");
        b.enable_steady_tick(Duration::from_millis(120));
        self.bar = Some(b);
    }

    fn phase(&mut self, _plane: Plane, what: &str) {
        match &self.bar {
            Some(b) => b.set_message(crate::sensitive::redact(what).into_owned()),
            None => eprintln!("{} ...", crate::sensitive::redact(what)),
        }
    }

    fn step(&mut self, _plane: Plane, line: &str) {
        self.line(&crate::sensitive::redact(line));
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    fn progress(&mut self, id: &ResourceId, status: Option<&str>) {
        if !self.tty {
            return;
        }
        match status {
            Some(status) => {
                let spinner = self.spinners.entry(id.clone()).or_insert_with(|| {
                    let b = self.multi.add(ProgressBar::new_spinner());
                    b.set_style(
                        ProgressStyle::with_template("{spinner} {prefix}: {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.set_prefix(id.to_string());
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                });
                spinner.set_message(crate::sensitive::redact(status).into_owned());
            }
            None => {
                if let Some(b) = self.spinners.remove(id) {
                    b.finish_and_clear();
                }
            }
        }
    }

    fn finish(&mut self, _plane: Plane) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        for (_, b) in std::mem::take(&mut self.spinners) {
            b.finish_and_clear();
        }
    }

    fn cost(&mut self, cost: &Cost) {
        if self.verbose {
            self.line(&render_cost(cost));
        }
    }
}
