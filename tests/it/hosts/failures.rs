//! Each host fails alone: one that cannot be reached, refuses the key or lacks the bridge; one
//! lost while applying; the lock on every host, and a host that cannot be locked; the proxy's
//! sync with a host down.

use std::time::Duration;

use super::{host_file, labctl, stack};
use crate::support::gitops::{Gitops, synced};
use crate::support::hosts::{Flaw, Hosts};
use crate::support::systemd::UserManager;
use crate::support::wait_for;

#[test]
fn hosts_that_cannot_be_reached_fail_alone_each_named_with_why() {
    let m = UserManager::start();
    let hosts = Hosts::start_with(&[Flaw::None, Flaw::None, Flaw::NoBridge, Flaw::WrongKey]);
    let path = stack(&m, &hosts, "reach", &["h1", "h2", "h3", "h4"], "");
    // h2's sshd is gone: ssh says `Connection refused`.
    hosts.cut(2);
    let run = |args: &[&str]| labctl(&m, &hosts, &path, args).run();

    let plan = run(&["plan"]);
    plan.code(1)
        .stdout_has("# unit h1:agent.service will be created")
        .stdout_has("  h1: 1 to add, 0 to change, 0 to destroy.")
        .stdout_has("  h2: not planned: ")
        .stdout_has("  h3: not planned: ")
        .stdout_has("  h4: not planned: ")
        .stderr_has("error: 3 hosts could not be planned (the plan above covers the others):");
    for n in [2, 3, 4] {
        assert!(
            !plan.stdout.contains(&format!("unit h{n}:")),
            "nothing of h{n} is planned:\n{}",
            plan.stdout
        );
    }
    let line = |n: usize| {
        plan.stderr
            .lines()
            .find(|l| l.contains(&format!("host `h{n}`")))
            .unwrap_or_else(|| panic!("h{n} not named:\n{}", plan.stderr))
            .to_string()
    };
    // Each in ssh's own words, or naming what the host lacks.
    assert!(line(2).contains("Connection refused"), "{}", line(2));
    assert!(
        line(3).contains("`systemd-stdio-bridge` is not installed on `h3`"),
        "{}",
        line(3)
    );
    assert!(
        line(4).contains("Permission denied (publickey)"),
        "{}",
        line(4)
    );

    // Applying goes through where it can, and fails naming the rest.
    let applied = run(&["apply", "--yes"]);
    applied
        .code(1)
        .stderr_has("applied on `local`, `h1`")
        .stderr_has("Connection refused")
        .stderr_has("Permission denied (publickey)");
    assert_eq!(m.active_state("hello.service"), "active");
    assert_eq!(hosts.manager(1).active_state("agent.service"), "active");
    for n in [2, 3, 4] {
        assert_ne!(
            hosts.manager(n).active_state("agent.service"),
            "active",
            "h{n}"
        );
    }
    // Recorded, but not as a generation to come back to.
    let history = run(&["history", "-o", "json"]);
    history.code(0);
    let doc: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let last = doc["generations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["result"], "failed", "{last}");

    // h2 back: the next run applies it; the hosts still flawed still fail alone.
    hosts.restore(2);
    run(&["apply", "--yes"])
        .code(1)
        .stderr_has("applied on `h2`");
    assert_eq!(hosts.manager(2).active_state("agent.service"), "active");

    // Without the hosts that cannot be reached, the stack is what runs.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"h1\", \"h2\", \"h3\", \"h4\"", "\"h1\", \"h2\"");
    let text = text.split("[hosts.h3]").next().unwrap().to_string();
    std::fs::write(&path, text).unwrap();
    run(&["plan", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");
}

#[test]
fn a_host_lost_while_applying_fails_alone_and_a_rerun_converges() {
    let m = UserManager::start();
    let hosts = Hosts::start(3);
    let extra =
        "[host.extra.slow]\ntemplate = \"slow\"\nhosts = [\"h2\"]\nvalues = { pause = 4 }\n";
    let path = stack(&m, &hosts, "lost", &["h1", "h2", "h3"], extra);
    let mut apply = labctl(&m, &hosts, &path, &["apply", "--yes"]).spawn();
    // h2 goes while its slow unit is starting.
    wait_for(
        "slow.service to be starting on h2",
        Duration::from_secs(60),
        || hosts.manager(2).active_state("slow.service") == "activating",
    );
    hosts.cut(2);
    let status = apply.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(apply.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("  - host `h2`: "))
        .unwrap_or_else(|| panic!("h2 not named:\n{stderr}"));
    // In ssh's own words: the connection went, and reaching the host again is refused.
    assert!(
        line.contains("ssh: connect to host 127.0.0.1 port ")
            && line.contains("Connection refused"),
        "{stderr}"
    );
    assert!(
        stderr.contains("applied on `local`, `h1`, `h3`"),
        "{stderr}"
    );
    for n in [1, 3] {
        assert_eq!(
            hosts.manager(n).active_state("agent.service"),
            "active",
            "h{n}"
        );
    }
    assert_eq!(m.active_state("hello.service"), "active");

    hosts.restore(2);
    labctl(&m, &hosts, &path, &["apply", "--yes"]).run().code(0);
    // h2's manager carried on with the start labctl asked for before the host went.
    assert_eq!(hosts.manager(2).active_state("agent.service"), "active");
    wait_for(
        "slow.service to be active on h2",
        Duration::from_secs(30),
        || hosts.manager(2).active_state("slow.service") == "active",
    );
    labctl(&m, &hosts, &path, &["plan", "--detailed-exitcode"])
        .run()
        .code(0)
        .stdout_has("No changes.");
}

#[test]
fn the_lock_covers_every_host_the_plan_touches() {
    let hosts = Hosts::start(2);
    // Two machines applying one stack to the same hosts: each its own local manager (so its
    // own local lock), both reaching h1 and h2.
    let (a, b) = (UserManager::start(), UserManager::start());
    let extra =
        "[host.extra.slow]\ntemplate = \"slow\"\nhosts = [\"h1\"]\nvalues = { pause = 4 }\n";
    let path_a = stack(&a, &hosts, "shared", &["h1", "h2"], extra);
    let path_b = stack(&b, &hosts, "shared", &["h1", "h2"], extra);
    let mut first = labctl(&a, &hosts, &path_a, &["apply", "--yes"]).spawn();
    wait_for(
        "slow.service to be starting on h1",
        Duration::from_secs(60),
        || hosts.manager(1).active_state("slow.service") == "activating",
    );
    labctl(&b, &hosts, &path_b, &["apply", "--yes"])
        .run()
        .code(1)
        .stderr_has("another writer holds its lock: `")
        .stderr_has("(lock on host `h1`)");
    // Nobody takes it from a running holder, here or there.
    labctl(&b, &hosts, &path_b, &["force-unlock"])
        .run()
        .code(1)
        .stderr_has("refusing to unlock the lock on host `h1`: `");
    assert!(first.wait().unwrap().success());
    labctl(&b, &hosts, &path_b, &["force-unlock"])
        .run()
        .code(0)
        .stdout_has("The lock on host `h1` is free.")
        .stdout_has("The lock on host `h2` is free.");
    // Released with the run that held it: the other machine applies now.
    labctl(&b, &hosts, &path_b, &["apply", "--yes"])
        .run()
        .code(0);
    labctl(&b, &hosts, &path_b, &["plan", "--detailed-exitcode"])
        .run()
        .code(0)
        .stdout_has("No changes.");
}

/// A host reached whose lock cannot be taken (no `flock` there) is planned, since a plan takes
/// no lock, but never applied unlocked: it fails alone, saying what it lacks.
#[test]
fn a_host_that_cannot_be_locked_is_never_applied() {
    let m = UserManager::start();
    let hosts = Hosts::start_with(&[Flaw::None, Flaw::NoFlock]);
    let path = stack(&m, &hosts, "unlockable", &["h1", "h2"], "");
    let run = |args: &[&str]| labctl(&m, &hosts, &path, args).run();
    run(&["plan"])
        .code(0)
        .stdout_has("# unit h2:agent.service will be created");
    let applied = run(&["apply", "--yes"]);
    applied
        .code(1)
        .stderr_has("applied on `local`, `h1`")
        .stderr_has("flock (util-linux) is not installed");
    let line = applied
        .stderr
        .lines()
        .find(|l| l.contains("host `h2`"))
        .unwrap_or_else(|| panic!("h2 not named:\n{}", applied.stderr));
    assert!(
        line.contains("flock (util-linux) is not installed"),
        "{line}"
    );
    assert_eq!(hosts.manager(1).active_state("agent.service"), "active");
    assert_ne!(hosts.manager(2).active_state("agent.service"), "active");
    assert!(!host_file(&hosts, 2, "systemd/user/agent.service").exists());
    // Without it, the stack is what runs.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[\"h1\", \"h2\"]", "[\"h1\"]");
    std::fs::write(&path, text).unwrap();
    run(&["plan", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");
}

/// The proxy's GitOps sync, unchanged: a push that places a unit on two hosts is applied there
/// over ssh; a push while one host is down is applied to the other and the sync fails naming
/// the host that is down (no rollback: the others are as the push says); the next push, with
/// the host back, brings it along.
#[test]
fn the_proxys_sync_reaches_every_host_and_one_down_fails_alone() {
    let g = Gitops::new(&["a"]);
    let hosts = Hosts::start(2);
    let base = std::fs::read_to_string(g.work.join("stack.toml")).unwrap();
    let with = |description: &str| {
        format!(
            "{base}\n[host.extra.b]\ntemplate = \"sleeper\"\nunit = \"gitops-b\"\nhosts = [\"h1\", \"h2\"]\n\
             values = {{ description = \"{description}\", hold = \"\" }}\n\n{}",
            hosts.toml()
        )
    };
    let p = g
        .proxy()
        .env("LABCTL_SSH_COMMAND", hosts.ssh_command())
        .start();
    let (push, first) = g.push_text(&with("b on every host"));
    assert_eq!(
        p.deliver("push", "hosts-0001", "application/json", push.as_bytes())
            .status,
        202
    );
    let status = synced(&p, &first);
    assert_eq!(status["result"], "ok", "{status}\n{}", p.log_text());
    for n in [1, 2] {
        assert_eq!(
            hosts.manager(n).active_state("gitops-b.service"),
            "active",
            "h{n}"
        );
    }
    assert_eq!(g.m.active_state("gitops-a.service"), "active");
    let b = |n: usize| {
        std::fs::read_to_string(host_file(&hosts, n, "systemd/user/gitops-b.service")).unwrap()
    };

    hosts.cut(2);
    let (push, second) = g.push_text(&with("b changed"));
    assert_eq!(
        p.deliver("push", "hosts-0002", "application/json", push.as_bytes())
            .status,
        202
    );
    let status = synced(&p, &second);
    assert_eq!(status["result"], "failed", "{status}\n{}", p.log_text());
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("host `h2`") && error.contains("Connection refused"),
        "{status}"
    );
    assert!(b(1).contains("Description=b changed"), "{}", b(1));
    assert!(b(2).contains("Description=b on every host"), "{}", b(2));

    hosts.restore(2);
    let (push, third) = g.push_text(&with("b everywhere again"));
    assert_eq!(
        p.deliver("push", "hosts-0003", "application/json", push.as_bytes())
            .status,
        202
    );
    let status = synced(&p, &third);
    assert_eq!(status["result"], "ok", "{status}\n{}", p.log_text());
    for n in [1, 2] {
        assert!(
            b(n).contains("Description=b everywhere again"),
            "h{n}: {}",
            b(n)
        );
    }
    labctl(&g.m, &hosts, &g.repo.join("stack.toml"), &["plan"])
        .run()
        .code(0)
        .stdout_has("No changes.");
    assert_eq!(p.stop(), Some(0));
}

/// An apply killed after another host's files changed but before its restart: the restart is
/// owed there (the marker sits beside the unit file on that host), and the next plan makes it.
#[test]
fn an_apply_killed_between_a_hosts_files_and_its_restart_restarts_there_next_time() {
    let m = UserManager::start();
    let hosts = Hosts::start(1);
    let path = stack(&m, &hosts, "owed", &["h1"], "");
    labctl(&m, &hosts, &path, &["apply", "--yes"]).run().code(0);
    let before = hosts.manager(1).main_pid("agent.service");
    // The agent changes; only h1 is applied, and labctl dies once h1's files are written and
    // loaded (before that, systemd's NeedDaemonReload alone would say so).
    let template = path
        .parent()
        .unwrap()
        .join("systemd-templates/sleeper.service");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(&template, text.replace("sleeps on", "naps on")).unwrap();
    let killed = labctl(
        &m,
        &hosts,
        &path,
        &["apply", "--yes", "--target", "unit h1:*"],
    )
    .env("LABCTL_FAILPOINT", "apply.systemd.daemon-reload")
    .run();
    assert_eq!(killed.code, -1, "{}", killed.stderr);
    assert!(
        std::fs::read_to_string(host_file(&hosts, 1, "systemd/user/agent.service"))
            .unwrap()
            .contains("naps on h1")
    );
    assert_eq!(hosts.manager(1).main_pid("agent.service"), before);

    let plan = labctl(&m, &hosts, &path, &["plan", "--target", "unit h1:*"]).run();
    plan.code(0)
        .stdout_has("# unit h1:agent.service will be updated (restarts unit)")
        .stdout_has("an earlier apply stopped before it was restarted");
    labctl(&m, &hosts, &path, &["apply", "--yes"]).run().code(0);
    assert_ne!(hosts.manager(1).main_pid("agent.service"), before);
    labctl(&m, &hosts, &path, &["plan", "--detailed-exitcode"])
        .run()
        .code(0)
        .stdout_has("No changes.");
}
