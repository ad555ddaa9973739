//! What a new user meets first: flags, help, errors, pipes, output folders (issue 14). Every test
//! drives the real binary.

mod common;

use common::{BARE, Stack, run, web_stack, with_web_templates};

// ---- durations (humantime) ----

#[test]
fn duration_flag_overflow_is_an_error_naming_the_flag() {
    let s = Stack::new(BARE);
    let (code, out, err) = run(s.labctl(&[
        "apply",
        "--yes",
        "--wait-timeout",
        "99999999999999999h",
    ]));
    assert_eq!(code, 2, "a usage error: {err}");
    assert_eq!(out, "");
    assert!(err.contains("--wait-timeout"), "names the flag: {err}");
    assert!(err.contains("too long a duration"), "{err}");
}

#[test]
fn duration_flags_take_humantime_forms() {
    // `1h30m` parses: the command gets past the command line and fails later, on the cluster.
    let s = Stack::new(BARE);
    let (code, _, err) = run(s.labctl(&[
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
    ]));
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("invalid value"), "{err}");
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
    let (code, _, err) = run(s.labctl(&["apply", "--yes", "--settle", "5 parsecs"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--settle"), "{err}");
}

#[test]
fn duration_setting_overflow_is_a_located_problem() {
    let s = Stack::new(&format!(
        "{}\n[kube.loki]\nretention = \"99999999999999999h\"\n",
        BARE.replace("[kube.loki]\nenabled = false\n", "")
    ));
    let (code, _, err) = run(s.labctl(&["validate"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`kube.loki.retention` is not a valid duration: too long a duration"),
        "{err}"
    );
}

// ---- help: global options apart; cluster options only where a cluster is reached ----

fn help(args: &[&str]) -> String {
    let (code, out, err) = run({
        let mut c = common::labctl();
        c.args(args).arg("--help");
        c
    });
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
    let (code, _, err) = run(s.labctl(&["render", "-d", dir]));
    assert_eq!(code, 0, "{err}");
    assert!(out.path().join("systemd/hello.service").is_file(), "{err}");
    assert!(out.path().join("kube/_cluster/namespace-lab.yaml").is_file());
    std::fs::write(out.path().join("kube/lab/mine.yaml"), "kind: ConfigMap\n").unwrap();

    std::fs::write(s.stack_file(), web_and_hello(false)).unwrap();
    let (code, _, err) = run(s.labctl(&["render", "--output-dir", dir]));
    assert_eq!(code, 0, "{err}");
    assert!(!out.path().join("systemd/hello.service").exists(), "{err}");
    assert!(!out.path().join("systemd").exists(), "empty folder left: {err}");
    assert!(err.contains("removed `systemd/hello.service`: no longer rendered"), "{err}");
    assert!(out.path().join("kube/lab/deployment-web.yaml").is_file());
    // A file labctl did not write stays, and is named.
    assert!(out.path().join("kube/lab/mine.yaml").is_file());
    assert!(err.contains("left alone, not written by labctl (1):\n  kube/lab/mine.yaml\n"), "{err}");
}

#[test]
fn render_plane_only_prunes_its_own_plane() {
    let s = Stack::new(&web_and_hello(true));
    with_web_templates(&s);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    assert_eq!(run(s.labctl(&["render", "-d", dir])).0, 0);
    let (code, _, err) = run(s.labctl(&["render", "-d", dir, "--plane", "kube"]));
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
    assert_eq!(run(s.labctl(&["render", "-d", dir])).0, 0);
    std::fs::write(
        s.stack_file(),
        web_and_hello(true).replace("name = \"lab\"", "name = \"other\""),
    )
    .unwrap();
    let (code, _, err) = run(s.labctl(&["render", "-d", dir]));
    assert_eq!(code, 1);
    assert!(err.contains("holds the render of stack `lab`, not `other`"), "{err}");
    assert!(out.path().join("systemd/hello.service").is_file());
}

#[test]
fn render_dash_o_still_works_and_says_it_is_deprecated() {
    let s = Stack::new(&web_and_hello(true));
    with_web_templates(&s);
    let out = tempfile::tempdir().unwrap();
    let (code, _, err) = run(s.labctl(&["render", "-o", out.path().to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert!(err.starts_with("warning: `render -o DIR`/`--output DIR` is deprecated"), "{err}");
    assert!(out.path().join("systemd/hello.service").is_file());
    let h = help(&["render"]);
    assert!(h.contains("-d, --output-dir <DIR>") && !h.contains("-o,"), "{h}");
}

// ---- kubeconfig quoting ----

#[test]
fn unreadable_kubeconfig_is_named_once() {
    let s = Stack::new(BARE);
    let home = tempfile::tempdir().unwrap();
    let mut c = s.labctl(&["apply", "--yes", "--plane", "kube"]);
    c.env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT");
    let (code, _, err) = run(c);
    assert_eq!(code, 1, "{err}");
    let path = home.path().join(".kube/config");
    let want = format!("cannot read `{}`: No such file or directory", path.display());
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("'\""), "{err}");

    let (code, _, err) = run(s.labctl(&["plan", "--plane", "kube", "--kubeconfig", "/nope/kc"]));
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: kube: read kubeconfig `/nope/kc`: No such file or directory (os error 2)\n"
    );
}

