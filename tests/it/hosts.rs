//! Several hosts, one plan: the host plane over ssh, against real systemd user managers behind
//! real sshds on loopback ([`Hosts`]), with this machine's own manager and the test API server
//! beside them. Every apply is planned again and must come back `No changes.`

use std::path::{Path, PathBuf};
use std::time::Duration;

use labctl_testapi::{Options, TestApiServer};

use crate::support::hosts::{Flaw, Hosts};
use crate::support::systemd::UserManager;
use crate::support::{Labctl, Stack, wait_for};

/// A service that runs until stopped, saying which host it was rendered for.
const SLEEPER: &str = "[Unit]
Description=sleeps on {{ host }}

[Service]
ExecStart=/bin/sh -c 'while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

/// A service reading a secret from its env file.
const SECRETIVE: &str = "{{ env_secret(\"vault\", \"TOKEN\", \"vault-token\") }}[Unit]
Description=holds a token

[Service]
EnvironmentFile=-%E/labctl/vault.env
ExecStart=/bin/sh -c 'while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

/// A service whose start takes a while: a window in which to take its host away.
const SLOW: &str = "[Unit]
Description=starts slowly

[Service]
ExecStartPre=/bin/sleep {{ c.values.pause }}
ExecStart=/bin/sh -c 'while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

const WEB: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: {{ c.values.greeting }}
";

/// A stack `name` in `m`'s scratch folder: `local` runs `hello`, every host in `agents` runs
/// `agent`, plus `extra` TOML, and the `[hosts.*]` of `hosts`.
fn stack(m: &UserManager, hosts: &Hosts, name: &str, agents: &[&str], extra: &str) -> PathBuf {
    let dir = m.scratch();
    let on = agents
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let path = Stack::units(&dir, name)
        .template("sleeper.service", SLEEPER)
        .template("secretive.service", SECRETIVE)
        .template("slow.service", SLOW)
        .unit("hello", "template = \"sleeper\"")
        .unit("agent", &format!("template = \"sleeper\"\nhosts = [{on}]"))
        .write();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(extra);
    text.push('\n');
    text.push_str(&hosts.toml());
    std::fs::write(&path, text).unwrap();
    path
}

/// labctl against `m` (this machine) and `hosts`, with `args`.
fn labctl(m: &UserManager, hosts: &Hosts, stack: &Path, args: &[&str]) -> Labctl {
    m.command(stack, args)
        .env("LABCTL_SSH_COMMAND", hosts.ssh_command())
        .timeout(Duration::from_secs(180))
}

/// A file on host `h<n>` (its manager's config folder), as that host has it.
fn host_file(hosts: &Hosts, n: usize, rel: &str) -> PathBuf {
    let config = hosts
        .manager(n)
        .env()
        .into_iter()
        .find(|(k, _)| *k == "XDG_CONFIG_HOME")
        .unwrap()
        .1;
    PathBuf::from(config).join(rel)
}

