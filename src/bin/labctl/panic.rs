//! How a panic ends the binary: one line on stderr and exit code 70 (`EX_SOFTWARE`), never
//! Rust's default report with its backtrace dump. The backtrace goes to the log when
//! `RUST_BACKTRACE` (other than `0`) or `LABCTL_LOG` asks for it: as a `tracing` error event
//! (an agent's journal, the OTLP logs) while the process still has its telemetry, or, for a
//! command that logs nowhere, on stderr after the line, because the user asked.
//!
//! The hook itself prints nothing: a panic the library catches and turns into an error (the YAML
//! reader's guard around libyaml, a collector reader, a tokio task) is no crash. What reaches
//! `main` is.

use std::backtrace::Backtrace;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::process::ExitCode;
use std::sync::Mutex;

/// `EX_SOFTWARE` from sysexits.h: an internal software error.
pub const EXIT_PANIC: u8 = 70;

/// The last panic seen, for `main` to report should it reach it.
static LAST: Mutex<Option<Seen>> = Mutex::new(None);

struct Seen {
    message: String,
    location: String,
    /// Captured when asked for and not logged already.
    backtrace: Option<String>,
}

fn asked() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
        || std::env::var_os("LABCTL_LOG").is_some()
}

fn message(info: &PanicHookInfo<'_>) -> String {
    let p = info.payload();
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Replace Rust's panic report with [`LAST`]'s record (and the log's backtrace when asked).
pub fn install() {
    let asked = asked();
    std::panic::set_hook(Box::new(move |info| {
        let message = message(info);
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "an unknown place".into());
        let mut backtrace = asked.then(|| Backtrace::force_capture().to_string());
        if let Some(bt) = &backtrace
            && tracing::dispatcher::has_been_set()
        {
            tracing::error!(
                target: "labctl::panic",
                message = %message,
                location = %location,
                backtrace = %bt,
                "panic"
            );
            backtrace = None;
        }
        let thread = std::thread::current();
        let message = match thread.name() {
            Some(name) if name != "main" => format!("{message} (thread `{name}`)"),
            _ => message,
        };
        *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(Seen {
            message,
            location,
            backtrace,
        });
    }));
}

/// Run `f`; a panic that unwinds out of it ends as one line on stderr and [`EXIT_PANIC`].
pub fn guard(f: impl FnOnce() -> ExitCode) -> ExitCode {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(code) => code,
        Err(_) => {
            let seen = LAST.lock().unwrap_or_else(|e| e.into_inner()).take();
            let (message, location, backtrace) = match seen {
                Some(s) => (s.message, s.location, s.backtrace),
                None => ("a panic".into(), "an unknown place".into(), None),
            };
            let message = message.lines().next().unwrap_or_default().to_string();
            let hint = if asked() {
                ""
            } else {
                " (RUST_BACKTRACE=1 logs the backtrace)"
            };
            eprintln!("error: internal error, a bug in labctl: {message} at {location}{hint}");
            if let Some(bt) = backtrace {
                eprintln!("{bt}");
            }
            ExitCode::from(EXIT_PANIC)
        }
    }
}
