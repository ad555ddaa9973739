//! The command line's [`ops::Events`]: the plan on stdout, warnings, `-v` details and apply's
//! progress on stderr (through [`view::Terminal`]), and the question before applying.

use std::io::{IsTerminal, Write};

use crate::apply;
use crate::error::{Error, Remedy};
use crate::ops;
use crate::plan::{Cost, Plan};
use crate::resource::ResourceId;
use crate::stack::Plane;
use crate::view::{self, Styles};

/// The terminal (or the log a pipe leads to) of one command.
pub struct Console {
    verbose: bool,
    styles: Styles,
    progress: view::Terminal,
}

impl Console {
    /// `styles` for the plan on stdout; `verbose` for `-v`.
    pub fn new(verbose: bool, styles: Styles) -> Self {
        Console {
            verbose,
            styles,
            progress: view::Terminal::new(std::io::stderr().is_terminal(), verbose),
        }
    }
}

impl apply::Events for Console {
    fn start(&mut self, plane: Plane, steps: usize) {
        self.progress.start(plane, steps);
    }
    fn phase(&mut self, plane: Plane, what: &str) {
        self.progress.phase(plane, what);
    }
    fn step(&mut self, plane: Plane, line: &str) {
        self.progress.step(plane, line);
    }
    fn progress(&mut self, id: &ResourceId, status: Option<&str>) {
        self.progress.progress(id, status);
    }
    fn finish(&mut self, plane: Plane) {
        self.progress.finish(plane);
    }
    fn cost(&mut self, cost: &Cost) {
        self.progress.cost(cost);
    }
}

impl ops::Events for Console {
    fn warning(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn detail(&mut self, text: &str) {
        if self.verbose {
            eprintln!("{text}");
        }
    }

    fn planned(&mut self, plan: &Plan) {
        // The plan is for the reader; a reader gone (`apply --yes | head`) does not cancel the
        // apply.
        let _ = super::print(&view::render_plan_human(plan, self.styles));
    }

    fn confirm(&mut self, _plan: &Plan) -> Result<(), Error> {
        // Without a terminal, refuse rather than guess.
        if !std::io::stdin().is_terminal() {
            return Err(Error::Refused {
                what: "apply without confirmation".into(),
                why: "stdin is not a terminal".into(),
                remedy: Remedy::Confirm,
            });
        }
        eprint!("\nApply these changes? Only `yes` is accepted: ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|source| Error::Read {
                path: "<stdin>".into(),
                source,
            })?;
        if answer.trim() == "yes" {
            Ok(())
        } else {
            Err(Error::Usage("apply cancelled: nothing was changed".into()))
        }
    }
}
