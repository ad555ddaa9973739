//! Shared by the integration tests: a real systemd user manager ([`systemd`]) and stacks written to
//! temp folders ([`TestStack`]).

#![allow(dead_code)]

pub mod agents;
pub mod common;
pub mod github;
pub mod otlp;
pub mod postgres;
pub mod systemd;

use std::path::{Path, PathBuf};

/// A stack in a folder of its own: `stack.toml` plus `systemd-templates/`. Builtin components are
/// off; the test's own units are `[host.extra.*]` entries.
pub struct TestStack {
    dir: PathBuf,
    name: String,
    host: String,
    extras: Vec<String>,
}

impl TestStack {
    /// A stack named `name` in `dir`, for the user manager.
    pub fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir.join("systemd-templates")).unwrap();
        TestStack {
            dir: dir.to_path_buf(),
            name: name.into(),
            host: "scope = \"user\"\n".into(),
            extras: Vec::new(),
        }
    }

    /// Leave `host.scope` at its default (the system manager).
    pub fn system_scope(mut self) -> Self {
        self.host.clear();
        self
    }

    /// Extra `[host]` settings (`unit_dir = "..."`).
    pub fn host(mut self, toml: &str) -> Self {
        self.host.push_str(toml);
        self.host.push('\n');
        self
    }

    /// A template `systemd-templates/<file>`.
    pub fn template(self, file: &str, text: &str) -> Self {
        std::fs::write(self.dir.join("systemd-templates").join(file), text).unwrap();
        self
    }

    /// A `[host.extra.<name>]` entry; `settings` are its TOML lines (`unit = "x"`, `template = "t"`).
    pub fn unit(mut self, name: &str, settings: &str) -> Self {
        self.extras
            .push(format!("[host.extra.{name}]\n{settings}\n"));
        self
    }

    /// Drop the `[host.extra.<name>]` entry.
    pub fn without(mut self, name: &str) -> Self {
        let head = format!("[host.extra.{name}]\n");
        self.extras.retain(|e| !e.starts_with(&head));
        self
    }

    /// Write `stack.toml`; returns its path.
    pub fn write(&self) -> PathBuf {
        let mut t = format!("[stack]\nname = \"{}\"\n\n", self.name);
        // Every builtin component, from the one list labctl itself iterates.
        for c in labctl::stack::builtin_components() {
            t.push_str(&format!("[{c}]\nenabled = false\n\n"));
        }
        t.push_str(&format!("[host]\n{}\n", self.host));
        for e in &self.extras {
            t.push_str(e);
            t.push('\n');
        }
        let path = self.dir.join("stack.toml");
        std::fs::write(&path, t).unwrap();
        path
    }
}

/// Set in the copy of this binary that [`in_own_process`] starts: the name of the test it runs.
const OWN_PROCESS: &str = "IT_OWN_PROCESS";

/// Run `body`, the whole of test `path` (its `module_path!()` and name), in a copy of this test
/// binary running that test alone: for a test that changes its process for good (a global tracing
/// subscriber, signal handlers), which the other tests of this one binary share.
#[track_caller]
pub fn in_own_process(path: &str, body: impl FnOnce()) {
    // libtest names a test by its path without the crate.
    let name = path.split_once("::").map_or(path, |(_, rest)| rest);
    if std::env::var(OWN_PROCESS).as_deref() == Ok(name) {
        return body();
    }
    let out = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(OWN_PROCESS, name)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run this test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`{name}` failed in its own process ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // A filter that matches nothing passes too: the test must have run.
    assert!(
        stdout.contains("test result: ok. 1 passed;"),
        "`{name}` did not run in its own process:\n{stdout}\n{stderr}"
    );
}
