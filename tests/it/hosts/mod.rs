//! Several hosts, one plan: the host plane over ssh, against real systemd user managers behind
//! real sshds on loopback ([`Hosts`]), with this machine's own manager and the test API server
//! beside them. Every apply is planned again and must come back `No changes.`
//!
//! - [`apply`]: one plan and one apply over every host, drift on one host, saved plans;
//! - [`failures`]: hosts that cannot be reached or go away, each failing alone; the lock; the
//!   proxy's sync;
//! - [`validate`]: `[hosts.<name>]` and `hosts = [...]` checked, each problem located.

mod apply;
mod failures;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::hosts::Hosts;
use crate::support::systemd::UserManager;
use crate::support::{Labctl, Stack};

/// A service that runs until stopped, saying which host it was rendered for.
pub(super) const SLEEPER: &str = "[Unit]
Description=sleeps on {{ host }}

[Service]
ExecStart=/bin/sh -c 'while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

/// A service reading a secret from its env file.
pub(super) const SECRETIVE: &str = "{{ env_secret(\"vault\", \"TOKEN\", \"vault-token\") }}[Unit]
Description=holds a token

[Service]
EnvironmentFile=-%E/labctl/vault.env
ExecStart=/bin/sh -c 'while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

/// A service whose start takes a while: a window in which to take its host away.
pub(super) const SLOW: &str = "[Unit]
Description=starts slowly

[Service]
ExecStartPre=/bin/sleep {{ c.values.pause }}
ExecStart=/bin/sh -c 'while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

pub(super) const WEB: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: {{ c.values.greeting }}
";

/// A stack `name` in `m`'s scratch folder: `local` runs `hello`, every host in `agents` runs
/// `agent`, plus `extra` TOML, and the `[hosts.*]` of `hosts`.
pub(super) fn stack(
    m: &UserManager,
    hosts: &Hosts,
    name: &str,
    agents: &[&str],
    extra: &str,
) -> PathBuf {
    let dir = m.scratch();
    let on = agents
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let path = Stack::units(&dir, name)
        .template("sleeper.service", SLEEPER)
        .template("secretive.service", SECRETIVE)
        .template("slow.service", SLOW)
        .unit("hello", "template = \"sleeper\"")
        .unit("agent", &format!("template = \"sleeper\"\nhosts = [{on}]"))
        .write();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(extra);
    text.push('\n');
    text.push_str(&hosts.toml());
    std::fs::write(&path, text).unwrap();
    path
}

/// labctl against `m` (this machine) and `hosts`, with `args`.
pub(super) fn labctl(m: &UserManager, hosts: &Hosts, stack: &Path, args: &[&str]) -> Labctl {
    m.command(stack, args)
        .env("LABCTL_SSH_COMMAND", hosts.ssh_command())
        .timeout(Duration::from_secs(180))
}

/// A file on host `h<n>` (its manager's config folder), as that host has it.
pub(super) fn host_file(hosts: &Hosts, n: usize, rel: &str) -> PathBuf {
    let config = hosts
        .manager(n)
        .env()
        .into_iter()
        .find(|(k, _)| *k == "XDG_CONFIG_HOME")
        .unwrap()
        .1;
    PathBuf::from(config).join(rel)
}
