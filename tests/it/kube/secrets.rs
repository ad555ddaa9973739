//! Secret values: in no output, and a secret nothing provides refused by name.

use super::*;

const SECRET_VALUE: &str = "hunter2-very-secret";

const SECRET_TEMPLATE: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
stringData:
  password: {{ secret("postgres-password") }}
  user: app
"#;

fn assert_no_secret(what: &str, text: &str, values: &[&str]) {
    for v in values {
        assert!(
            !text.contains(v),
            "{what} shows a secret value `{v}`:\n{text}"
        );
    }
}

#[test]
fn secret_values_appear_in_no_output() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let srv = server(true);
    let s = stack("[kube.extra.creds]\n");
    s.file("templates/creds/secret.yaml", SECRET_TEMPLATE);
    let first = SECRET_VALUE;
    let second = "correct-horse-battery";
    let values = [first, second, &b64(first), &b64(second)];
    let with = |c: Labctl, v: &str| c.env("LABCTL_SECRET_POSTGRES_PASSWORD", v);
    let mut outputs = Vec::new();
    for args in [
        &["plan"][..],
        &["plan", "-o", "json"],
        &["apply", "--yes", "-v"],
    ] {
        let (code, out, err) = with(labctl(&s, srv.kubeconfig_path(), args), first)
            .run()
            .parts();
        assert_eq!(code, 0, "{out}{err}");
        outputs.push((format!("{args:?}"), out, err));
    }
    let stored = srv.get("v1", "Secret", "lab", "db-credentials").unwrap();
    assert_eq!(stored["data"]["password"], b64(first));
    // Unchanged: no changes, and a changed value shows only as changed.
    let (code, out, err) = with(
        labctl(&s, srv.kubeconfig_path(), &["plan", "--detailed-exitcode"]),
        first,
    )
    .run()
    .parts();
    assert_eq!(code, 0, "{out}{err}");
    for args in [
        &["plan"][..],
        &["plan", "-o", "json"],
        &["plan", "--server-dry-run"],
        &["apply", "--yes"],
    ] {
        let (code, out, err) = with(labctl(&s, srv.kubeconfig_path(), args), second)
            .run()
            .parts();
        assert_eq!(code, 0, "{out}{err}");
        if args == ["plan"] {
            assert!(out.contains("password: (sensitive value changed)"), "{out}");
            assert!(out.contains("user: (sensitive value)"), "{out}");
        }
        outputs.push((format!("{args:?}"), out, err));
    }
    for (what, out, err) in &outputs {
        assert_no_secret(&format!("stdout of {what}"), out, &values);
        assert_no_secret(&format!("stderr of {what}"), err, &values);
    }
    let plan = labctl(&s, srv.kubeconfig_path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(with(plan, second).run().code, 0);
}

#[test]
fn an_unset_secret_is_refused_by_name() {
    let srv = server(true);
    let s = stack("[kube.extra.creds]\n");
    s.file("templates/creds/secret.yaml", SECRET_TEMPLATE);
    // No placeholder is ever planned: the plan fails before any output, naming the secret.
    let (code, out, err) = plan(&s, &srv, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("`postgres-password`: nothing provides it")
            && err.contains("LABCTL_SECRET_POSTGRES_PASSWORD"),
        "{err}"
    );
    let (code, _, err) = apply(&s, &srv, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`postgres-password`"), "{err}");
    assert!(srv.get("v1", "Secret", "lab", "db-credentials").is_none());
}
