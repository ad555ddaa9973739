//! `plan --offline`, `plan --base`, `render`: no cluster, no host. These use a stack's own
//! components so that they test the engine, not the shipped templates (bundled.rs does that).

use crate::support::{
    BARE, HELLO_UNIT, Labctl, Stack, WEB_TEMPLATE, git, web_stack, with_web_templates,
};

#[test]
fn offline_plan_creates_everything() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    let (code, out, err) = s.labctl(&["plan", "--offline"]).run().parts();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Resource actions are indicated with the following symbols:\n  + create\n"),
        "{out}"
    );
    assert!(
        out.contains("  # Deployment lab/web will be created\n  + Deployment lab/web (apps/v1)\n"),
        "{out}"
    );
    assert!(out.contains("      + kind: Deployment\n"), "{out}");
    assert!(
        out.contains("  # unit hello.service will be created (enables unit, starts unit)\n"),
        "{out}"
    );
    assert!(
        out.ends_with("Plan: 4 to add, 0 to change, 0 to destroy.\n"),
        "{out}"
    );
}

#[test]
fn detailed_exitcode_says_whether_anything_changes() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    let (code, _, _) = s
        .labctl(&["plan", "--offline", "--detailed-exitcode"])
        .run()
        .parts();
    assert_eq!(code, 2);
    git(s.path(), &["init", "-q"]);
    git(s.path(), &["add", "."]);
    git(s.path(), &["commit", "-qm", "one"]);
    let (code, out, err) = s
        .labctl(&["plan", "--base", "HEAD", "--detailed-exitcode"])
        .run()
        .parts();
    assert_eq!(
        (code, out.as_str()),
        (0, "No changes. The stack matches `HEAD`.\n"),
        "{err}"
    );
}

#[test]
fn base_shows_exactly_the_last_commit() {
    let s = Stack::new(&web_stack("nginx:1.26", 1));
    with_web_templates(&s);
    git(s.path(), &["init", "-q"]);
    git(s.path(), &["add", "."]);
    git(s.path(), &["commit", "-qm", "one"]);
    std::fs::write(s.stack_file(), web_stack("nginx:1.27", 1)).unwrap();
    git(s.path(), &["commit", "-qam", "two"]);

    let (code, out, err) = s.labctl(&["plan", "--base", "HEAD~1"]).run().parts();
    assert_eq!(code, 0, "{err}");
    let expected = "\
Resource actions are indicated with the following symbols:
  ~ update in-place

labctl will perform the following actions:

  # Deployment lab/web will be updated (rolls pods)
  ~ Deployment lab/web (apps/v1)
      @@ -18,5 +18,5 @@
                app.kubernetes.io/name: web
            spec:
              containers:
      -       - image: nginx:1.26
      +       - image: nginx:1.27
                name: web

Plan: 0 to add, 1 to change, 0 to destroy.
";
    assert_eq!(out, expected);
}

#[test]
fn base_includes_template_changes_and_uncommitted_work() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    git(s.path(), &["init", "-q"]);
    git(s.path(), &["add", "."]);
    git(s.path(), &["commit", "-qm", "one"]);
    // A template change in the working tree, and a component removed.
    s.file(
        "systemd-templates/hello.service",
        &HELLO_UNIT.replace("/bin/sleep infinity", "/bin/sleep 1d"),
    );
    let (code, out, err) = s
        .labctl(&["plan", "--base", "HEAD", "--plane", "systemd"])
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("  # unit hello.service will be updated (restarts unit)\n"),
        "{out}"
    );
    assert!(
        out.contains("      - ExecStart=/bin/sleep infinity\n      + ExecStart=/bin/sleep 1d\n"),
        "{out}"
    );
    assert!(
        out.ends_with("Plan: 0 to add, 1 to change, 0 to destroy.\n"),
        "{out}"
    );

    std::fs::write(
        s.stack_file(),
        web_stack("nginx:1.27", 1).replace(
            "[host.extra.hello]\n",
            "[host.extra.hello]\nenabled = false\n",
        ),
    )
    .unwrap();
    let (_, out, _) = s.labctl(&["plan", "--base", "HEAD"]).run().parts();
    assert!(
        out.contains("  # unit hello.service will be destroyed (stops unit, disables unit)\n"),
        "{out}"
    );
    assert!(
        out.ends_with("Plan: 0 to add, 0 to change, 1 to destroy.\n"),
        "{out}"
    );
}

