//! Asking the server: `--server-dry-run`, its refusals, and lists merged by key as the server merges them.

use super::*;

#[test]
fn server_dry_run_costs_one_request_per_changed_object() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    srv.reset_requests();
    let (code, out, _) = plan(&s, &srv, &["--server-dry-run"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("No changes."), "{out}");
    let unchanged = srv.requests();
    assert_eq!(
        srv.requests_to("PATCH", "/api/v1/namespaces/lab/configmaps/web-config"),
        0
    );
    s.file(
        "stack.toml",
        &format!(
            "{BARE}\n{}",
            WEB.replace("greeting = \"hi\"", "greeting = \"yo\"")
        ),
    );
    srv.reset_requests();
    let (_, out, _) = plan(&s, &srv, &["--server-dry-run"]);
    assert!(out.contains("+   greeting: yo"), "{out}");
    assert_eq!(srv.requests(), unchanged + 1, "{:?}", srv.request_counts());
    assert_eq!(
        srv.requests_to("PATCH", "/api/v1/namespaces/lab/configmaps/web-config"),
        1
    );
    assert_eq!(
        srv.get("v1", "ConfigMap", "lab", "web-config").unwrap()["data"]["greeting"],
        "hi",
        "a dry run changes nothing"
    );
}

const STORE: &str = r#"[kube.extra.store]
values = { port = 9000 }
"#;

const STORE_TEMPLATE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: minio
spec:
  selector:
    app: minio
  ports:
    - name: api
      port: {{ c.values.port }}
      targetPort: api
    - name: console
      port: 9001
      targetPort: console
"#;

/// `kubectl -n lab patch svc minio --type=json -p '[{"op":"replace","path":"/spec/ports/0/port","value":9999}]'`:
/// an update by another field manager that renumbers the first port.
fn renumber_first_port(srv: &TestApiServer) {
    let mut svc = srv.get("v1", "Service", "lab", "minio").unwrap();
    svc["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    svc["spec"]["ports"][0]["port"] = json!(9999);
    srv.update_as("kubectl-patch", svc).unwrap();
}

#[test]
fn a_keyed_list_is_compared_by_key_and_a_refused_dry_run_is_a_failing_change() {
    let srv = server(true);
    let s = stack(STORE);
    s.file("templates/store/svc.yaml", STORE_TEMPLATE);
    converge(&s, &srv, &[]);
    renumber_first_port(&srv);

    // The local diff merges by (port, protocol) as the server does: port 9000 comes back as a
    // new item, and kubectl-patch's 9999 stays; nothing shows as renumbered.
    let (code, out, err) = plan(&s, &srv, &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains(
            "`spec.ports` is merged by key (port, protocol): adds port 9000 `api`; \
             port 9999 `api` owned by `kubectl-patch` stays"
        ),
        "{out}"
    );
    assert!(
        !out.contains("9999 →") && !out.contains("-       port: 9999"),
        "{out}"
    );
    assert!(
        out.contains("+   - name: api\n      +     port: 9000"),
        "{out}"
    );
    let (_, _, err) = plan(&s, &srv, &["-v"]);
    assert!(
        err.contains("kube: list merge types from the server's OpenAPI v3 (api/v1)"),
        "{err}"
    );
    // A server whose OpenAPI cannot be read: the recorded table says the same.
    srv.inject_error(
        "GET",
        "/openapi/v3",
        labctl_testapi::ApiError::internal("openapi unavailable".into()),
        1,
    );
    let (_, fallback, err) = plan(&s, &srv, &["-v"]);
    assert!(
        err.contains("kube: list merge types from the recorded table"),
        "{err}"
    );
    assert_eq!(fallback, out, "the compiled table merges the same way");

    // The server refuses the merge (two ports named `api`): with `--server-dry-run` that is a
    // failing change, with the server's own message, counted, and never a clean exit.
    let (code, out, err) = plan(&s, &srv, &["--server-dry-run"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(
            "# FAILS: the server refuses it (dry run): Service \"minio\" is invalid: \
             spec.ports[1].name: Duplicate value: \"api\" (422)"
        ),
        "{out}"
    );
    assert!(
        out.contains("Failing: 1 of these changes would fail"),
        "{out}"
    );
    let (code, _, _) = plan(&s, &srv, &["--server-dry-run", "--detailed-exitcode"]);
    assert_eq!(code, 3, "its own code with --detailed-exitcode");
    let (_, json, _) = plan(&s, &srv, &["--server-dry-run", "-o", "json"]);
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["changes_failing"], 1, "{json}");
    let svc = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "Service lab/minio")
        .unwrap();
    assert!(
        svc["failure"].as_str().unwrap().contains("Duplicate value"),
        "{svc}"
    );

    // Apply fails the same way and says what to do; nothing is written.
    let (code, _, err) = apply(&s, &srv, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`Service lab/minio`: "), "{err}");
    assert!(err.contains("Duplicate value: \"api\""), "{err}");
    assert!(err.contains("fix it in the stack"), "{err}");
    let live = srv.get("v1", "Service", "lab", "minio").unwrap();
    assert_eq!(live["spec"]["ports"][0]["port"], 9999);
    // With `--server-dry-run`, apply does not send what the server already refused.
    let (code, _, err) = apply(&s, &srv, &["--server-dry-run"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`Service lab/minio`: refused in the dry run: Service \"minio\" is invalid"),
        "{err}"
    );

    // Naming the first port after its new number converges.
    s.file(
        "stack.toml",
        &format!("{BARE}\n{}", STORE.replace("9000", "9999")),
    );
    converge(&s, &srv, &[]);
}

#[test]
fn the_server_dry_run_shows_what_the_server_would_store_and_its_refusals() {
    let srv = server(true);
    let s = web();
    converge(&s, &srv, &[]);
    s.file(
        "stack.toml",
        &format!(
            "{BARE}\n{}",
            WEB.replace("greeting = \"hi\"", "greeting = \"hey\"")
        ),
    );
    let (code, out, err) = plan(&s, &srv, &["--server-dry-run", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("+   greeting: hey"), "{out}");
    // An admission webhook refuses the ConfigMap: a failing change, dry run and all.
    srv.refuse(
        "ConfigMap",
        "web-config",
        labctl_testapi::ApiError::custom(
            403,
            "Forbidden",
            "admission webhook \"policy.example.com\" denied the request: greetings are frozen",
            None,
        ),
    );
    let (code, out, _) = plan(&s, &srv, &["--server-dry-run"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("greetings are frozen (403)") && out.contains("Failing: 1"),
        "{out}"
    );
    // Without asking the server, the plan cannot know: it shows the change as planned.
    let (code, out, _) = plan(&s, &srv, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FAILS"), "{out}");
    srv.clear_refusals();
    // A new object is checked too: a quota-style refusal of a create.
    let extra =
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  a: \"1\"\n";
    s.file("templates/web/extra.yaml", extra);
    srv.refuse(
        "ConfigMap",
        "extra",
        labctl_testapi::ApiError::custom(
            422,
            "Invalid",
            "ConfigMap \"extra\" is invalid: data: Too many: 1: must have at most 0 items",
            None,
        ),
    );
    let (code, out, _) = plan(&s, &srv, &["--server-dry-run"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("# ConfigMap lab/extra will be created"),
        "{out}"
    );
    assert!(out.contains("must have at most 0 items (422)"), "{out}");
    srv.clear_refusals();
    converge(&s, &srv, &[]);
}