#[test]
fn one_plan_and_one_apply_span_three_hosts_and_the_cluster() {
    let m = UserManager::start();
    let hosts = Hosts::start(3);
    let srv = TestApiServer::start_blocking(Options {
        auto_rollout: true,
        ..Options::default()
    })
    .expect("test API server");
    let extra = "[host.extra.vault]\ntemplate = \"secretive\"\nhosts = [\"h2\"]\n\n\
                 [kube.extra.web]\nvalues = { greeting = \"hi\" }\n\n\
                 [secrets]\nvault-token = { env = \"TEST_VAULT_TOKEN\" }\n";
    let path = stack(&m, &hosts, "multi", &["h1", "h2", "h3"], extra);
    std::fs::create_dir_all(m.scratch().join("templates/web")).unwrap();
    std::fs::write(m.scratch().join("templates/web/web.yaml"), WEB).unwrap();
    let kc = srv.kubeconfig_path().to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let mut a = vec!["--kubeconfig", kc.as_str()];
        a.extend_from_slice(args);
        labctl(&m, &hosts, &path, &a)
            .env("TEST_VAULT_TOKEN", "s3cr3t-of-h2")
            .run()
    };

    let plan = run(&["plan", "--detailed-exitcode"]);
    plan.code(2)
        .stdout_has("Plan: 8 to add, 0 to change, 0 to destroy.")
        .stdout_has("  cluster: 2 to add, 0 to change, 0 to destroy.")
        .stdout_has("  local: 1 to add, 0 to change, 0 to destroy.")
        .stdout_has("  h1: 1 to add, 0 to change, 0 to destroy.")
        .stdout_has("  h2: 3 to add, 0 to change, 0 to destroy.")
        .stdout_has("  h3: 1 to add, 0 to change, 0 to destroy.")
        .stdout_has("# unit h2:vault.service will be created")
        .stdout_has("+ env file h2:%E/labctl/vault.env (read by vault.service)");
    // Grouped: the cluster's changes, then this machine's, then each host's, in name order.
    let at = |s: &str| {
        plan.stdout
            .find(s)
            .unwrap_or_else(|| panic!("{s:?} not in:\n{}", plan.stdout))
    };
    assert!(at("# ConfigMap multi/web-config") < at("host local:"));
    assert!(at("host local:") < at("# unit hello.service"));
    assert!(at("# unit hello.service") < at("host h1:"));
    assert!(at("host h1:") < at("# unit h1:agent.service"));
    assert!(at("# unit h1:agent.service") < at("host h2:"));
    assert!(at("host h2:") < at("# unit h2:agent.service"));
    assert!(at("# unit h2:vault.service") < at("host h3:"));
    // Each host's units render for that host.
    assert!(plan.stdout.contains("+ Description=sleeps on h3"));
    assert!(!plan.stdout.contains("s3cr3t-of-h2"), "{}", plan.stdout);

    // The JSON plan: ids carry their host, and each host its counts.
    let json = run(&["plan", "-o", "json"]);
    json.code(0);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let hosts_json = doc["hosts"].as_array().expect("hosts[]");
    let names: Vec<&str> = hosts_json
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local", "h1", "h2", "h3"]);
    assert_eq!(hosts_json[2]["summary"]["add"], 3);
    assert!(doc["changes"].as_array().unwrap().iter().any(|c| c["id"]
        == serde_json::json!({"plane": "systemd", "host": "h1", "unit": "agent.service"})
        && c["address"] == "unit h1:agent.service"));
    assert!(
        doc["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == serde_json::json!({"plane": "systemd", "unit": "hello.service"})),
        "a local id is as it always was"
    );

    // `--target` globs on the printed ids: one host alone.
    let one = run(&["plan", "--target", "unit h2:*"]);
    one.code(0)
        .stdout_has("# unit h2:vault.service will be created")
        .stdout_has("# unit h2:agent.service will be created");
    assert!(!one.stdout.contains("unit h1:"), "{}", one.stdout);
    assert!(!one.stdout.contains("hello.service"), "{}", one.stdout);

    run(&["apply", "--yes"])
        .code(0)
        .stderr_has("Apply complete: 8 added, 0 changed, 0 destroyed.");
    assert_eq!(m.active_state("hello.service"), "active");
    for n in 1..=3 {
        let h = hosts.manager(n);
        assert_eq!(h.active_state("agent.service"), "active", "h{n}");
        assert_eq!(h.unit_file_state("agent.service"), "enabled", "h{n}");
        let text =
            std::fs::read_to_string(host_file(&hosts, n, "systemd/user/agent.service")).unwrap();
        assert!(text.contains(&format!("sleeps on h{n}")), "{text}");
    }
    assert_eq!(hosts.manager(2).active_state("vault.service"), "active");
    assert_ne!(hosts.manager(1).active_state("vault.service"), "active");
    // The env file of secrets is on its host alone, owner-only.
    let env = host_file(&hosts, 2, "labctl/vault.env");
    let text = std::fs::read_to_string(&env).unwrap();
    assert!(text.contains("TOKEN='s3cr3t-of-h2'"), "{text}");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(std::fs::metadata(&env).unwrap().mode() & 0o777, 0o600);
    assert!(!host_file(&hosts, 1, "labctl/vault.env").exists());
    assert!(srv.get("v1", "ConfigMap", "multi", "web-config").is_some());

    run(&["plan", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");
}

#[test]
fn drift_on_one_host_shows_only_there_and_a_saved_plan_holds_each_host_to_what_it_read() {
    let m = UserManager::start();
    let hosts = Hosts::start(3);
    let path = stack(&m, &hosts, "drift", &["h1", "h2", "h3"], "");
    let run = |args: &[&str]| labctl(&m, &hosts, &path, args).run();
    run(&["apply", "--yes"]).code(0);
    run(&["plan", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");

    // Hand edits on h2 alone: its unit file, and a drop-in systemd has not read.
    let file = host_file(&hosts, 2, "systemd/user/agent.service");
    let rendered = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        rendered.replace("[Service]\n", "[Service]\nEnvironment=HAND=edited\n"),
    )
    .unwrap();
    let plan = run(&["plan", "--detailed-exitcode"]);
    plan.code(2)
        .stdout_has("# unit h2:agent.service will be updated (restarts unit)")
        .stdout_has("- Environment=HAND=edited")
        .stdout_has("Plan: 0 to add, 1 to change, 0 to destroy.")
        .stdout_has("  local: no changes.")
        .stdout_has("  h1: no changes.")
        .stdout_has("  h2: 0 to add, 1 to change, 0 to destroy.")
        .stdout_has("  h3: no changes.");
    assert!(!plan.stdout.contains("unit h1:"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("unit h3:"), "{}", plan.stdout);

    // A saved plan records what it read on each host, and is refused once h2 moved on.
    let saved = m.scratch().join("drift.plan");
    let saved_arg = saved.to_str().unwrap();
    run(&["plan", "--out", saved_arg]).code(0);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let pre: Vec<&str> = doc["preconditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["address"].as_str().unwrap())
        .collect();
    for a in [
        "unit agent.service",
        "unit h1:agent.service",
        "unit h2:agent.service",
        "unit h3:agent.service",
    ] {
        assert_eq!(
            pre.contains(&a),
            a != "unit agent.service",
            "{a} in {pre:?}"
        );
    }
    std::fs::write(
        &file,
        rendered.replace("[Service]\n", "[Service]\nEnvironment=HAND=again\n"),
    )
    .unwrap();
    run(&["apply", saved_arg])
        .code(1)
        .stderr_has("unit h2:agent.service: file changed (sha256");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("HAND=again")
    );

    // A plan made now applies, on h2 alone.
    let applied = run(&["apply", "--yes"]);
    applied
        .code(0)
        .stderr_has("Apply complete: 0 added, 1 changed, 0 destroyed.")
        .stderr_has("h2: restart agent.service: done");
    assert!(!applied.stderr.contains("h1: "), "{}", applied.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), rendered);
    run(&["plan", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");
}

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
    assert!(first.wait().unwrap().success());
    // Released with the run that held it: the other machine applies now.
    labctl(&b, &hosts, &path_b, &["apply", "--yes"])
        .run()
        .code(0);
    labctl(&b, &hosts, &path_b, &["plan", "--detailed-exitcode"])
        .run()
        .code(0)
        .stdout_has("No changes.");
}
