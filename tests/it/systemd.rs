//! The systemd plane against a real systemd user manager (one per test, see support/systemd.rs).
//! Every test names its units with its own prefix: managers share one cgroup tree.
//! Every apply is followed by a plan that must say `No changes.`.

use std::path::Path;

use crate::support::systemd::UserManager;
use crate::support::{Output, Stack};

/// A long-running service that survives SIGHUP, so a reload keeps its MainPID.
const SLEEPER: &str = "[Unit]
Description={{ c.values.description }}

[Service]
ExecStart=/bin/sh -c 'trap \"\" HUP; while :; do sleep 1; done'
ExecReload=/bin/kill -HUP $MAINPID

[Install]
WantedBy=default.target
";

fn sleeper(unit: &str, description: &str) -> String {
    format!(
        "template = \"sleeper\"\nunit = \"{unit}\"\nvalues = {{ description = \"{description}\" }}"
    )
}

fn apply(m: &UserManager, stack: &Path) -> Output {
    m.labctl(stack, &["apply", "--plane", "systemd", "--yes"])
}

#[track_caller]
fn converged(m: &UserManager, stack: &Path) {
    m.labctl(
        stack,
        &["plan", "--plane", "systemd", "--detailed-exitcode"],
    )
    .code(0)
    .stdout_has("No changes.");
}

#[track_caller]
fn running(m: &UserManager, unit: &str) {
    assert_eq!(m.active_state(unit), "active", "{unit}");
}

#[test]
fn fresh_apply_creates_enables_starts_and_converges() {
    let m = UserManager::start();
    let stack = Stack::units(&m.scratch(), "fresh")
        .template("sleeper.service", SLEEPER)
        .template(
            "tick.service",
            "[Service]\nType=oneshot\nExecStart=/bin/true\n",
        )
        .template(
            "tick.timer",
            "[Timer]\nOnCalendar=daily\n\n[Install]\nWantedBy=timers.target\n",
        )
        .template(
            "plain.service",
            "[Service]\nExecStart=/bin/sleep infinity\n",
        )
        .unit("web", &sleeper("fresh-web", "web"))
        .unit("tick", "unit = \"fresh-tick\"")
        .unit("plain", "unit = \"fresh-plain\"")
        .write();

    let plan = m.labctl(&stack, &["plan", "--detailed-exitcode"]);
    plan.code(2)
        .stderr_has("kube: not planned")
        .stdout_has("Plan: 4 to add, 0 to change, 0 to destroy.");
    for unit in [
        "fresh-web.service",
        "fresh-tick.service",
        "fresh-tick.timer",
        "fresh-plain.service",
    ] {
        plan.stdout_has(&format!("+ unit {unit}"));
    }
    plan.stdout_has("# unit fresh-web.service will be created (enables unit, starts unit)")
        .stdout_has("# unit fresh-tick.timer will be created (enables unit, starts unit)")
        .stdout_has("# unit fresh-tick.service will be created\n")
        .stdout_has("# unit fresh-plain.service will be created (starts unit)");

    // No terminal to ask on, no `--yes`: refuse, change nothing.
    m.labctl(&stack, &["apply", "--plane", "systemd"])
        .code(1)
        .stderr_has("pass `--yes`");
    assert!(!m.unit_dir().join("fresh-web.service").exists());

    let run = m.labctl(&stack, &["apply", "--plane", "systemd", "--yes", "-v"]);
    run.code(0)
        .stderr_has("systemd: ")
        .stderr_has("D-Bus calls in")
        .stderr_has("Apply complete: 4 added");
    assert!(
        !run.stderr.contains("kube: not planned"),
        "--plane systemd says nothing about kube"
    );

    running(&m, "fresh-web.service");
    running(&m, "fresh-plain.service");
    running(&m, "fresh-tick.timer");
    assert_eq!(
        m.active_state("fresh-tick.service"),
        "inactive",
        "a timer's service is left to the timer"
    );
    assert_eq!(m.unit_file_state("fresh-web.service"), "enabled");
    assert_eq!(m.unit_file_state("fresh-tick.timer"), "enabled");
    assert_eq!(m.unit_file_state("fresh-plain.service"), "static");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(m.unit_dir().join("fresh-web.service"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o644);
    converged(&m, &stack);

    // Asking for the kube plane with no cluster configured is an error, not an empty plan.
    m.labctl(&stack, &["plan", "--plane", "kube"])
        .code(1)
        .stderr_has("kube: find a cluster");
}

#[test]
fn changed_unit_restarts_and_reload_on_change_keeps_main_pid() {
    let m = UserManager::start();
    let dir = m.scratch();
    let stack = |d: &str| {
        Stack::units(&dir, "chg")
            .template("sleeper.service", SLEEPER)
            .unit("a", &sleeper("chg-a", d))
            .unit(
                "b",
                &format!("{}\nreload_on_change = true", sleeper("chg-b", d)),
            )
            .write()
    };
    let s = stack("one");
    apply(&m, &s).code(0);
    converged(&m, &s);
    let (a, b) = (m.main_pid("chg-a.service"), m.main_pid("chg-b.service"));
    assert!(a > 0 && b > 0);

    let s = stack("two");
    m.labctl(&s, &["plan", "--plane", "systemd"])
        .code(0)
        .stdout_has("# unit chg-a.service will be updated (restarts unit)")
        .stdout_has("# unit chg-b.service will be updated (reloads unit)")
        .stdout_has("- Description=one")
        .stdout_has("+ Description=two")
        .stdout_has("Plan: 0 to add, 2 to change, 0 to destroy.");
    apply(&m, &s).code(0);
    running(&m, "chg-a.service");
    running(&m, "chg-b.service");
    assert_ne!(m.main_pid("chg-a.service"), a, "restarted: a new MainPID");
    assert_eq!(m.main_pid("chg-b.service"), b, "reloaded: the same MainPID");
    assert_eq!(
        m.property(
            "chg-a.service",
            "org.freedesktop.systemd1.Unit",
            "Description"
        ),
        "two"
    );
    converged(&m, &s);
}

#[test]
fn drift_is_shown_and_repaired() {
    let m = UserManager::start();
    let s = Stack::units(&m.scratch(), "drift")
        .template("sleeper.service", SLEEPER)
        .unit("a", &sleeper("drift-a", "a"))
        .unit("b", &sleeper("drift-b", "b"))
        .unit("c", &sleeper("drift-c", "c"))
        .write();
    apply(&m, &s).code(0);
    converged(&m, &s);

    let file = m.unit_dir().join("drift-a.service");
    let rendered = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        rendered.replace("[Service]\n", "[Service]\nEnvironment=HAND=edited\n"),
    )
    .unwrap();
    m.systemctl(&["stop", "drift-b.service"]);
    m.systemctl(&["disable", "drift-c.service"]);

    m.labctl(&s, &["plan", "--plane", "systemd", "--detailed-exitcode"])
        .code(2)
        .stdout_has("# unit drift-a.service will be updated (restarts unit)")
        .stdout_has("- Environment=HAND=edited")
        .stdout_has("# unit drift-b.service will be updated (starts unit)")
        .stdout_has("is inactive (dead) but the stack runs it")
        .stdout_has("# unit drift-c.service will be updated (enables unit)")
        .stdout_has("is disabled but the stack enables it");
    apply(&m, &s).code(0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), rendered);
    running(&m, "drift-b.service");
    assert_eq!(m.unit_file_state("drift-c.service"), "enabled");
    assert_eq!(
        m.property(
            "drift-a.service",
            "org.freedesktop.systemd1.Unit",
            "NeedDaemonReload"
        ),
        "false"
    );
    converged(&m, &s);
}

