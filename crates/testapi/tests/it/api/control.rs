//! The test server's own controls: hooks, counters, latency, auto-rollout, the request log,
//! injected errors, YAML seeding, and starting on the caller's runtime.

use super::*;

#[test]
fn hooks_counters_latency_and_auto_rollout() {
    let srv = TestApiServer::start_blocking(Options {
        auto_rollout: true,
        latency: Duration::from_millis(30),
        ..Options::default()
    })
    .unwrap();
    srv.reset_requests();
    let t = Instant::now();
    get(&srv, "/api/v1/namespaces");
    get(&srv, "/api/v1/namespaces");
    assert!(t.elapsed() >= Duration::from_millis(60));
    assert_eq!(srv.requests(), 2);
    assert_eq!(srv.requests_to("GET", "/api/v1/namespaces"), 2);
    srv.set_latency(Duration::ZERO);
    srv.reset_requests();
    assert_eq!(srv.requests(), 0);

    let d = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(3, "nginx:1"),
    )
    .json();
    assert_eq!(d["status"]["observedGeneration"], 1);
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(d["status"]["availableReplicas"], 3);
    let rev = |d: &Value| d["metadata"]["annotations"]["deployment.kubernetes.io/revision"].clone();
    assert_eq!(rev(&d), "1");
    assert_eq!(
        d["spec"]["template"]["metadata"]["creationTimestamp"],
        Value::Null
    );
    let d = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(3, "nginx:2"),
    )
    .json();
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["status"]["observedGeneration"], 2);
    assert_eq!(rev(&d), "2");
    let d = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(4, "nginx:2"),
    )
    .json();
    assert_eq!(d["status"]["observedGeneration"], 3);
    assert_eq!(d["status"]["readyReplicas"], 4);
    assert_eq!(rev(&d), "2");
    // The controller's annotation is not labctl's: re-applying keeps it, and owns nothing new.
    assert!(
        fields_of(&d, "labctl")["f:metadata"]
            .get("f:annotations")
            .is_none()
    );

    srv.set_auto_rollout(false);
    let d = apply(
        &srv,
        &format!("{DEPLOY}/web"),
        "labctl",
        &deployment(3, "nginx:3"),
    )
    .json();
    assert_eq!(d["status"]["observedGeneration"], 3);
    let d = srv
        .complete_rollout("apps/v1", "Deployment", "default", "web")
        .unwrap();
    assert_eq!(d["status"]["observedGeneration"], 4);
    assert_eq!(rev(&d), "3");

    // Objects stored directly, listed back.
    srv.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "raw", "namespace": "default"}}))
        .unwrap();
    assert_eq!(srv.list("v1", "ConfigMap", Some("default")).len(), 1);
    assert!(srv.objects().len() >= 6);
    srv.delete("v1", "ConfigMap", "default", "raw").unwrap();
    assert!(srv.get("v1", "ConfigMap", "default", "raw").is_none());
}

#[test]
fn async_start_serves_on_the_callers_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let srv = TestApiServer::start(Options::default()).await.unwrap();
        let addr = srv.addr();
        let body = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert!(body.contains("APIVersions"));
        let kc = std::fs::read_to_string(srv.kubeconfig_path()).unwrap();
        assert!(kc.contains(&format!("server: http://{addr}")));
    });
}

#[test]
fn request_log_and_injected_errors() {
    let srv = start();
    srv.reset_requests();
    srv.inject_error(
        "GET",
        "/api/v1/namespaces/default/configmaps",
        labctl_testapi::ApiError::internal("etcdserver: request timed out".into()),
        1,
    );
    let r = get(&srv, &format!("{CM}?labelSelector=a%3Db"));
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["message"], "etcdserver: request timed out");
    assert_eq!(get(&srv, CM).status, 200);
    assert_eq!(
        srv.request_log(),
        [format!("GET {CM}?labelSelector=a%3Db"), format!("GET {CM}"),]
    );
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TestApiServer>();
}

#[test]
fn yaml_seeding_and_control_endpoints() {
    let srv = start();
    let n = srv
        .apply_yaml(
            "labctl",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: seed}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: seed}\n---\n",
        )
        .unwrap();
    assert_eq!(n, 2);
    assert!(srv.get("v1", "ConfigMap", "seed", "a").is_some());
    srv.reset_requests();
    get(&srv, "/api");
    let c = get(&srv, "/testapi/requests").json();
    assert_eq!(c["total"], 1);
    assert_eq!(c["routes"]["GET /api"], 1);
    request(&srv, "POST", "/testapi/latency?ms=20", &[], None);
    let t = Instant::now();
    get(&srv, "/api");
    assert!(t.elapsed() >= Duration::from_millis(20));
    request(&srv, "POST", "/testapi/reset", &[], None);
    assert_eq!(srv.requests(), 0);
}
