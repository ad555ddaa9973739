//! One plan and one apply over several hosts and the cluster; drift on one host; saved plans.

use labctl_testapi::{Options, TestApiServer};

use super::{WEB, host_file, labctl, stack};
use crate::support::hosts::Hosts;
use crate::support::systemd::UserManager;

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

    // The pull-request comment likewise: a line per place, then each host's changes under it.
    let md = run(&["plan", "-o", "markdown"]);
    md.code(0)
        .stdout_has("**Plan:** 8 to add, 0 to change, 0 to destroy.")
        .stdout_has("- `cluster`: 2 to add, 0 to change, 0 to destroy\n")
        .stdout_has("- `h2`: 3 to add, 0 to change, 0 to destroy\n");
    let at = |s: &str| {
        md.stdout
            .find(s)
            .unwrap_or_else(|| panic!("{s:?} not in:\n{}", md.stdout))
    };
    assert!(at("#### cluster") < at("#### host `local`"));
    assert!(at("#### host `h1`") < at("<code>+ unit h1:agent.service</code>"));
    assert!(at("<code>+ unit h1:agent.service</code>") < at("#### host `h2`"));

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
