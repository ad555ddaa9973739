//! The host's tables: `[host]` (this machine), `[hosts.<name>]` (others over ssh), the host
//! services and a stack's own units.

use super::*;

/// Which systemd manager labctl talks to.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The system manager on the system bus (`/etc/systemd/system`).
    #[default]
    System,
    /// The calling user's manager on the session bus (`$XDG_CONFIG_HOME/systemd/user`).
    User,
}

/// The name `hosts = [...]` lists give the machine labctl runs on (`[host]`).
pub const LOCAL_HOST: &str = "local";

/// One `[hosts.<name>]`: another machine, whose systemd manager labctl reaches over ssh
/// (D-Bus through `ssh HOST systemd-stdio-bridge`, files over the same connection).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoteHost {
    /// Where ssh goes, as ssh takes it: `user@host`, or a `Host` of the user's ssh config.
    pub ssh: String,
    /// The system manager (the ssh user must be root) or the ssh user's own manager.
    #[serde(default)]
    pub scope: Scope,
    /// Where unit files are written on that host; default by scope (`/etc/systemd/system`, or
    /// the ssh user's `$XDG_CONFIG_HOME/systemd/user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_dir: Option<PathBuf>,
}

/// `[host]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Host {
    /// System or user manager.
    pub scope: Scope,
    /// Where unit files are written; default by scope.
    pub unit_dir: Option<PathBuf>,
    /// The `labctl` binary that the agents' units run.
    pub labctl_path: String,
    /// `User=` for the agents' units (system scope only); none runs them as root.
    pub run_as: Option<String>,
    /// Where labctl keeps its records on this host (the stack's generations); default
    /// `/var/lib/labctl` for the system manager, `$XDG_STATE_HOME/labctl` (`~/.local/state/labctl`)
    /// for a user's.
    pub state_dir: Option<PathBuf>,
    /// How many generations are kept per stack (the oldest go first, never the last good one).
    pub generations: u32,
    /// `[host.proxy]`.
    pub proxy: Proxy,
    /// `[host.collector]`.
    pub collector: HostCollector,
    /// `[host.ingest]`.
    pub ingest: Ingest,
    /// `[host.gate]`.
    pub gate: Gate,
    /// `[host.openbao]`.
    pub openbao: Openbao,
    /// `[host.reading-sync]`.
    #[serde(rename = "reading-sync")]
    pub reading_sync: ReadingSync,
    /// `[host.extra.<name>]`: the stack's own units.
    pub extra: BTreeMap<String, ExtraHost>,
}

impl Default for Host {
    fn default() -> Self {
        Self {
            scope: Scope::System,
            unit_dir: None,
            labctl_path: s("/usr/local/bin/labctl"),
            run_as: None,
            state_dir: None,
            generations: 30,
            proxy: Proxy::default(),
            collector: HostCollector::default(),
            ingest: Ingest::default(),
            gate: Gate::default(),
            openbao: Openbao::default(),
            reading_sync: ReadingSync::default(),
            extra: BTreeMap::new(),
        }
    }
}

component! {
    /// `[host.proxy]`: webhooks, GitOps triggers and data pipelines (`labctl agent proxy`).
    Proxy {
        /// The hosts it runs on (`local` and `[hosts.<name>]` names); default `["local"]`.
        #[serde(skip_serializing_if = "Option::is_none")]
        hosts: Option<Vec<String>> = None,
        /// Unit base name (`<unit>.service`).
        unit: String = s("labctl-proxy"),
        /// Reload (SIGHUP) instead of restart when the unit changes.
        reload_on_change: bool = false,
        /// Address the proxy listens on.
        listen: String = s("127.0.0.1"),
        /// Port the proxy listens on; the only port the funnel may expose.
        port: u16 = 8085,
        /// Git checkout that a signed push webhook pulls and applies.
        repo_dir: String = s("/srv/homelab"),
        /// The stack's git repository (`git@github.com:owner/lab.git`, `ssh://…`, `https://…`,
        /// or a path): `labctl bootstrap` clones it into `repo_dir` when that is not a checkout
        /// yet. Empty: `repo_dir` is cloned by hand.
        repository: String = String::new(),
        /// Fetch over ssh with the secret `deploy-key` (a private key, written owner-only where
        /// only the proxy reads it). Default: whether `repository` is an ssh URL.
        deploy_key: Option<bool> = None,
        /// Branch the GitOps trigger follows.
        branch: String = s("main"),
        /// How long a sync that restarts the proxy itself waits for the new proxy to serve before
        /// systemd puts the previous one back.
        confirm_within: String = s("60s"),
        /// Extra environment for the unit.
        environment: BTreeMap<String, String> = BTreeMap::new(),
        /// `[host.proxy.pipelines.<name>]`: units started by `POST /pipelines/<name>`.
        pipelines: BTreeMap<String, Pipeline> = BTreeMap::new(),
    }
}

