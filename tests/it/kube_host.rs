//! One plan, both planes: a stack with a cluster component and a host unit, planned and applied
//! together against the test API server and a real systemd user manager.

use labctl_testapi::{Options, TestApiServer};

use crate::support::Stack;
use crate::support::systemd::UserManager;

const SLEEPER: &str = "[Unit]
Description=both planes

[Service]
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

#[test]
fn one_plan_and_one_apply_cover_the_cluster_and_the_host() {
    let m = UserManager::start();
    let srv = TestApiServer::start_blocking(Options {
        auto_rollout: true,
        ..Options::default()
    })
    .expect("test API server");
    let dir = m.scratch();
    let path = Stack::units(&dir, "both")
        .template("sleeper.service", SLEEPER)
        .unit("both-web", "template = \"sleeper\"\nunit = \"both-web\"")
        .write();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[kube.extra.web]\nvalues = { greeting = \"hi\" }\n");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir_all(dir.join("templates/web")).unwrap();
    std::fs::write(dir.join("templates/web/web.yaml"), WEB).unwrap();
    let kc = srv.kubeconfig_path().to_str().unwrap().to_string();
    let with = |args: &[&str]| {
        let mut a = vec!["--kubeconfig", kc.as_str()];
        a.extend_from_slice(args);
        m.labctl(&path, &a)
    };

    let plan = with(&["plan", "--detailed-exitcode"]);
    plan.code(2)
        .stdout_has("Plan: 3 to add, 0 to change, 0 to destroy.");
    let kube_at = plan
        .stdout
        .find("# ConfigMap both/web-config will be created");
    let unit_at = plan.stdout.find("# unit both-web.service will be created");
    assert!(
        kube_at.is_some() && unit_at.is_some() && kube_at < unit_at,
        "kube changes come first, then host units:\n{}",
        plan.stdout
    );
    // `--plane` still restricts.
    let kube_only = with(&["plan", "--plane", "kube"]);
    assert!(!kube_only.stdout.contains("unit both-web.service"));
    kube_only.stdout_has("Plan: 2 to add");

    with(&["apply", "--yes"])
        .code(0)
        .stderr_has("Apply complete: 3 added, 0 changed, 0 destroyed.");
    assert!(srv.get("v1", "ConfigMap", "both", "web-config").is_some());
    assert_eq!(m.active_state("both-web.service"), "active");
    with(&["plan", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");
}
