//! Shared by the integration tests: a real systemd user manager ([`systemd`]) and stacks written to
//! temp folders ([`TestStack`]).

#![allow(dead_code)]

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