/// One `[host.proxy.pipelines.<name>]`: a data pipeline the proxy starts on an authenticated
/// request. Its bearer token is a secret, so it reaches the proxy through the environment
/// (`LABCTL_PIPELINE_TOKEN_<NAME>`), never through stack.toml.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The unit's base name; the proxy starts `<unit>.service`.
    pub unit: String,
    /// Least time between two accepted starts (`0s`: no limit).
    #[serde(default = "default_pipeline_min_interval")]
    pub min_interval: String,
}

fn default_pipeline_min_interval() -> String {
    s("1m")
}

impl Pipeline {
    /// The environment variable holding the bearer token of pipeline `name`:
    /// `LABCTL_PIPELINE_TOKEN_` and the name upper-cased, `-` as `_`.
    pub fn token_var(name: &str) -> String {
        format!(
            "LABCTL_PIPELINE_TOKEN_{}",
            name.to_ascii_uppercase().replace('-', "_")
        )
    }
}

component! {
    /// `[host.collector]`: host CPU/RAM/disk/network statistics over OTLP (`labctl agent collector`).
    HostCollector {
        /// The hosts it runs on (`local` and `[hosts.<name>]` names); default `["local"]`.
        #[serde(skip_serializing_if = "Option::is_none")]
        hosts: Option<Vec<String>> = None,
        /// Unit base name.
        unit: String = s("labctl-collector"),
        /// Reload instead of restart when the unit changes.
        reload_on_change: bool = false,
        /// Sampling and export interval.
        interval: String = s("15s"),
        /// OTLP/HTTP endpoint. Default: the OTel Collector's HTTP NodePort on this host,
        /// `http://127.0.0.1:<kube.otel-collector.http_node_port>`.
        otlp_endpoint: Option<String> = None,
        /// Extra environment for the unit.
        environment: BTreeMap<String, String> = BTreeMap::new(),
    }
}

component! {
    /// `[host.ingest]`: GitHub Issues journal entries into PostgreSQL (`labctl agent ingest`).
    Ingest {
        /// The hosts it runs on (`local` and `[hosts.<name>]` names); default `["local"]`.
        #[serde(skip_serializing_if = "Option::is_none")]
        hosts: Option<Vec<String>> = None,
        /// Unit base name.
        unit: String = s("labctl-ingest"),
        /// Reload instead of restart when the unit changes.
        reload_on_change: bool = false,
        /// GitHub repository (`owner/name`) whose issues are journal entries.
        repository: String = s("owner/journal"),
        /// Only issues with this label are ingested.
        label: String = s("journal"),
        /// Polling interval.
        interval: String = s("5m"),
        /// PostgreSQL connection (the password is the secret `postgres-password`). Default:
        /// `postgres://<kube.postgres.user>@127.0.0.1:<kube.postgres.node_port>/<kube.postgres.database>`.
        database_url: Option<String> = None,
        /// Extra environment for the unit.
        environment: BTreeMap<String, String> = BTreeMap::new(),
    }
}

/// One `[[host.gate.funnel]]` entry: a public Tailscale Funnel port and what it forwards to.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Funnel {
    /// Public port: Tailscale Funnel allows 443, 8443 and 10000.
    pub public_port: u16,
    /// Local port it forwards to: only the proxy's port is allowed.
    pub target_port: u16,
}