#[test]
fn base_before_the_stack_existed_is_an_empty_world() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    std::fs::write(s.path().join("README"), "x").unwrap();
    git(s.path(), &["init", "-q"]);
    git(s.path(), &["add", "README"]);
    git(s.path(), &["commit", "-qm", "empty"]);
    let (code, out, err) = s.labctl(&["plan", "--base", "HEAD"]).run().parts();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.ends_with("Plan: 4 to add, 0 to change, 0 to destroy.\n"),
        "{out}"
    );
}

#[test]
fn unknown_revision_is_a_clear_error() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    git(s.path(), &["init", "-q"]);
    let (code, _, err) = s.labctl(&["plan", "--base", "nope"]).run().parts();
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: cannot read the stack at git revision `nope`:"),
        "{err}"
    );
}

#[test]
fn json_plan_is_stable_and_documented() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    let (code, out, _) = s
        .labctl(&["plan", "--offline", "--output", "json", "--plane", "kube"])
        .run()
        .parts();
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["format_version"], "2");
    assert_eq!(v["changes_present"], true);
    assert_eq!(
        v["summary"],
        serde_json::json!({"add": 3, "change": 0, "destroy": 0})
    );
    let addresses: Vec<&str> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        [
            "Namespace lab",
            "ConfigMap lab/web-config",
            "Deployment lab/web"
        ]
    );
    let d = &v["changes"][2];
    assert_eq!(
        d["id"],
        serde_json::json!({"plane": "kube", "namespace": "lab", "kind": "Deployment", "name": "web", "api_version": "apps/v1"})
    );
    assert_eq!(d["action"], "create");
    assert_eq!(d["component"], "web");
    assert!(d["before"].is_null());
    assert!(
        d["after"]
            .as_str()
            .unwrap()
            .contains("app.kubernetes.io/managed-by: labctl")
    );
}

#[test]
fn secret_values_never_appear() {
    let s = Stack::new(&format!("{BARE}\n[kube.extra.creds]\n"));
    s.file(
        "templates/creds/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: {{ secret('postgres-password') }}\n",
    );
    let (code, out, err) = s
        .labctl(&["plan", "--offline"])
        .env("LABCTL_SECRET_POSTGRES_PASSWORD", "hunter2-very-secret")
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("password: (sensitive value)"), "{out}");
    for format in ["human", "json"] {
        let (_, out, err) = s
            .labctl(&["plan", "--offline", "--output", format])
            .env("LABCTL_SECRET_POSTGRES_PASSWORD", "hunter2-very-secret")
            .run()
            .parts();
        assert!(
            !out.contains("hunter2") && !err.contains("hunter2"),
            "{format}: {out}{err}"
        );
    }
}

#[test]
fn disabled_components_render_nothing() {
    let s = Stack::new(
        &web_stack("nginx:1.27", 1)
            .replace("[kube.extra.web]\n", "[kube.extra.web]\nenabled = false\n"),
    );
    with_web_templates(&s);
    let (code, out, err) = s.labctl(&["render"]).run().parts();
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("web"), "{out}");
    assert!(out.contains("# Source: systemd/hello.service"), "{out}");
}

#[test]
fn undefined_variable_names_template_line_and_variable() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    s.file("templates/web/extra.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: \"{{ c.values.colour }}\"\n");
    let (code, _, err) = s.labctl(&["validate"]).run().parts();
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: template `templates/web/extra.yaml` line 6: undefined variable `c.values.colour`\n"
    );
}

#[test]
fn misspelled_field_names_template_document_and_path() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    s.file(
        "templates/web/web.yaml",
        &WEB_TEMPLATE.replace("replicas:", "replica:"),
    );
    let (code, _, err) = s.labctl(&["validate"]).run().parts();
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: template `templates/web/web.yaml`, document 2: Deployment `web`: unknown field `spec.replica`\n"
    );
}

#[test]
fn rendered_documents_need_identity() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    s.file(
        "templates/web/bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {}\n",
    );
    let (_, _, err) = s.labctl(&["validate"]).run().parts();
    assert_eq!(
        err,
        "error: template `templates/web/bad.yaml`, document 1: missing `metadata.name`\n"
    );
    s.file("templates/web/bad.yaml", "kind: [oops\n");
    let (_, _, err) = s.labctl(&["validate"]).run().parts();
    assert!(
        err.starts_with("error: template `templates/web/bad.yaml`, document 1: not valid YAML:"),
        "{err}"
    );
}

