//! What the user reads, as insta snapshots (tests/it/snapshots): one plan in each output format, and
//! the error reports for the first mistakes a user makes. A change to any of them shows as a diff
//! to review (`cargo insta review`), not as a string a test happens not to look for.
//!
//! Snapshots hold no temp paths: a stack folder shows as `[stack]`.

use labctl_testapi::{Options, TestApiServer};
use serde_json::json;

use crate::support::{BARE, Output, Stack, WEB_TEMPLATE, git};

/// `text` with the stack folder's path as `[stack]`.
fn shown(s: &Stack, text: &str) -> String {
    text.replace(s.path().to_str().unwrap(), "[stack]")
}

/// The stack's stderr, after the exit code said it failed.
#[track_caller]
fn report(s: &Stack, out: &Output, code: i32) -> String {
    out.code(code);
    shown(s, &out.stderr)
}

/// The `web` component (a ConfigMap and a Deployment), a `hello` unit, and one more kube component
/// named `other` (a ConfigMap of its own).
fn mixed_stack(image: &str, replicas: u32, message: &str, other: &str) -> String {
    format!(
        "{BARE}\n[kube.extra.web]\nvalues = {{ image = \"{image}\", replicas = {replicas}, greeting = \"hi\" }}\n\n[kube.extra.{other}]\n\n[host.extra.hello]\nvalues = {{ message = \"{message}\" }}\n"
    )
}

/// A stack committed with `web` on nginx:1.26, the `hello` unit and an `old` component, and
/// changed since: nginx:1.27 on two replicas, the unit's message, `old` gone and `cache` new. A
/// plan against `HEAD` creates, updates (kube and unit) and destroys, with no cluster and no host.
fn changed_since_head() -> Stack {
    let s = Stack::new(&mixed_stack("nginx:1.26", 1, "hello", "old"));
    s.file("templates/web/web.yaml", WEB_TEMPLATE);
    s.file(
        "templates/old/old.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old-config\ndata:\n  a: \"1\"\n",
    );
    s.file(
        "templates/cache/cache.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cache-config\ndata:\n  size: 64Mi\n",
    );
    s.file(
        "systemd-templates/hello.service",
        "[Unit]\nDescription=says {{ c.values.message }}\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=default.target\n",
    );
    git(s.path(), &["init", "-q", "-b", "main"]);
    git(s.path(), &["add", "."]);
    git(s.path(), &["commit", "-qm", "one"]);
    s.file(
        "stack.toml",
        &mixed_stack("nginx:1.27", 2, "hello again", "cache"),
    );
    s
}

/// `plan --base HEAD` of [`changed_since_head`] in `format`: exit code 2 (changes), its stdout.
fn plan_against_head(format: &str) -> String {
    let s = changed_since_head();
    let out = s
        .labctl(&[
            "plan",
            "--base",
            "HEAD",
            "--detailed-exitcode",
            "-o",
            format,
        ])
        .run();
    out.code(2);
    assert_eq!(
        out.stderr, "",
        "a plan against a revision says nothing on stderr"
    );
    shown(&s, &out.stdout)
}

#[test]
fn plan_human() {
    insta::assert_snapshot!("plan_base_human", plan_against_head("human"));
}

#[test]
fn plan_markdown() {
    insta::assert_snapshot!("plan_base_markdown", plan_against_head("markdown"));
}

#[test]
fn plan_json() {
    insta::assert_snapshot!("plan_base_json", plan_against_head("json"));
}

#[test]
fn an_invalid_stack_toml_with_several_problems() {
    let s = Stack::new(
        "[stack]\nname = \"Home_Lab\"\n\n[kube.grafana]\nnodeport = 30001\nnode_port = 70000\n\n[host.proxy]\nport = \"eighty\"\n\n[host.reading-sync]\nschedule = \"*-*-* 25:00\"\n\n[kube.grafna]\n",
    );
    let out = s.labctl(&["validate"]).run();
    insta::assert_snapshot!("error_invalid_stack", report(&s, &out, 1));
}

#[test]
fn a_template_error() {
    let s = Stack::new(&format!(
        "{BARE}\n[kube.extra.web]\nvalues = {{ image = \"nginx:1.27\", replicas = 1 }}\n"
    ));
    s.file("templates/web/web.yaml", WEB_TEMPLATE);
    let out = s.labctl(&["plan", "--offline"]).run();
    insta::assert_snapshot!("error_template", report(&s, &out, 1));
}

#[test]
fn secrets_nothing_provides() {
    let s = Stack::new(&format!(
        "{BARE}\n[secrets]\ndb-password = {{ env = \"REPORTS_DB_PASSWORD\" }}\n\n[kube.extra.creds]\n"
    ));
    s.file(
        "templates/creds/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: {{ secret(\"db-password\") }}\n  token: {{ secret(\"api-token\") }}\n",
    );
    let out = s
        .labctl(&["render"])
        .env_remove("REPORTS_DB_PASSWORD")
        .run();
    insta::assert_snapshot!("error_missing_secrets", report(&s, &out, 1));
}

#[test]
fn an_apply_refused_for_objects_it_does_not_own() {
    let srv = TestApiServer::start_blocking(Options {
        auto_rollout: true,
        ..Options::default()
    })
    .expect("test API server");
    for object in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "web-config", "namespace": "lab"}, "data": {"greeting": "hi"}}),
    ] {
        srv.apply_as("kubectl", object).unwrap();
    }
    let s = Stack::new(&format!(
        "{BARE}\n[kube.extra.web]\nvalues = {{ image = \"nginx:1.27\", replicas = 1, greeting = \"hi\" }}\n"
    ));
    s.file("templates/web/web.yaml", WEB_TEMPLATE);
    let out = s
        .labctl(&["apply", "--yes", "--plane", "kube", "--kubeconfig"])
        .arg(srv.kubeconfig_path())
        .run();
    insta::assert_snapshot!("error_refused_apply", report(&s, &out, 1));
    assert!(
        srv.get("apps/v1", "Deployment", "lab", "web").is_none(),
        "nothing applied"
    );
}
