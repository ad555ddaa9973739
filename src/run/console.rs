//! The command line's [`ops::Events`]: the plan on stdout, warnings, `-v` details and apply's
//! progress on stderr (through [`view::Terminal`]), and the question before applying.

use std::io::{IsTerminal, Write};

use crate::apply;
use crate::error::{Error, Remedy};
use crate::ops;
use crate::plan::{Cost, Plan};
use crate::resource::ResourceId;
use crate::sensitive::SecretValue;
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

impl ops::BootstrapEvents for Console {
    fn said(&mut self, line: &str) {
        eprintln!("{line}");
    }

    fn can_show_keys(&self) -> bool {
        std::io::stdout().is_terminal()
    }

    fn show_keys(&mut self, keys: &crate::backend::openbao::InitKeys) {
        // The one time they are shown: nothing keeps them.
        let _ = super::print(&format!(
            "OpenBao's unseal keys and root token, shown this once (save them now, away from \
             this host; `labctl bootstrap --unseal` unseals with them):\n{}",
            keys.to_json()
        ));
    }

    fn ask_hidden(&mut self, prompt: &str) -> Result<Option<SecretValue>, Error> {
        if !std::io::stdin().is_terminal() {
            return Ok(None);
        }
        read_hidden(prompt)
            .map(|v| Some(SecretValue::new(v)).filter(|v| !v.expose().is_empty()))
            .map_err(|source| Error::Read {
                path: "<stdin>".into(),
                source,
            })
    }
}

/// Read a value from the terminal without echoing it. A private key (`-----BEGIN …`) is read
/// to its `-----END …` line; anything else is one line.
fn read_hidden(prompt: &str) -> std::io::Result<String> {
    use std::io::BufRead as _;
    use std::os::fd::AsRawFd as _;
    let fd = std::io::stdin().as_raw_fd();
    // SAFETY: `termios` is plain data that `tcgetattr` fills in; `fd` is this process's stdin.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::tcgetattr(fd, &raw mut term) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let saved = term;
    term.c_lflag &= !libc::ECHO;
    term.c_lflag |= libc::ECHONL;
    // SAFETY: `term` is a valid termios for this terminal.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw const term) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut lines = Vec::new();
    let mut stdin = std::io::stdin().lock();
    let result = loop {
        let mut line = String::new();
        match stdin.read_line(&mut line) {
            Ok(0) => break Ok(()),
            Ok(_) => {
                let line = line.trim_end_matches(['\r', '\n']).to_string();
                let multi = lines
                    .first()
                    .is_some_and(|l: &String| l.starts_with("-----BEGIN"));
                let first_multi = lines.is_empty() && line.starts_with("-----BEGIN");
                let end = line.starts_with("-----END");
                lines.push(line);
                if !(first_multi || multi) || end {
                    break Ok(());
                }
            }
            Err(e) => break Err(e),
        }
    };
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw const saved) };
    result.map(|()| lines.join("\n"))
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
