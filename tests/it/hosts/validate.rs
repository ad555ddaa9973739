//! `[hosts.<name>]` and `hosts = [...]` checked by `labctl validate`: each problem with its
//! message at the line and column it is about, every problem in one run.

use crate::support::Stack;

/// `validate` on `text` fails; its stderr.
fn invalid(text: &str) -> String {
    let (code, _, stderr) = Stack::new(text).labctl(&["validate"]).run().parts();
    assert_eq!(code, 1, "expected failure; stderr:\n{stderr}");
    stderr
}

/// `stderr` reports `message` at `line_col` of stack.toml.
#[track_caller]
fn reports(stderr: &str, line_col: &str, message: &str) {
    let want = format!("stack.toml:{line_col}: {message}");
    assert!(stderr.contains(&want), "expected `{want}` in:\n{stderr}");
}

const HEAD: &str = "[stack]\nname = \"lab\"\n\n[hosts.nas]\nssh = \"root@nas.lan\"\n";

#[test]
fn a_placement_names_known_hosts_each_once() {
    let e = invalid(&format!(
        "{HEAD}\n[host.collector]\nhosts = [\"local\", \"nsa\", \"nas\", \"nas\"]\n\n\
         [host.extra.job]\nhosts = []\n"
    ));
    reports(&e, "8:19", "unknown host `nsa` in `host.collector.hosts`");
    assert!(
        e.contains("declare it as `[hosts.nsa]`, or use one of `local`, `nas`"),
        "{e}"
    );
    reports(
        &e,
        "8:33",
        "host `nas` is listed twice in `host.collector.hosts`",
    );
    reports(
        &e,
        "11:9",
        "`host.extra.job.hosts` is empty: it places the component nowhere",
    );
    assert!(e.contains("has 3 problems"), "{e}");
    // Every host named exists: valid, and each host's units count.
    let s = Stack::new(&format!(
        "{HEAD}\n[host.collector]\nhosts = [\"local\", \"nas\"]\n"
    ));
    s.labctl(&["validate"])
        .run()
        .code(0)
        .stderr_has("is valid:");
}

#[test]
fn what_runs_once_runs_on_one_host_and_the_agents_that_work_together_together() {
    let e = invalid(&format!(
        "{HEAD}\n[host.openbao]\nhosts = [\"local\", \"nas\"]\n\n\
         [host.gate]\nhosts = [\"nas\"]\n"
    ));
    reports(
        &e,
        "8:9",
        "`host.openbao` runs on one host only, but is placed on `local` and `nas`",
    );
    reports(
        &e,
        "11:9",
        "`host.gate` must run on the proxy's host `local`, not on `nas`",
    );
    let e = invalid(&format!("{HEAD}\n[host.proxy]\nhosts = [\"nas\"]\n"));
    reports(
        &e,
        "8:9",
        "`host.proxy` applies the stack, so it runs where labctl runs (`local`), not on `nas`",
    );
    // OpenBao elsewhere must be reachable from here; a pipeline's unit must be the proxy's.
    let e = invalid(&format!(
        "{HEAD}\n[host.openbao]\nhosts = [\"nas\"]\n\n\
         [host.proxy.pipelines.etl]\nunit = \"etl\"\n\n\
         [host.extra.etl]\nhosts = [\"nas\"]\n"
    ));
    reports(
        &e,
        "7:7",
        "`host.openbao` runs on `nas` but listens on its loopback address `127.0.0.1:8200`",
    );
    reports(
        &e,
        "11:8",
        "pipeline `etl` starts `etl.service`, which runs on `nas`, not on the proxy's host `local`",
    );
    Stack::new(&format!(
        "{HEAD}\n[host.openbao]\nhosts = [\"nas\"]\nlisten = \"10.0.0.2:8200\"\n\n\
         [host.collector]\nhosts = [\"local\", \"nas\"]\n"
    ))
    .labctl(&["validate"])
    .run()
    .code(0);
}

#[test]
fn a_host_is_named_reached_and_placed_as_ssh_and_systemd_take_it() {
    let e = invalid(
        "[stack]\nname = \"lab\"\n\n[hosts.local]\nssh = \"me@here\"\n\n\
         [hosts.Pi]\nssh = \"-oProxyCommand=touch /tmp/x\"\nunit_dir = \"units\"\n",
    );
    reports(
        &e,
        "4:1",
        "`hosts.local` is taken: `local` is the machine labctl runs on (`[host]`)",
    );
    reports(
        &e,
        "7:1",
        "`hosts.Pi` is not a valid host name: only lowercase letters, digits and `-` are allowed",
    );
    reports(
        &e,
        "8:7",
        "`hosts.Pi.ssh` is not an ssh destination: it starts with `-`, which ssh reads as an option",
    );
    reports(
        &e,
        "9:12",
        "`hosts.Pi.unit_dir` must be an absolute path, not `units`",
    );
}

#[test]
fn unit_names_are_unique_per_host_and_never_read_as_another_hosts() {
    // One name on two hosts is fine.
    let s = Stack::new(&format!(
        "{HEAD}\n[host.extra.a]\ntemplate = \"t\"\nunit = \"job\"\n\n\
         [host.extra.b]\ntemplate = \"t\"\nunit = \"job\"\nhosts = [\"nas\"]\n"
    ));
    s.file(
        "systemd-templates/t.service",
        "[Service]\nExecStart=/bin/true\n",
    );
    s.labctl(&["validate"]).run().code(0);
    let e = invalid(&format!(
        "{HEAD}\n[host.extra.a]\nunit = \"job\"\nhosts = [\"nas\"]\n\n\
         [host.extra.b]\nunit = \"job\"\nhosts = [\"local\", \"nas\"]\n\n\
         [host.extra.c]\nunit = \"nas:job\"\n"
    ));
    reports(
        &e,
        "11:1",
        "unit name `job` is used twice on host `nas` (also by `host.extra.a`)",
    );
    reports(
        &e,
        "15:1",
        "unit name `nas:job` reads as unit `job` on host `nas`",
    );
}