#[test]
fn a_drop_in_is_loaded_and_shown() {
    let m = UserManager::start();
    let s = Stack::units(&m.scratch(), "dropin")
        .template("sleeper.service", SLEEPER)
        .unit("a", &sleeper("dropin-a", "a"))
        .write();
    apply(&m, &s).code(0);
    let d = m.unit_dir().join("dropin-a.service.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("override.conf"),
        "[Service]\nEnvironment=FROM=dropin\n",
    )
    .unwrap();
    let pid = m.main_pid("dropin-a.service");

    // systemd has not read the drop-in yet: the plan reloads systemd and restarts the unit.
    m.labctl(&s, &["plan", "--plane", "systemd"])
        .code(0)
        .stdout_has("# unit dropin-a.service will be updated (reloads systemd, restarts unit)")
        .stdout_has("NeedDaemonReload");
    apply(&m, &s).code(0);
    assert_ne!(m.main_pid("dropin-a.service"), pid);
    m.labctl(&s, &["plan", "--plane", "systemd"])
        .code(0)
        .stdout_has("No changes.")
        .stdout_has("drop-ins change the effective unit")
        .stdout_has("override.conf");
}

#[test]
fn removed_units_are_stopped_disabled_and_deleted() {
    let m = UserManager::start();
    let base = Stack::units(&m.scratch(), "rm")
        .template("sleeper.service", SLEEPER)
        .unit("a", &sleeper("rm-a", "a"))
        .unit("b", &sleeper("rm-b", "b"));
    let s = base.write();
    apply(&m, &s).code(0);
    running(&m, "rm-b.service");
    let wants = m.unit_dir().join("default.target.wants/rm-b.service");
    assert!(wants.exists());

    let s = base.without("b").write();
    m.labctl(&s, &["plan", "--plane", "systemd"])
        .code(0)
        .stdout_has("# unit rm-b.service will be destroyed (stops unit, disables unit)")
        .stdout_has("- unit rm-b.service")
        .stdout_has("Plan: 0 to add, 0 to change, 1 to destroy.");
    apply(&m, &s)
        .code(0)
        .stderr_has("Apply complete: 0 added, 0 changed, 1 destroyed.");
    assert_eq!(m.active_state("rm-b.service"), "inactive");
    assert!(!m.unit_dir().join("rm-b.service").exists());
    assert!(!wants.exists(), "the [Install] symlink is gone");
    assert_eq!(
        m.property("rm-b.service", "org.freedesktop.systemd1.Unit", "LoadState"),
        "not-found"
    );
    running(&m, "rm-a.service");
    converged(&m, &s);
}