#[test]
fn two_templates_rendering_one_object_is_an_error() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    s.file(
        "templates/web/again.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\n",
    );
    let (_, _, err) = s.labctl(&["validate"]).run().parts();
    assert_eq!(
        err,
        "error: `ConfigMap lab/web-config` is rendered twice: by `templates/web/again.yaml` and by `templates/web/web.yaml`\n"
    );
}

#[test]
fn stack_templates_override_builtin_ones() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    s.file("templates/stack/namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ namespace }}\n  annotations:\n    owner: me\n");
    let (_, out, _) = s.labctl(&["render", "--plane", "kube"]).run().parts();
    assert!(out.contains("    owner: me\n"), "{out}");
}

#[test]
fn render_to_a_folder_round_trips_byte_for_byte() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    let out = tempfile::tempdir().unwrap();
    let (code, _, err) = s
        .labctl(&["render", "-o", out.path().to_str().unwrap()])
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    let deploy = out.path().join("kube/lab/deployment-web.yaml");
    let text = std::fs::read_to_string(&deploy).unwrap();
    let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let again = labctl::resource::Content::kube(parsed).text();
    assert_eq!(again, text);
    assert!(
        out.path()
            .join("kube/_cluster/namespace-lab.yaml")
            .is_file()
    );
    let unit = std::fs::read_to_string(out.path().join("systemd/hello.service")).unwrap();
    assert!(
        unit.starts_with("# Managed by labctl (stack: lab)."),
        "{unit}"
    );
    // Rendering twice gives the same bytes.
    let (_, a, _) = s.labctl(&["render"]).run().parts();
    let (_, b, _) = s.labctl(&["render"]).run().parts();
    assert_eq!(a, b);
}

/// `labctl --stack <s> <args>` on a pseudo-terminal (util-linux `script`), so colour detection
/// sees a TTY, with `NO_COLOR` set or not; what the terminal showed.
fn on_tty(s: &Stack, args: &str, no_color_env: bool) -> String {
    let mut c = Labctl::new()
        .stack(s.stack_file())
        .args(args.split(' '))
        .env_remove("NO_COLOR");
    if no_color_env {
        c = c.env("NO_COLOR", "1");
    }
    c.run_on_tty("").stdout
}

#[test]
fn colour_only_on_a_tty_and_never_when_asked_not_to() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    // Not a TTY: plain, even without NO_COLOR.
    let (_, out, _) = Labctl::new()
        .env_remove("NO_COLOR")
        .stack(s.stack_file())
        .args(["plan", "--offline"])
        .run()
        .parts();
    assert!(!out.contains('\x1b'), "no escapes when piped");
    assert!(
        on_tty(&s, "plan --offline", false).contains("\x1b["),
        "colour on a TTY"
    );
    assert!(
        !on_tty(&s, "plan --offline", true).contains('\x1b'),
        "NO_COLOR respected"
    );
    assert!(
        !on_tty(&s, "--no-color plan --offline", false).contains('\x1b'),
        "--no-color respected"
    );
}

#[test]
fn manifests_read_yaml_as_kubectl_does() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    // Octal file modes and YAML 1.1 booleans, as kubectl reads them: 0640 is 416.
    s.file(
        "templates/web/files.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: files\nspec:\n  automountServiceAccountToken: no\n  \
         containers:\n    - name: c\n      image: busybox\n      stdin: yes\n  \
         volumes:\n    - name: conf\n      configMap:\n        name: web-config\n        defaultMode: 0640\n",
    );
    let (code, out, err) = s.labctl(&["render", "--plane", "kube"]).run().parts();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("defaultMode: 416\n"), "{out}");
    assert!(
        out.contains("automountServiceAccountToken: false\n"),
        "{out}"
    );
    assert!(out.contains("stdin: true\n"), "{out}");
    // A key written twice is refused, not silently the last one (kubectl keeps the last).
    s.file(
        "templates/web/files.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: files\ndata:\n  a: \"1\"\n  a: \"2\"\n",
    );
    let (code, _, err) = s.labctl(&["validate"]).run().parts();
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: template `templates/web/files.yaml`, document 1: not valid YAML: line 7 column 3: duplicate mapping key `a`\n"
    );
}
