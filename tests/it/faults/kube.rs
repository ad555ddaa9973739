//! The kube plane under faults: `labctl apply` killed (SIGKILL) after the 1st, 2nd, 5th, 13th and
//! 30th object of the bundled stack's apply, on a fresh cluster and on one being changed; and the
//! API server failing mid-apply (500, 429 with `Retry-After`, connections closed, a stall). Each
//! ends with a run that converges: a plan that says `No changes.`.

use std::time::{Duration, Instant};

use labctl_testapi::{ApiError, Options, TestApiServer};

use super::killed;
use crate::support::{Labctl, Output, Stack};

fn server() -> TestApiServer {
    TestApiServer::start_blocking(Options {
        auto_rollout: true,
        ..Options::default()
    })
    .expect("test API server")
}

fn secrets() -> Vec<(String, &'static str)> {
    [
        "GRAFANA_ADMIN_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "POSTGRES_PASSWORD",
        "WEBHOOK_SECRET",
    ]
    .into_iter()
    .map(|n| (format!("LABCTL_SECRET_{n}"), "s3cret-value"))
    .collect()
}

fn labctl(s: &Stack, srv: &TestApiServer, args: &[&str]) -> Labctl {
    s.labctl(&["--kubeconfig"])
        .arg(srv.kubeconfig_path())
        .args(args)
        .envs(secrets())
}

fn apply(s: &Stack, srv: &TestApiServer, failpoint: Option<&str>) -> Output {
    let mut c = labctl(s, srv, &["apply", "--plane", "kube", "--yes"]);
    if let Some(f) = failpoint {
        c = c.env("LABCTL_FAILPOINT", f);
    }
    c.run()
}

#[track_caller]
fn converged(s: &Stack, srv: &TestApiServer) {
    labctl(s, srv, &["plan", "--plane", "kube", "--detailed-exitcode"])
        .run()
        .code(0)
        .stdout_has("No changes.");
}

/// The bundled stack with Loki's and Prometheus's retention and Grafana's port changed: a change
/// to several objects.
fn changed(s: &Stack) {
    let text = std::fs::read_to_string(s.stack_file()).unwrap();
    std::fs::write(
        s.stack_file(),
        text.replace("retention = \"744h\"", "retention = \"720h\"")
            .replace("retention = \"15d\"", "retention = \"14d\"")
            .replace("node_port = 30000", "node_port = 30001"),
    )
    .unwrap();
}

#[test]
fn apply_killed_between_kube_objects_converges_on_the_next_run() {
    let mut report = Vec::new();
    for n in [1, 2, 5, 13, 30] {
        // A fresh cluster: killed while creating.
        let srv = server();
        let s = Stack::bundled();
        let spec = format!("apply.kube.object#{n}");
        let out = apply(&s, &srv, Some(&spec));
        assert!(
            killed(&out, "apply.kube.object"),
            "{spec} was never reached"
        );
        apply(&s, &srv, None).code(0);
        converged(&s, &srv);
        report.push(format!("create {spec}"));

        // The same cluster, killed while changing it.
        changed(&s);
        let plan = labctl(
            &s,
            &srv,
            &["plan", "--plane", "kube", "--detailed-exitcode"],
        )
        .run();
        if plan.code != 2 {
            // Labels the schema does not take: the change is the retention alone.
            plan.code(2);
        }
        let out = apply(&s, &srv, Some(&format!("apply.kube.object#{}", n.min(2))));
        assert!(killed(&out, "apply.kube.object"));
        apply(&s, &srv, None).code(0);
        converged(&s, &srv);
        report.push(format!("change {spec}"));
    }
    eprintln!(
        "killed at {} points, each converged: {report:?}",
        report.len()
    );
}

/// Each fault, injected once the apply is under way: the apply either rides it out (a retry) or
/// fails naming the object and the cause; the next run converges.
#[test]
fn api_server_faults_mid_apply_end_in_a_converged_rerun() {
    let mut report = Vec::new();
    for fault in ["500", "429", "close", "stall"] {
        let srv = server();
        let s = Stack::bundled();
        // Let the observation and the first objects through, then fail the next writes.
        let started = Instant::now();
        let prefix = "/api/v1/namespaces/homelab/configmaps";
        match fault {
            "500" => srv.inject_error(
                "PATCH",
                prefix,
                ApiError::internal("etcdserver: request timed out".into()),
                2,
            ),
            "429" => srv.inject_error("PATCH", prefix, ApiError::too_many_requests(1), 2),
            "close" => srv.inject_close("PATCH", prefix, 2),
            _ => srv.inject_stall("PATCH", prefix, Duration::from_secs(600), 1),
        }
        let out = labctl(&s, &srv, &["apply", "--plane", "kube", "--yes"])
            .timeout(Duration::from_secs(240))
            .run();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(120),
            "{fault}: the apply took {took:?}: a stalled server must not hold it"
        );
        let first = if out.code == 0 {
            "rode it out".to_string()
        } else {
            out.code(1);
            assert!(
                out.stderr.contains("ConfigMap homelab/"),
                "the failure names the object:\n{}",
                out.stderr
            );
            "failed naming the object".to_string()
        };
        apply(&s, &srv, None).code(0);
        converged(&s, &srv);
        report.push(format!(
            "{fault}: {first} in {took:.1?}, converged on re-run"
        ));
    }
    eprintln!("{}", report.join("\n"));
}
