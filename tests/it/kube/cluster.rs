//! Reaching the cluster: the kubeconfig, an account limited to a namespace, a cluster that never
//! answers, and the huge pages a plan against the cluster gets.

use super::*;

#[test]
fn kubeconfig_comes_from_the_environment_and_a_bad_context_is_named() {
    let srv = server(true);
    let s = web();
    let (code, out, err) = s
        .labctl(&["plan", "--plane", "kube"])
        .env("KUBECONFIG", srv.kubeconfig_path())
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Plan: 4 to add"), "{out}");
    let (code, _, err) = plan(&s, &srv, &["--context", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("kube: load kubeconfig"), "{err}");
    assert!(err.contains("nope"), "{err}");
}

/// Observing the cluster starts while the stack renders; a template error is still the plan's
/// error, at once, even against a cluster that never answers (the observation is dropped).
#[test]
fn a_template_error_does_not_wait_for_the_cluster() {
    // Bound but never accepting: connections complete in the backlog and no answer comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = web();
    s.file(
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n\
             users:\n- name: u\n  user:\n    token: t\n",
            silent.local_addr().unwrap()
        ),
    );
    s.file("templates/web/bad.yaml", "kind: [oops\n");
    let (code, _, err) = s
        .labctl(&["plan", "--plane", "kube", "--kubeconfig"])
        .arg(s.stack_file().with_file_name("kubeconfig"))
        // kube-rs waits 295 s for an answer: a plan that waited for the cluster would be stopped
        // here and fail.
        .timeout(Duration::from_secs(60))
        .run()
        .parts();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("error: template `templates/web/bad.yaml`, document 1: not valid YAML"),
        "{err}"
    );
}

#[test]
fn an_account_limited_to_one_namespace_lists_there_instead() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    let token = srv.namespaced_token("system:serviceaccount:lab:deployer", &["lab"]);
    let kubeconfig = srv.kubeconfig_for_token(&token, "lab").unwrap();

    let (code, out, err) = labctl(&s, &kubeconfig, &["plan", "-v", "--detailed-exitcode"])
        .run()
        .parts();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("No changes."), "{out}");
    assert!(
        err.contains("kube: listing `configmaps` across namespaces is forbidden for this account"),
        "{err}"
    );
    assert!(err.contains("listing in `lab` instead"), "{err}");
    assert!(
        err.contains("system:serviceaccount:lab:deployer"),
        "the server's own 403 is quoted: {err}"
    );
    // The Namespace itself cannot be read by this account: said, and left alone.
    assert!(
        err.contains("kube: `Namespace lab` left out of the plan: "),
        "{err}"
    );
    srv.reset_requests();
    labctl(&s, &kubeconfig, &["plan"]).run();
    assert_eq!(
        srv.requests_to("GET", "/api/v1/namespaces/lab/configmaps"),
        1
    );

    // A change applies through the same account, and re-plans clean.
    s.file(
        "stack.toml",
        &format!(
            "{BARE}\n{}",
            WEB.replace("greeting = \"hi\"", "greeting = \"hello\"")
        ),
    );
    let (code, out, err) = labctl(&s, &kubeconfig, &["apply", "--yes"]).run().parts();
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = labctl(&s, &kubeconfig, &["plan", "--detailed-exitcode"])
        .run()
        .parts();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        srv.get("v1", "ConfigMap", "lab", "web-config").unwrap()["data"]["greeting"],
        "hello"
    );
    assert_no_changes(&s, &srv);
}

/// labctl holds transparent huge pages back from start-up on, and gives them back only to a
/// command that reads live state (see `hold_huge_pages`): a plan against the cluster has them
/// while it waits for the server, an offline plan does not. The last reading taken while the
/// process lived counts: the first ones may come before labctl's start-up hook has run.
#[test]
fn huge_pages_go_to_a_plan_that_reads_the_cluster() {
    assert_huge_pages_allowed_here();
    let s = web();
    let srv = server(false);
    // Slow enough answers that the plan is still running when its status is read.
    srv.set_latency(Duration::from_millis(300));
    let last_seen = |args: &[&str]| {
        let mut child = s
            .labctl(&["--kubeconfig"])
            .arg(srv.kubeconfig_path())
            .args(args)
            .spawn();
        let mut last = None;
        while child.try_wait().expect("wait").is_none() {
            last = huge_pages_enabled(child.id()).or(last);
            std::thread::sleep(Duration::from_millis(5));
        }
        last
    };
    assert_eq!(
        last_seen(&["plan", "--plane", "kube"]),
        Some(true),
        "live plan"
    );
    assert_eq!(
        last_seen(&["plan", "--offline"]),
        Some(false),
        "offline plan"
    );
}
