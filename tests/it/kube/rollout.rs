//! Waiting for workloads: a rollout the test completes, and one that times out.

use super::*;

#[test]
fn apply_waits_for_a_rollout_the_test_completes() {
    let srv = server(false);
    let s = web();
    let child = labctl(&s, srv.kubeconfig_path(), &["apply", "--yes"]).spawn();
    wait_for("the Deployment", Duration::from_secs(20), || {
        srv.get("apps/v1", "Deployment", "lab", "web").is_some()
    });
    // Still waiting: the controller has not reported yet.
    std::thread::sleep(Duration::from_millis(600));
    srv.set_status(
        "apps/v1",
        "Deployment",
        "lab",
        "web",
        json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1,
               "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                               "message": "Deployment does not have minimum availability."}]}),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    srv.complete_rollout("apps/v1", "Deployment", "lab", "web")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("waiting on 1 workload rollout(s)"), "{err}");
    assert!(
        err.contains("Deployment lab/web: rolled out [1/1]"),
        "{err}"
    );
    assert_no_changes(&s, &srv);
}

#[test]
fn a_rollout_that_times_out_names_the_workload_and_its_condition() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    srv.set_auto_rollout(false);
    s.file(
        "stack.toml",
        &format!("{BARE}\n{}", WEB.replace("nginx:1", "nginx:2")),
    );
    let (_, out, _) = plan(&s, &srv, &[]);
    assert!(
        out.contains("# Deployment lab/web will be updated (rolls pods)"),
        "{out}"
    );
    let srv_ref = &srv;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            wait_for("generation 2", Duration::from_secs(20), || {
                srv_ref
                    .get("apps/v1", "Deployment", "lab", "web")
                    .is_some_and(|d| d["metadata"]["generation"] == 2)
            });
            srv_ref
                .set_status(
                    "apps/v1",
                    "Deployment",
                    "lab",
                    "web",
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
                           "availableReplicas": 2,
                           "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "ok"},
                                          {"type": "Progressing", "status": "Unknown", "reason": "ReplicaSetUpdated",
                                           "message": "ReplicaSet \"web-2\" is progressing."}]}),
                )
                .unwrap();
        });
        let started = Instant::now();
        let (code, _, err) = apply(&s, &srv, &["--wait-timeout", "2s"]);
        assert_eq!(code, 1, "{err}");
        assert!(started.elapsed() < Duration::from_secs(15));
        assert!(err.contains("kube: wait Deployment lab/web"), "{err}");
        assert!(err.contains("not rolled out after 2s"), "{err}");
        assert!(
            err.contains("Progressing=Unknown (ReplicaSetUpdated)"),
            "{err}"
        );
    });
    // The change itself was applied: only the rollout is pending.
    assert_no_changes(&s, &srv);
    // `--no-wait` does not wait at all.
    s.file(
        "stack.toml",
        &format!("{BARE}\n{}", WEB.replace("nginx:1", "nginx:3")),
    );
    converge(&s, &srv, &["--no-wait", "--wait-timeout", "1ms"]);
}
