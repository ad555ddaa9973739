//! What a new user meets first: flags, help, errors, pipes, output folders (issue 14). Every test
//! drives the real binary.

use crate::support::{BARE, Labctl, Stack, git, repo, web_stack, with_web_templates};

// ---- durations (humantime) ----

#[test]
fn duration_flag_overflow_is_an_error_naming_the_flag() {
    let s = Stack::new(BARE);
    let (code, out, err) = s
        .labctl(&["apply", "--yes", "--wait-timeout", "99999999999999999h"])
        .run()
        .parts();
    assert_eq!(code, 2, "a usage error: {err}");
    assert_eq!(out, "");
    assert!(err.contains("--wait-timeout"), "names the flag: {err}");
    assert!(err.contains("too long a duration"), "{err}");
}

#[test]
fn duration_flags_take_humantime_forms() {
    // `1h30m` parses: the command gets past the command line and fails later, on the cluster.
    let s = Stack::new(BARE);
    let (code, _, err) = s
        .labctl(&[
            "apply",
            "--yes",
            "--plane",
            "kube",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "--wait-timeout",
            "1h30m",
            "--settle",
            "2 s",
        ])
        .run()
        .parts();
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("invalid value"), "{err}");
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
    let (code, _, err) = s
        .labctl(&["apply", "--yes", "--settle", "5 parsecs"])
        .run()
        .parts();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--settle"), "{err}");
}

#[test]
fn duration_setting_overflow_is_a_located_problem() {
    let s = Stack::new(&format!(
        "{}\n[kube.loki]\nretention = \"99999999999999999h\"\n",
        BARE.replace("[kube.loki]\nenabled = false\n", "")
    ));
    let (code, _, err) = s.labctl(&["validate"]).run().parts();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`kube.loki.retention` is not a valid duration: too long a duration"),
        "{err}"
    );
}

// ---- help: global options apart; cluster options only where a cluster is reached ----