#[test]
fn failed_units_are_named_others_applied_and_a_fix_converges() {
    let m = UserManager::start();
    let dir = m.scratch();
    let bad_simple = "[Service]\nExecStart=/bin/false\n\n[Install]\nWantedBy=default.target\n";
    let bad_oneshot = "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/false\n";
    let dependent = "[Unit]\nRequires=fail-once.service\nAfter=fail-once.service\n\n[Service]\nExecStart=/bin/sleep infinity\n";
    let stack = |simple: &str, oneshot: &str| {
        Stack::units(&dir, "fail")
            .template("sleeper.service", SLEEPER)
            .template("simple.service", simple)
            .template("once.service", oneshot)
            .template("dep.service", dependent)
            .unit("good", &sleeper("fail-good", "good"))
            .unit("simple", "unit = \"fail-simple\"")
            .unit("once", "unit = \"fail-once\"")
            .unit("dep", "unit = \"fail-dep\"")
            .write()
    };
    let s = stack(bad_simple, bad_oneshot);
    let run = apply(&m, &s);
    run.code(1)
        .stderr_has("apply failed")
        .stderr_has("`fail-simple.service`: its job was `done` but it is `failed`")
        .stderr_has("journalctl --user -u fail-simple.service")
        .stderr_has("`fail-once.service`: start job `failed`")
        .stderr_has("journalctl --user -u fail-once.service")
        .stderr_has("`fail-dep.service`: start job `dependency`");
    let report = &run.stderr[run.stderr.find("apply failed").unwrap()..];
    assert!(!report.contains("fail-good"), "{report}");
    running(&m, "fail-good.service");
    assert_eq!(m.unit_file_state("fail-good.service"), "enabled");

    let fixed = stack(
        &SLEEPER.replace("{{ c.values.description }}", "fixed"),
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
    );
    apply(&m, &fixed).code(0);
    for unit in [
        "fail-good.service",
        "fail-simple.service",
        "fail-once.service",
        "fail-dep.service",
    ] {
        running(&m, unit);
    }
    converged(&m, &fixed);
}

#[test]
fn an_unwritable_unit_folder_fails_cleanly() {
    let m = UserManager::start();
    let dir = m.scratch();
    // Tests run as root, for whom permission bits do not stop writes: a folder under a regular file
    // cannot be created by anyone.
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, "not a folder\n").unwrap();
    let s = Stack::units(&dir.join("s1"), "ro")
        .template("sleeper.service", SLEEPER)
        .host(&format!(
            "unit_dir = \"{}\"",
            blocker.join("units").display()
        ))
        .unit("a", &sleeper("ro-a", "a"))
        .write();
    apply(&m, &s)
        .code(1)
        .stderr_has("cannot write")
        .stderr_has("ro-a.service")
        .stderr_has("Not a directory");
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "not a folder\n");
    // Nothing was half-done: the same plan still stands.
    m.labctl(&s, &["plan", "--plane", "systemd"])
        .code(0)
        .stdout_has("+ unit ro-a.service");

    // The rename into place fails (a folder sits where the file goes): the temp file goes too.
    let units = dir.join("units");
    std::fs::create_dir_all(units.join("ro-b.service")).unwrap();
    let s = Stack::units(&dir.join("s2"), "ro")
        .template("sleeper.service", SLEEPER)
        .host(&format!("unit_dir = \"{}\"", units.display()))
        .unit("b", &sleeper("ro-b", "b"))
        .write();
    apply(&m, &s)
        .code(1)
        .stderr_has("cannot write")
        .stderr_has("ro-b.service");
    let left: Vec<_> = std::fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("ro-b.service")],
        "only the folder that was there"
    );
    assert_eq!(m.active_state("ro-b.service"), "inactive");
}