component! {
    /// `[host.gate]`: turns the Tailscale Funnel on while the proxy is healthy (`labctl agent gate`).
    Gate {
        /// The hosts it runs on (`local` and `[hosts.<name>]` names); default `["local"]`.
        #[serde(skip_serializing_if = "Option::is_none")]
        hosts: Option<Vec<String>> = None,
        /// Unit base name.
        unit: String = s("labctl-gate"),
        /// Reload instead of restart when the unit changes.
        reload_on_change: bool = false,
        /// Health-check interval.
        interval: String = s("10s"),
        /// Consecutive failed checks before the funnel is turned off.
        failures: u32 = 3,
        /// Public funnel entries. Default: public port 8443 to the proxy's `port`.
        funnel: Option<Vec<Funnel>> = None,
        /// Extra environment for the unit.
        environment: BTreeMap<String, String> = BTreeMap::new(),
    }
}

component! {
    /// `[host.openbao]`: the secret store (`bao server`).
    Openbao {
        /// The hosts it runs on (`local` and `[hosts.<name>]` names); default `["local"]`.
        #[serde(skip_serializing_if = "Option::is_none")]
        hosts: Option<Vec<String>> = None,
        /// Unit base name.
        unit: String = s("openbao"),
        /// Reload (SIGHUP) instead of restart when the unit changes. Off: storage and listener
        /// changes only take effect on a restart.
        reload_on_change: bool = false,
        /// The `bao` binary.
        binary: String = s("/usr/bin/bao"),
        /// Listen address (`host:port`) of the API, plain HTTP.
        listen: String = s("127.0.0.1:8200"),
        /// Port of the cluster listener raft talks on, on the same host as `listen`.
        cluster_port: u16 = 8201,
        /// Directory of the integrated (raft) storage.
        storage_path: String = s("/var/lib/openbao"),
        /// The raft node id; none uses the stack's name.
        node_id: Option<String> = None,
        /// Serve the web UI.
        ui: bool = true,
    }
}

component! {
    /// `[host.reading-sync]`: a timer-triggered sync of cloud data to local storage.
    ReadingSync {
        /// The hosts it runs on (`local` and `[hosts.<name>]` names); default `["local"]`.
        #[serde(skip_serializing_if = "Option::is_none")]
        hosts: Option<Vec<String>> = None,
        /// Unit base name (`<unit>.service` and `<unit>.timer`).
        unit: String = s("reading-sync"),
        /// Reload instead of restart when the unit changes (a oneshot has nothing to reload).
        reload_on_change: bool = false,
        /// The user's sync command.
        command: String = s("/usr/bin/rclone sync reading: /srv/reading"),
        /// `OnCalendar=` schedule.
        schedule: String = s("*-*-* 03:00:00"),
        /// Random delay added to each run.
        randomized_delay: String = s("10m"),
        /// Catch up a run missed while the host was off.
        persistent: bool = true,
        /// Extra environment for the unit.
        environment: BTreeMap<String, String> = BTreeMap::new(),
    }
}

/// A stack's own host units: `systemd-templates/<template>.<suffix>` render to `<unit>.<suffix>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtraHost {
    /// `false` removes the units.
    pub enabled: bool,
    /// Template stem (default: the component's name).
    pub template: Option<String>,
    /// Unit base name (default: the component's name).
    pub unit: Option<String>,
    /// Reload instead of restart when a unit changes.
    pub reload_on_change: bool,
    /// The hosts its units run on (`local` and `[hosts.<name>]` names); default `["local"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Free-form values handed to the templates as `c.values`.
    pub values: toml::Table,
}

impl Default for ExtraHost {
    fn default() -> Self {
        Self {
            enabled: true,
            template: None,
            unit: None,
            reload_on_change: false,
            hosts: None,
            values: toml::Table::new(),
        }
    }
}

/// Whether a git URL reaches its repository over ssh: `ssh://…`, `git+ssh://…`, or the scp-like
/// `[user@]host:path` (a colon before any slash, and no `://`).
pub fn is_ssh_url(url: &str) -> bool {
    if url.starts_with("ssh://") || url.starts_with("git+ssh://") {
        return true;
    }
    if url.contains("://") {
        return false;
    }
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => colon < slash && colon > 0,
        (Some(colon), None) => colon > 0,
        _ => false,
    }
}