fn help(args: &[&str]) -> String {
    let (code, out, err) = Labctl::new().args(args).arg("--help").run().parts();
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn validate_and_completions_do_not_offer_cluster_options() {
    for cmd in [&["validate"][..], &["completions"], &["render"]] {
        let out = help(cmd);
        assert!(!out.contains("--kubeconfig"), "{cmd:?}:\n{out}");
        assert!(!out.contains("--context"), "{cmd:?}:\n{out}");
        assert!(out.contains("Global options:\n"), "{cmd:?}:\n{out}");
    }
}

#[test]
fn plan_and_apply_group_global_options_apart() {
    for cmd in ["plan", "apply"] {
        let out = help(&[cmd]);
        let own = out.find("Options:\n").expect("own options");
        let cluster = out.find("Cluster options:\n").expect("cluster options");
        let global = out.find("Global options:\n").expect("global options");
        let own_text = &out[own..cluster.min(global)];
        assert!(own_text.contains("--plane"), "{cmd}:\n{out}");
        assert!(!own_text.contains("--stack"), "{cmd}:\n{out}");
        assert!(!own_text.contains("--kubeconfig"), "{cmd}:\n{out}");
        assert!(out[cluster..].contains("--kubeconfig"), "{cmd}:\n{out}");
        assert!(out[global..].contains("--stack"), "{cmd}:\n{out}");
        assert!(out[global..].contains("--no-color"), "{cmd}:\n{out}");
    }
}

// ---- render --output-dir ----

/// The web stack with the `hello` unit switched on or off.
fn web_and_hello(hello: bool) -> String {
    web_stack("nginx:1.27", 1).replace(
        "[host.extra.hello]\n",
        &format!("[host.extra.hello]\nenabled = {hello}\n"),
    )
}

#[test]
fn render_output_dir_removes_what_it_no_longer_renders() {
    let s = Stack::new(&web_and_hello(true));
    with_web_templates(&s);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let (code, _, err) = s.labctl(&["render", "-d", dir]).run().parts();
    assert_eq!(code, 0, "{err}");
    assert!(out.path().join("systemd/hello.service").is_file(), "{err}");
    assert!(
        out.path()
            .join("kube/_cluster/namespace-lab.yaml")
            .is_file()
    );
    std::fs::write(out.path().join("kube/lab/mine.yaml"), "kind: ConfigMap\n").unwrap();

    std::fs::write(s.stack_file(), web_and_hello(false)).unwrap();
    let (code, _, err) = s.labctl(&["render", "--output-dir", dir]).run().parts();
    assert_eq!(code, 0, "{err}");
    assert!(!out.path().join("systemd/hello.service").exists(), "{err}");
    assert!(
        !out.path().join("systemd").exists(),
        "empty folder left: {err}"
    );
    assert!(
        err.contains("removed `systemd/hello.service`: no longer rendered"),
        "{err}"
    );
    assert!(out.path().join("kube/lab/deployment-web.yaml").is_file());
    // A file labctl did not write stays, and is named.
    assert!(out.path().join("kube/lab/mine.yaml").is_file());
    assert!(
        err.contains("left alone, not written by labctl (1):\n  kube/lab/mine.yaml\n"),
        "{err}"
    );
}

#[test]
fn render_plane_only_prunes_its_own_plane() {
    let s = Stack::new(&web_and_hello(true));
    with_web_templates(&s);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    assert_eq!(s.labctl(&["render", "-d", dir]).run().parts().0, 0);
    let (code, _, err) = s
        .labctl(&["render", "-d", dir, "--plane", "kube"])
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    assert!(out.path().join("systemd/hello.service").is_file(), "{err}");
    assert!(!err.contains("left alone"), "{err}");
}

#[test]
fn render_refuses_a_folder_holding_another_stack() {
    let s = Stack::new(&web_and_hello(true));
    with_web_templates(&s);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    assert_eq!(s.labctl(&["render", "-d", dir]).run().parts().0, 0);
    std::fs::write(
        s.stack_file(),
        web_and_hello(true).replace("name = \"lab\"", "name = \"other\""),
    )
    .unwrap();
    let (code, _, err) = s.labctl(&["render", "-d", dir]).run().parts();
    assert_eq!(code, 1);
    assert!(
        err.contains("holds the render of stack `lab`, not `other`"),
        "{err}"
    );
    assert!(out.path().join("systemd/hello.service").is_file());
}

#[test]
fn render_dash_o_still_works_and_says_it_is_deprecated() {
    let s = Stack::new(&web_and_hello(true));
    with_web_templates(&s);
    let out = tempfile::tempdir().unwrap();
    let (code, _, err) = s
        .labctl(&["render", "-o", out.path().to_str().unwrap()])
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.starts_with("warning: `render -o DIR`/`--output DIR` is deprecated"),
        "{err}"
    );
    assert!(out.path().join("systemd/hello.service").is_file());
    let h = help(&["render"]);
    assert!(
        h.contains("-d, --output-dir <DIR>") && !h.contains("-o,"),
        "{h}"
    );
}

// ---- pipes ----

#[test]
fn printing_commands_exit_quietly_on_a_closed_pipe() {
    // Enough output that the pipe closes while labctl still writes.
    let s = Stack::bundled();
    for args in [
        "plan --offline",
        "plan --offline -o json",
        "plan --offline -o markdown",
        "render --redact",
        "completions bash",
    ] {
        let (code, out, err) = s
            .labctl(&args.split(' ').collect::<Vec<_>>())
            .run_piped("head -1")
            .parts();
        assert_eq!((code, err.as_str()), (0, ""), "{args}");
        assert_eq!(out.lines().count(), 1, "{args}: {out}");
    }
}

// ---- plan --base ----

#[test]
fn unknown_base_revision_says_gits_reason() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    git(s.path(), &["init", "-q"]);
    git(s.path(), &["add", "."]);
    git(s.path(), &["commit", "-qm", "one"]);
    let (code, _, err) = s.labctl(&["plan", "--base", "nope"]).run().parts();
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: cannot read the stack at git revision `nope`: bad revision 'nope'\n"
    );
}

#[test]
fn empty_plan_against_a_base_names_the_revision() {
    let s = Stack::new(&web_stack("nginx:1.27", 1));
    with_web_templates(&s);
    git(s.path(), &["init", "-q"]);
    git(s.path(), &["add", "."]);
    git(s.path(), &["commit", "-qm", "one"]);
    let (code, out, err) = s.labctl(&["plan", "--base", "HEAD"]).run().parts();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "No changes. The stack matches `HEAD`.\n");
    let (_, out, _) = s
        .labctl(&["plan", "--base", "HEAD", "-o", "markdown"])
        .run()
        .parts();
    assert!(
        out.contains("**No changes.** The stack matches `HEAD`.\n"),
        "{out}"
    );
}

