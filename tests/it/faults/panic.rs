//! A panic anywhere in the binary ends with one line on stderr and exit code 70; the backtrace
//! only when asked (`RUST_BACKTRACE`), never Rust's default report.

use crate::support::Stack;

#[test]
fn a_panic_ends_with_one_line_and_exit_70() {
    let s = Stack::bundled();
    let (code, out, err) = s
        .labctl(&["validate"])
        .env("LABCTL_FAILPOINT", "command:panic")
        .env_remove("RUST_BACKTRACE")
        .env_remove("LABCTL_LOG")
        .run()
        .parts();
    assert_eq!(code, 70, "{err}");
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "error: internal error, a bug in labctl: failpoint `command` (#1) at src/failpoint.rs:"
        ),
        "{err}"
    );
    assert!(!err.contains("panicked at"), "{err}");
}

#[test]
fn a_panic_logs_its_backtrace_when_asked() {
    let s = Stack::bundled();
    let (code, _, err) = s
        .labctl(&["validate"])
        .env("LABCTL_FAILPOINT", "command:panic")
        .env("RUST_BACKTRACE", "1")
        .run()
        .parts();
    assert_eq!(code, 70, "{err}");
    assert!(err.starts_with("error: internal error"), "{err}");
    assert!(err.contains("labctl::failpoint::hit"), "{err}");
}