#[test]
fn a_foreign_unit_is_never_touched_without_adopt() {
    let m = UserManager::start();
    let foreign = "[Service]\nExecStart=/bin/sleep infinity\n";
    let dir = m.unit_dir();
    std::fs::write(dir.join("for-web.service"), foreign).unwrap();
    std::fs::write(dir.join("for-stranger.service"), foreign).unwrap();
    let other = "# Managed by labctl (stack: someone-else). Local edits are overwritten by `labctl apply`.\n[Service]\nExecStart=/bin/true\n";
    std::fs::write(dir.join("for-other.service"), other).unwrap();
    let s = Stack::units(&m.scratch(), "for")
        .template("sleeper.service", SLEEPER)
        .unit("web", &sleeper("for-web", "web"))
        .unit("api", &sleeper("for-api", "api"))
        .write();

    let plan = m.labctl(&s, &["plan", "--plane", "systemd"]);
    plan.code(0)
        .stdout_has("! unit for-web.service")
        .stdout_has("exists but is not managed by this stack")
        .stdout_has("--adopt");
    assert!(
        !plan.stdout.contains("for-stranger") && !plan.stdout.contains("for-other"),
        "{}",
        plan.stdout
    );

    apply(&m, &s)
        .code(1)
        .stderr_has("refusing to take over `unit for-web.service`")
        .stderr_has("--adopt");
    assert_eq!(
        std::fs::read_to_string(dir.join("for-web.service")).unwrap(),
        foreign
    );
    assert!(
        !dir.join("for-api.service").exists(),
        "nothing is applied while a conflict stands"
    );

    m.labctl(&s, &["apply", "--plane", "systemd", "--yes", "--adopt"])
        .code(0);
    assert!(
        std::fs::read_to_string(dir.join("for-web.service"))
            .unwrap()
            .starts_with("# Managed by labctl (stack: for)")
    );
    running(&m, "for-web.service");
    running(&m, "for-api.service");
    converged(&m, &s);
    assert_eq!(
        std::fs::read_to_string(dir.join("for-stranger.service")).unwrap(),
        foreign
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("for-other.service")).unwrap(),
        other
    );
}

#[test]
fn the_user_flag_picks_the_user_manager_for_a_system_stack() {
    let m = UserManager::start();
    let s = Stack::units(&m.scratch(), "flag")
        .system_scope()
        .template("sleeper.service", SLEEPER)
        .unit("a", &sleeper("flag-a", "a"))
        .write();
    // Without `--user` the stack means the system manager; with no system bus (this machine's is
    // hidden, if it has one): a clear error.
    m.command(&s, &["plan", "--plane", "systemd"])
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/nonexistent/system_bus_socket",
        )
        .run()
        .code(1)
        .stderr_has("systemd: connect to the system bus");
    m.labctl(&s, &["plan", "--plane", "systemd", "--user"])
        .code(0)
        .stdout_has("+ unit flag-a.service");
    m.labctl(&s, &["apply", "--plane", "systemd", "--user", "--yes"])
        .code(0);
    assert!(
        m.unit_dir().join("flag-a.service").exists(),
        "written to $XDG_CONFIG_HOME/systemd/user"
    );
    running(&m, "flag-a.service");
    m.labctl(&s, &["plan", "--plane", "systemd", "--user"])
        .code(0)
        .stdout_has("No changes.");
}

#[test]
fn apply_asks_on_a_terminal() {
    let m = UserManager::start();
    let s = Stack::units(&m.scratch(), "tty")
        .template("sleeper.service", SLEEPER)
        .unit("a", &sleeper("tty-a", "a"))
        .write();
    let args = ["apply", "--plane", "systemd"];
    let no = m.command(&s, &args).run_on_tty("no\n");
    no.code(1)
        .stdout_has("Apply these changes?")
        .stdout_has("apply cancelled: nothing was changed");
    assert!(!m.unit_dir().join("tty-a.service").exists());
    let yes = m.command(&s, &args).run_on_tty("yes\n");
    yes.code(0).stdout_has("Apply complete: 1 added");
    running(&m, "tty-a.service");
    converged(&m, &s);
}

#[test]
fn settle_is_how_long_a_started_unit_must_stay_up() {
    let m = UserManager::start();
    let dir = m.scratch();
    // Dies 3 s after it starts: within a 6 s settle window it is a failure, past a 1 s one it is
    // not yet (it fails later, and the next plan shows it).
    let late =
        "[Service]\nExecStart=/bin/sh -c 'sleep 3; exit 1'\n\n[Install]\nWantedBy=default.target\n";
    let s = Stack::units(&dir, "settle")
        .template("late.service", late)
        .unit("late", "unit = \"settle-late\"")
        .write();
    m.labctl(
        &s,
        &["apply", "--plane", "systemd", "--yes", "--settle", "6s"],
    )
    .code(1)
    .stderr_has("`settle-late.service`: its job was `done` but it is `failed`");
    m.labctl(&s, &["apply", "--plane", "systemd", "--yes"])
        .code(0);
    m.labctl(
        &s,
        &["apply", "--plane", "systemd", "--yes", "--settle", "soon"],
    )
    .code(2)
    .stderr_has("`soon` is not a duration");
}