// ---- kubeconfig quoting ----

#[test]
fn unreadable_kubeconfig_is_named_once() {
    let s = Stack::new(BARE);
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = s
        .labctl(&["apply", "--yes", "--plane", "kube"])
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .run()
        .parts();
    assert_eq!(code, 1, "{err}");
    let path = home.path().join(".kube/config");
    let want = format!(
        "cannot read `{}`: No such file or directory",
        path.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("'\""), "{err}");

    let (code, _, err) = s
        .labctl(&["plan", "--plane", "kube", "--kubeconfig", "/nope/kc"])
        .run()
        .parts();
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: kube: read kubeconfig `/nope/kc`: No such file or directory (os error 2)\n"
    );
}

// ---- plan -o markdown ----

#[test]
fn markdown_plan_is_a_pull_request_comment() {
    let s = Stack::new(&format!(
        "{}\n[kube.extra.creds]\n",
        web_stack("nginx:1.27", 1)
    ));
    with_web_templates(&s);
    s.file(
        "templates/creds/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: hunter2\n",
    );
    let (code, out, err) = s
        .labctl(&["plan", "--offline", "-o", "markdown", "--detailed-exitcode"])
        .run()
        .parts();
    assert_eq!(code, 2, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("### labctl plan"));
    assert_eq!(lines.next(), Some(""));
    assert_eq!(
        lines.next(),
        Some("**Plan:** 5 to add, 0 to change, 0 to destroy.")
    );
    assert!(
        out.contains("<details><summary><code>+ Deployment lab/web</code> will be created</summary>\n\n```diff\n+ apiVersion: apps/v1\n"),
        "{out}"
    );
    assert_eq!(out.matches("<details>").count(), 5, "{out}");
    assert_eq!(out.matches("</details>").count(), 5, "{out}");
    assert!(!out.contains("hunter2"), "secret leaked:\n{out}");
    assert!(out.contains("+   password: (sensitive value)"), "{out}");
}

#[test]
fn long_markdown_plans_are_truncated_with_a_note() {
    // 400 ConfigMaps of ~1 kB each: far more than one comment holds.
    let mut tpl = String::new();
    for i in 0..400 {
        tpl.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}\ndata:\n  blob: {}\n",
            "x".repeat(1000)
        ));
    }
    let s = Stack::new(&format!("{BARE}\n[kube.extra.many]\n"));
    s.file("templates/many/cms.yaml", &tpl);
    let (code, out, err) = s
        .labctl(&["plan", "--offline", "-o", "markdown"])
        .run()
        .parts();
    assert_eq!(code, 0, "{err}");
    assert!(out.len() < 65_536, "{} characters", out.len());
    assert!(out.contains("**Plan:** 401 to add, 0 to change, 0 to destroy."));
    let shown = out.matches("</details>").count();
    assert!(shown > 10 && shown < 401, "{shown}");
    assert!(
        out.contains(&format!(
            "The plan is too long for one comment: {} of 401 changes are not shown.",
            401 - shown
        )),
        "{}",
        &out[out.len() - 400..]
    );
}

// ---- every schema problem in one run ----

#[test]
fn unknown_key_wrong_type_and_bad_port_are_reported_together() {
    let s = Stack::new(
        "[stack]\nname = \"lab\"\n\n[kube.grafana]\nnodeport = 30001\nnode_port = 70000\n\n[host.proxy]\nport = \"eighty\"\nlisten = \"x\"\n\n[kube.grafna]\n",
    );
    let (code, out, err) = s.labctl(&["validate"]).run().parts();
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    let pos = |s: &str| {
        err.find(s)
            .unwrap_or_else(|| panic!("`{s}` missing in:\n{err}"))
    };
    let at = [
        pos("stack.toml:5:1: unknown field `nodeport`"),
        pos(
            "stack.toml:6:13: `kube.grafana.node_port`: expected a port number (1-65535), found the number 70000",
        ),
        pos(
            "stack.toml:9:8: `host.proxy.port`: expected a port number (1-65535), found the string \"eighty\"",
        ),
        pos("stack.toml:10:10: `host.proxy.listen` is not an IP address"),
        pos("stack.toml:12:7: unknown field `grafna`"),
    ];
    assert!(at.is_sorted(), "in file order:\n{err}");
    assert!(err.ends_with("has 5 problems\n"), "{err}");
    assert!(!err.contains("u16"), "{err}");
}

