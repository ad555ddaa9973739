//! A small builder for running the real `labctl` binary against a stack in a temp folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A temporary stack folder.
pub struct Stack {
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// A stack folder holding `stack.toml` with `text`.
    pub fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("stack.toml"), text).expect("write stack.toml");
        Stack { dir }
    }

    /// A stack folder holding a copy of the bundled stack.toml.
    pub fn bundled() -> Self {
        Self::new(&std::fs::read_to_string(repo().join("stack.toml")).expect("bundled stack"))
    }

    /// Write a file (creating folders) relative to the stack folder.
    pub fn file(&self, rel: &str, text: &str) -> &Self {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn stack_file(&self) -> PathBuf {
        self.dir.path().join("stack.toml")
    }

    /// `labctl --stack <this> <args>`, with a clean, colourless environment.
    pub fn labctl(&self, args: &[&str]) -> Command {
        let mut c = labctl();
        c.arg("--stack").arg(self.stack_file()).args(args);
        c
    }
}

/// The binary under test, with an environment that cannot leak into results.
pub fn labctl() -> Command {
    let mut c = Command::cargo_bin("labctl").expect("labctl binary");
    c.env_remove("LABCTL_STACK").env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("LABCTL_SECRET_") {
            c.env_remove(k);
        }
    }
    c
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run and return (status code, stdout, stderr).
pub fn run(mut c: Command) -> (i32, String, String) {
    let out = c.output().expect("run labctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

/// `[stack]` plus every built-in component disabled: tests add their own `[kube.extra.*]` and
/// `[host.extra.*]` components so they do not depend on the shipped templates.
pub const BARE: &str = include_str!("../../fixtures/bare.toml");

/// A small web component: a ConfigMap and a Deployment whose image comes from `values.image`.
/// (Values printed in `.yaml` templates are JSON-quoted by the renderer: no quotes here.)
pub const WEB_TEMPLATE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: {{ c.values.greeting }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{ c.values.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/name: web
  template:
    metadata:
      labels:
        app.kubernetes.io/name: web
    spec:
      containers:
        - name: web
          image: {{ c.values.image }}
"#;

/// A stack with only the `web` component and a `hello` host unit.
pub fn web_stack(image: &str, replicas: u32) -> String {
    format!(
        "{BARE}\n[kube.extra.web]\nvalues = {{ image = \"{image}\", replicas = {replicas}, greeting = \"hi\" }}\n\n[host.extra.hello]\nvalues = {{ message = \"hello\" }}\n"
    )
}

/// The `hello` unit template.
pub const HELLO_UNIT: &str = "[Unit]\nDescription=says {{ c.values.message }}\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=default.target\n";

/// Write the web and hello templates into a stack folder.
pub fn with_web_templates(s: &Stack) {
    s.file("templates/web/web.yaml", WEB_TEMPLATE);
    s.file("systemd-templates/hello.service", HELLO_UNIT);
}

/// Whether the kernel may back labctl process `pid`'s memory with transparent huge pages (the
/// `THP_enabled` line of its status: 0 once `PR_SET_THP_DISABLE` is set). `None` before the
/// process runs labctl (between fork and exec), once it is gone, or on a kernel without the line.
pub fn huge_pages_enabled(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.split_whitespace().next())
    };
    (field("Name:")? == "labctl").then_some(())?;
    Some(field("THP_enabled:")? == "1")
}

/// A test of labctl's huge pages must itself run with them allowed: a process started without
/// them keeps them off, whatever its command.
#[track_caller]
pub fn assert_huge_pages_allowed_here() {
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(
        own.contains("THP_enabled:\t1"),
        "this test must run with transparent huge pages allowed"
    );
}
