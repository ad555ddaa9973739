//! The D-Bus connection dropped in the middle of a host apply: the session bus (dbus-daemon)
//! killed while labctl waits on a start job. labctl must end with an error that says so (no
//! hang, no panic), and once the bus is back (socket-activated again) a second apply converges.

use std::time::{Duration, Instant};

use crate::support::Stack;
use crate::support::systemd::UserManager;

const SLOW: &str = "[Unit]
Description=slow to start

[Service]
ExecStartPre=/bin/sleep 3
ExecStart=/bin/sleep infinity

[Install]
WantedBy=default.target
";

#[test]
fn the_bus_dropped_mid_apply_fails_clearly_and_a_rerun_converges() {
    let m = UserManager::start();
    let stack = Stack::units(&m.scratch(), "db")
        .template("slow.service", SLOW)
        .unit("slow", "template = \"slow\"\nunit = \"db-slow\"")
        .write();
    let bus = m.main_pid("dbus.service");
    assert!(bus > 0, "the session bus runs as dbus.service");
    let mut child = m
        .command(&stack, &["apply", "--plane", "systemd", "--yes"])
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.active_state("db-slow.service") != "activating" {
        assert!(Instant::now() < deadline, "the start job never began");
        std::thread::sleep(Duration::from_millis(20));
    }
    crate::support::signal(bus, "KILL");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "labctl hung after the bus went away"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("error:") && !err.contains("panicked"),
        "a clear error, no panic:\n{err}"
    );
    eprintln!("labctl, its bus killed mid-apply: {}", err.trim());

    // The bus comes back on the next connection (dbus.socket); the apply finishes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let again = m.labctl(&stack, &["apply", "--plane", "systemd", "--yes"]);
        if again.code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", again.stderr);
        std::thread::sleep(Duration::from_millis(500));
    }
    m.labctl(
        &stack,
        &["plan", "--plane", "systemd", "--detailed-exitcode"],
    )
    .code(0)
    .stdout_has("No changes.");
    // The start job queued before the bus went away finishes by itself (a plan that finds the
    // unit activating has nothing to add).
    crate::support::wait_for("db-slow to be active", Duration::from_secs(30), || {
        m.active_state("db-slow.service") == "active"
    });
}