#[test]
fn schema_and_semantic_problems_come_in_one_report() {
    // A wrong type (taken out, its default used) and a semantic problem elsewhere.
    let s = Stack::new("[stack]\nname = \"Lab\"\n\n[kube.grafana]\nreplicas = \"two\"\n");
    let (code, _, err) = s.labctl(&["validate"]).run().parts();
    assert_eq!(code, 1);
    assert!(
        err.contains("stack.toml:2:8: `stack.name` is not a valid stack name"),
        "{err}"
    );
    assert!(
        err.contains("stack.toml:5:12: `kube.grafana.replicas`: expected a whole number"),
        "{err}"
    );
    assert!(err.ends_with("has 2 problems\n"), "{err}");
}

#[test]
fn a_wrong_required_value_is_one_problem_not_two() {
    // `stack.name` has no default: what depends on it cannot be checked, but the problem is
    // said once, as a type, not again as a missing key.
    let s = Stack::new("[stack]\nname = 5\n");
    let (code, _, err) = s.labctl(&["validate"]).run().parts();
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "stack.toml:2:8: `stack.name`: expected a string in quotes, found the number 5"
        ),
        "{err}"
    );
    assert!(!err.contains("missing field"), "{err}");
    assert!(err.ends_with("has 1 problem\n"), "{err}");
}

#[test]
fn every_syntax_error_is_reported() {
    let s = Stack::new("[stack]\nname = \"lab\"\nx = = 1\ny = \"open\n");
    let (code, _, err) = s.labctl(&["validate"]).run().parts();
    assert_eq!(code, 1);
    assert!(err.contains("stack.toml:3:"), "{err}");
    assert!(err.contains("stack.toml:4:"), "{err}");
}

// ---- docs/ci.md ----

#[test]
fn ci_workflow_in_the_docs_is_valid_and_runs_the_documented_plan() {
    let doc = std::fs::read_to_string(repo().join("docs/ci.md")).unwrap();
    let yaml = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a yaml block");
    let wf: serde_json::Value = serde_saphyr::from_str(yaml).expect("the workflow is YAML");
    let steps = wf["jobs"]["plan"]["steps"].as_array().expect("steps");
    let run_line = steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .flat_map(str::lines)
        .find(|l| l.trim_start().starts_with("labctl plan"))
        .expect("a labctl plan step");
    assert!(
        run_line.contains(
            "labctl plan --base origin/${{ github.base_ref }} -o markdown --detailed-exitcode"
        ),
        "{run_line}"
    );
    assert!(steps.iter().any(|s| s["with"]["fetch-depth"] == 0));
    // The documented command line, on a real checkout: the flags are what labctl accepts.
    let s = Stack::new(&web_stack("nginx:1.26", 1));
    with_web_templates(&s);
    git(s.path(), &["init", "-q", "-b", "main"]);
    git(s.path(), &["add", "."]);
    git(s.path(), &["commit", "-qm", "one"]);
    std::fs::write(s.stack_file(), web_stack("nginx:1.27", 1)).unwrap();
    let (code, out, err) = s
        .labctl(&[
            "plan",
            "--base",
            "main",
            "-o",
            "markdown",
            "--detailed-exitcode",
        ])
        .run()
        .parts();
    assert_eq!(code, 2, "{err}");
    assert!(
        out.contains("**Plan:** 0 to add, 1 to change, 0 to destroy."),
        "{out}"
    );
    assert!(
        out.contains("<code>~ Deployment lab/web</code> will be updated (rolls pods)"),
        "{out}"
    );
    assert!(out.contains("```diff\n@@ -18,5 +18,5 @@\n"), "{out}");
    assert!(
        out.contains("\n-       - image: nginx:1.26\n+       - image: nginx:1.27\n"),
        "{out}"
    );
}
