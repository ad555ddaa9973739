//! The GitOps setting on a real user manager, for the proxy's sync tests: a bare origin named like
//! the push payload's repository, the proxy's checkout with a stack applied by hand, a second
//! clone that "someone else" pushes from, and the sync's status read back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::agents::{self, ProxyCmd, checkout};
use super::systemd::UserManager;
use super::{Stack, git, wait_for};

/// GitHub's push payload, recorded.
pub const PUSH: &str = include_str!("../../fixtures/github-push.json");
/// The commit the recorded payload names.
pub const COMMIT: &str = "3d1f6b7e2c9a4f5b8e0d7c6a5b4f3e2d1c0b9a87";

/// The pending-sync log, as written.
pub fn pending_log(repo: &Path) -> String {
    std::fs::read_to_string(repo.join(".git/labctl-proxy/pending-sync.jsonl")).unwrap_or_default()
}

/// What waits in the pending-sync slot: the log's last line.
pub fn pending(repo: &Path) -> Option<serde_json::Value> {
    pending_log(repo)
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
}

/// A service whose process exits at once, failing.
const CRASH: &str = "[Unit]
Description={{ c.values.description }}

[Service]
ExecStart=/bin/sh -c 'exit 3'

[Install]
WantedBy=default.target
";

const SLEEPER: &str = "[Unit]
Description={{ c.values.description }}

[Service]
ExecStart=/bin/sh -c 'trap \"\" HUP; while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

/// Holds a unit in `activating` (its `ExecStartPre=`) while the file `values.hold` exists: an
/// apply that starts it is in the middle for as long as the test wants.
const SLOW: &str = "[Unit]
Description={{ c.values.description }}

[Service]
ExecStartPre=/bin/sh -c 'while [ -e {{ c.values.hold }} ]; do sleep 0.1; done'
ExecStart=/bin/sh -c 'trap \"\" HUP; while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

/// The GitOps setting on a real user manager: a bare origin (named like the payload's
/// repository), the proxy's checkout of it with a stack applied by hand, and a second clone that
/// "someone else" pushes from.
pub struct Gitops {
    /// The user manager.
    pub m: UserManager,
    /// The proxy's checkout.
    pub repo: PathBuf,
    /// The clone "someone else" pushes from.
    pub work: PathBuf,
    /// While this file exists, units named `slow*` stay activating.
    pub hold: PathBuf,
}

impl Gitops {
    /// Units `units` committed, pushed and applied by hand (`labctl apply`).
    pub fn new(units: &[&str]) -> Self {
        let m = UserManager::start();
        let scratch = m.scratch();
        let repo = checkout(&scratch, "");
        let origin = scratch.join("origin/acme/homelab.git");
        std::fs::create_dir_all(&origin).unwrap();
        git(&origin, &["init", "-q", "--bare", "-b", "main"]);
        let g = Gitops {
            repo,
            work: scratch.join("work"),
            hold: scratch.join("hold"),
            m,
        };
        g.stack(&g.repo, units);
        git(&g.repo, &["add", "-A"]);
        git(&g.repo, &["commit", "-q", "-m", "first units"]);
        git(&g.repo, &["push", "-q", "origin", "main"]);
        g.m.labctl(&g.repo.join("stack.toml"), &["apply", "--yes"])
            .code(0);
        for u in units {
            assert_eq!(g.m.active_state(&format!("gitops-{u}.service")), "active");
        }
        git(
            &scratch,
            &[
                "clone",
                "-q",
                origin.to_str().unwrap(),
                g.work.to_str().unwrap(),
            ],
        );
        g
    }

    /// The stack in `dir`: one `[host.extra]` unit `gitops-<name>` per name, from the sleeper
    /// template, or the slow one for names starting with `slow`.
    pub fn stack(&self, dir: &Path, units: &[&str]) {
        let s = Stack::units(dir, "gitops")
            .template("sleeper.service", SLEEPER)
            .template("slow.service", SLOW);
        let mut s = s.template("crash.service", CRASH);
        for spec in units {
            // `a=crash`: unit `a` from the crash template.
            let (u, template) = match spec.split_once('=') {
                Some((u, t)) => (u, t),
                None if spec.starts_with("slow") => (*spec, "slow"),
                None => (*spec, "sleeper"),
            };
            s = s.unit(
                u,
                &format!(
                    "template = \"{template}\"\nunit = \"gitops-{u}\"\nvalues = {{ description = \"{u}\", hold = \"{}\" }}",
                    self.hold.display()
                ),
            );
        }
        s.write();
    }

    /// Someone else commits the stack with `units` and pushes it: the push's payload (`before`,
    /// `after` as GitHub sends them) and `after`.
    pub fn push(&self, units: &[&str]) -> (String, String) {
        let before = git(&self.work, &["rev-parse", "HEAD"]);
        self.stack(&self.work, units);
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "-m", &format!("units {units:?}")],
        );
        git(&self.work, &["push", "-q", "origin", "main"]);
        let after = git(&self.work, &["rev-parse", "HEAD"]);
        let payload = PUSH
            .replace(COMMIT, &after)
            .replace("6113728f27ae82c7b1a177c8d03f9e96e0adf246", &before);
        (payload, after)
    }

    /// Someone else commits `text` as the stack file (whatever it is) and pushes it: the push's
    /// payload and the commit.
    pub fn push_text(&self, text: &str) -> (String, String) {
        let before = git(&self.work, &["rev-parse", "HEAD"]);
        std::fs::write(self.work.join("stack.toml"), text).unwrap();
        git(&self.work, &["commit", "-q", "-am", "stack by hand"]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        let after = git(&self.work, &["rev-parse", "HEAD"]);
        let payload = PUSH
            .replace(COMMIT, &after)
            .replace("6113728f27ae82c7b1a177c8d03f9e96e0adf246", &before);
        (payload, after)
    }

    /// The generations on this manager's host, as `labctl history -o json` shows them.
    pub fn history(&self) -> Vec<serde_json::Value> {
        let out = self.m.labctl(
            &self.repo.join("stack.toml"),
            &["history", "--user", "-o", "json"],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        doc["generations"].as_array().unwrap().clone()
    }

    /// The proxy for the checkout, on this manager.
    pub fn proxy(&self) -> ProxyCmd {
        let mut cmd = ProxyCmd::new(&self.repo);
        for (k, v) in self.m.env() {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    /// `labctl plan` of the checkout's stack against the manager says `No changes.`.
    pub fn converged(&self) {
        self.m
            .labctl(&self.repo.join("stack.toml"), &["plan", "--user"])
            .code(0)
            .stdout_has("No changes.");
    }

    pub fn last_applied(&self) -> Option<String> {
        std::fs::read_to_string(self.repo.join(".git/labctl-proxy/last-applied"))
            .ok()
            .map(|t| t.trim().to_string())
    }
}

pub fn sync_status(p: &agents::Proxy) -> serde_json::Value {
    let r = p.request("GET", "/sync/status", &[], b"");
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// Wait until the sync of `commit` has finished (or stopped); its status.
pub fn synced(p: &agents::Proxy, commit: &str) -> serde_json::Value {
    let mut status = serde_json::Value::Null;
    wait_for("the sync to finish", Duration::from_secs(120), || {
        status = sync_status(p);
        status["commit"] == commit && status["finished"].is_string()
    });
    status
}
