//! The `stack.toml` schema: every table rejects unknown keys and every setting has a default that
//! reproduces the seed homelab, so a stack file only says what differs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::NotOfForm;

/// The whole `stack.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// `[stack]`: identity of the stack.
    pub stack: StackMeta,
    /// `[kube.*]`: components on the k3s cluster.
    #[serde(default)]
    pub kube: Kube,
    /// `[host.*]`: native services under systemd.
    #[serde(default)]
    pub host: Host,
    /// `[hosts.<name>]`: other machines whose systemd labctl manages over ssh (`[host]` is the
    /// machine labctl runs on, named `local` in `hosts = [...]` lists).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, RemoteHost>,
    /// `[secrets]`: where each secret the templates ask for comes from.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// `[health]`: checks every apply must pass, besides units staying up and rollouts completing.
    #[serde(default)]
    pub health: Health,
}

/// `[health]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Health {
    /// `[health.checks.<name>]`: each must pass after every apply (the command line's and the
    /// proxy's sync alike), or the apply fails naming it.
    pub checks: BTreeMap<String, Check>,
}

/// One `[health.checks.<name>]`: an HTTP URL that must answer 2xx, or a command that must exit 0,
/// tried until it passes or its timeout runs out.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// An `http://` or `https://` URL that must answer 2xx.
    #[serde(default)]
    pub url: Option<String>,
    /// A program and its arguments (no shell) that must exit 0.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// How long the check may take to pass (a restarted service needs a moment).
    #[serde(default = "default_check_timeout")]
    pub timeout: String,
}

fn default_check_timeout() -> String {
    s("30s")
}

/// `[stack]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StackMeta {
    /// The stack's name: a DNS-1123 label, scoping ownership labels and unit markers.
    pub name: String,
    /// The cluster namespace every namespaced object goes to (default: the stack's name).
    #[serde(default)]
    pub namespace: Option<String>,
    /// StorageClass for every PersistentVolumeClaim (k3s ships `local-path`).
    #[serde(default = "default_storage_class")]
    pub storage_class: String,
    /// Image that contains the `labctl` binary, used by the in-cluster collectors.
    #[serde(default = "default_labctl_image")]
    pub labctl_image: String,
}

fn default_storage_class() -> String {
    "local-path".into()
}

/// The image `make image` builds (and `k3s ctr images import` loads): no registry serves it.
fn default_labctl_image() -> String {
    concat!("localhost/labctl:", env!("CARGO_PKG_VERSION")).into()
}

impl StackMeta {
    /// The namespace, defaulting to the stack's name.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(&self.name)
    }
}

/// Resource requests (and a memory limit) for a container.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU request, a Kubernetes quantity (`100m`).
    pub cpu: String,
    /// Memory request, a Kubernetes quantity (`128Mi`).
    pub memory: String,
    /// Memory limit; none when unset. CPU is deliberately never limited (throttling hurts more
    /// than it protects on a single-node homelab).
    #[serde(default)]
    pub memory_limit: Option<String>,
}

impl Resources {
    fn new(cpu: &str, memory: &str, limit: &str) -> Self {
        Self {
            cpu: cpu.into(),
            memory: memory.into(),
            memory_limit: Some(limit.into()),
        }
    }
}

macro_rules! component {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize, Serialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            /// `false` removes the component and everything it renders.
            pub enabled: bool,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { enabled: true, $( $field: $default, )* }
            }
        }
    };
}

fn s(v: &str) -> String {
    v.to_string()
}

component! {
    /// `[kube.collectors]`: DaemonSet running `labctl agent collector` on every node.
    Collectors {
        /// Image override; empty uses `stack.labctl_image`.
        image: String = String::new(),
        /// How often host telemetry is gathered and exported.
        interval: String = s("15s"),
        /// Path of tailscaled's socket on the node, mounted read-only.
        tailscale_socket: String = s("/var/run/tailscale/tailscaled.sock"),
        /// Container resources.
        resources: Resources = Resources::new("20m", "32Mi", "96Mi"),
        /// Refuse to prune this component's objects without `--prune-volumes`.
        protect: bool = false,
    }
}

component! {
    /// `[kube.grafana]`: dashboards, with datasources for every store.
    Grafana {
        /// Container image.
        image: String = s("docker.io/grafana/grafana:11.4.0"),
        /// Replica count.
        replicas: u32 = 1,
        /// HTTP port inside the cluster.
        port: u16 = 3000,
        /// NodePort exposing the UI.
        node_port: u16 = 30000,
        /// Size of the PersistentVolumeClaim for `/var/lib/grafana`.
        storage: String = s("2Gi"),
        /// Admin user name (the password is the secret `grafana-admin-password`).
        admin_user: String = s("admin"),
        /// Container resources.
        resources: Resources = Resources::new("100m", "128Mi", "512Mi"),
        /// Refuse to prune this component's objects without `--prune-volumes`.
        protect: bool = false,
    }
}

component! {
    /// `[kube.loki]`: log aggregation, chunks in MinIO.
    Loki {
        /// Container image.
        image: String = s("docker.io/grafana/loki:3.3.2"),
        /// HTTP port.
        port: u16 = 3100,
        /// gRPC port.
        grpc_port: u16 = 9095,
        /// Size of the volume claim for the WAL and index cache.
        storage: String = s("10Gi"),
        /// How long logs are kept.
        retention: String = s("744h"),
        /// MinIO bucket holding chunks and index.
        bucket: String = s("loki"),
        /// Container resources.
        resources: Resources = Resources::new("100m", "256Mi", "1Gi"),
        /// Refuse to prune this component's objects without `--prune-volumes`.
        protect: bool = false,
    }
}

component! {
    /// `[kube.minio]`: S3-compatible object storage backing Prometheus/Thanos, Loki and Tempo.
    Minio {
        /// Container image.
        image: String = s("quay.io/minio/minio:RELEASE.2024-12-18T13-15-44Z"),
        /// Image of the MinIO client that creates the buckets.
        mc_image: String = s("quay.io/minio/mc:RELEASE.2024-11-21T17-21-54Z"),
        /// S3 API port.
        api_port: u16 = 9000,
        /// Console port.
        console_port: u16 = 9001,
        /// Size of the data PersistentVolumeClaim.
        storage: String = s("50Gi"),
        /// Buckets created at start-up besides the ones Loki, Tempo and Thanos name (those are
        /// always created, following their `bucket` settings).
        buckets: Vec<String> = Vec::new(),
        /// Root user name (the password is the secret `minio-root-password`).
        root_user: String = s("labctl"),
        /// Container resources.
        resources: Resources = Resources::new("100m", "256Mi", "1Gi"),
        /// Refuse to prune this component's objects without `--prune-volumes`.
        protect: bool = false,
    }
}

component! {
    /// `[kube.otel-collector]`: the OTLP hub: metrics to Prometheus, logs to Loki, traces to Tempo.
    OtelCollector {
        /// Container image.
        image: String = s("docker.io/otel/opentelemetry-collector-contrib:0.116.1"),
        /// Replica count.
        replicas: u32 = 1,
        /// OTLP gRPC port.
        grpc_port: u16 = 4317,
        /// OTLP HTTP port.
        http_port: u16 = 4318,
        /// NodePort for OTLP gRPC.
        grpc_node_port: u16 = 30317,
        /// NodePort for OTLP HTTP.
        http_node_port: u16 = 30318,
        /// The collector's own metrics (scraped by Prometheus).
        metrics_port: u16 = 8888,
        /// The health_check extension probed by the kubelet.
        health_port: u16 = 13133,
        /// Container resources.
        resources: Resources = Resources::new("100m", "128Mi", "512Mi"),
        /// Refuse to prune this component's objects without `--prune-volumes`.
        protect: bool = false,
    }
}

component! {
    /// `[kube.postgres]`: PostgreSQL with TimescaleDB and PostGIS.
    Postgres {
        /// Container image (TimescaleDB's HA image ships PostGIS).
        image: String = s("docker.io/timescale/timescaledb-ha:pg16.6-ts2.17.2-all"),
        /// PostgreSQL port.
        port: u16 = 5432,
        /// NodePort exposing PostgreSQL to the host.
        node_port: u16 = 30432,
        /// Size of the data volume claim.
        storage: String = s("20Gi"),
        /// Database created at first start.
        database: String = s("labctl"),
        /// Owner of that database (the password is the secret `postgres-password`).
        user: String = s("labctl"),
        /// Extensions created in the database at first start.
        extensions: Vec<String> = vec![s("timescaledb"), s("postgis")],
        /// Container resources.
        resources: Resources = Resources::new("250m", "512Mi", "2Gi"),
        /// Refuse to prune this component's objects without `--prune-volumes`.
        protect: bool = true,
    }
}

component! {
    /// `[kube.prometheus]`: metrics, with a Thanos sidecar shipping blocks to MinIO.
    Prometheus {
        /// Container image.
        image: String = s("quay.io/prometheus/prometheus:v3.1.0"),
        /// HTTP port.
        port: u16 = 9090,
        /// Size of the TSDB PersistentVolumeClaim.
        storage: String = s("20Gi"),
        /// Local retention (older blocks live in MinIO via Thanos).
        retention: String = s("15d"),
        /// Default scrape interval.
        scrape_interval: String = s("30s"),
        /// Container resources.
        resources: Resources = Resources::new("200m", "512Mi", "2Gi"),
        /// Refuse to prune this component's objects without `--prune-volumes`.
        protect: bool = false,
    }
}

component! {
    /// `[kube.tempo]`: distributed tracing, blocks in MinIO.
    Tempo {
        /// Container image.
        image: String = s("docker.io/grafana/tempo:2.6.1"),
        /// HTTP port.
        port: u16 = 3200,
        /// Internal gRPC port.
        grpc_port: u16 = 9095,
        /// Distributor's OTLP gRPC receiver.
        otlp_grpc_port: u16 = 4317,
        /// Distributor's OTLP HTTP receiver.
        otlp_http_port: u16 = 4318,
        /// Size of the WAL volume claim.
        storage: String = s("10Gi"),
        /// How long traces are kept (a Go duration: h, m, s).
        retention: String = s("336h"),
        /// MinIO bucket holding trace blocks.
        bucket: String = s("tempo"),
        /// Container resources.
        resources: Resources = Resources::new("100m", "256Mi", "1Gi"),
        /// Refuse to prune this component's objects without `--prune-volumes`.
        protect: bool = false,
    }
}

component! {
    /// `[kube.thanos]`: long-term metrics: store gateway and query over MinIO.
    Thanos {
        /// Container image (also used for the Prometheus sidecar).
        image: String = s("quay.io/thanos/thanos:v0.37.2"),
        /// HTTP port of query and store.
        http_port: u16 = 10902,
        /// gRPC port of sidecar, store and query.
        grpc_port: u16 = 10901,
        /// Size of the store gateway's cache volume claim.
        storage: String = s("10Gi"),
        /// MinIO bucket holding Prometheus blocks.
        bucket: String = s("thanos"),
        /// Container resources (per container).
        resources: Resources = Resources::new("100m", "256Mi", "1Gi"),
        /// Refuse to prune this component's objects without `--prune-volumes`.
        protect: bool = false,
    }
}

/// A stack's own kube component: its templates live in `templates/<template>/`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtraKube {
    /// `false` removes the component.
    pub enabled: bool,
    /// Template folder (default: the component's name).
    pub template: Option<String>,
    /// Free-form values handed to the templates as `c.values`.
    pub values: toml::Table,
    /// Refuse to prune this component's objects without `--prune-volumes`.
    pub protect: bool,
}

impl Default for ExtraKube {
    fn default() -> Self {
        Self {
            enabled: true,
            template: None,
            values: toml::Table::new(),
            protect: false,
        }
    }
}

/// `[kube]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kube {
    /// `[kube.collectors]`.
    pub collectors: Collectors,
    /// `[kube.grafana]`.
    pub grafana: Grafana,
    /// `[kube.loki]`.
    pub loki: Loki,
    /// `[kube.minio]`.
    pub minio: Minio,
    /// `[kube.otel-collector]`.
    #[serde(rename = "otel-collector")]
    pub otel_collector: OtelCollector,
    /// `[kube.postgres]`.
    pub postgres: Postgres,
    /// `[kube.prometheus]`.
    pub prometheus: Prometheus,
    /// `[kube.tempo]`.
    pub tempo: Tempo,
    /// `[kube.thanos]`.
    pub thanos: Thanos,
    /// `[kube.extra.<name>]`: the stack's own components.
    pub extra: BTreeMap<String, ExtraKube>,
}

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

/// One `[secrets]` entry: exactly one source. `key` goes with `bao` only.
///
/// Kept as optional fields rather than an enum so that a misspelt source is an unknown key the
/// parser locates (`unknown field \`vault\``), and validation says which combination is wrong.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// A KV version 2 secret in OpenBao: `<mount>/<path>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bao: Option<String>,
    /// The field of that secret (default: the secret's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// An environment variable of the labctl process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A file holding the value (one trailing newline is dropped); relative to the stack's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Where one secret's value comes from, checked: what [`SecretSource`] means.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretFrom {
    /// Field `key` of the KV version 2 secret at `path` in the mount `mount`.
    Bao {
        /// The KV v2 mount (`secret`).
        mount: String,
        /// The secret's path inside the mount (`homelab/grafana`).
        path: String,
        /// The field.
        key: String,
    },
    /// The environment variable.
    Env(String),
    /// The file, as written (relative to the stack's folder unless absolute).
    File(String),
}

impl std::fmt::Display for SecretFrom {
    /// As the user would write it in `[secrets]`, so a message points back at the declaration.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretFrom::Bao { mount, path, key } => {
                write!(f, "{{ bao = \"{mount}/{path}\", key = \"{key}\" }}")
            }
            SecretFrom::Env(v) => write!(f, "{{ env = \"{v}\" }}"),
            SecretFrom::File(p) => write!(f, "{{ file = \"{p}\" }}"),
        }
    }
}

/// The KV v2 mount every default secret lives in: the one `bao server -dev` and the OpenBao docs
/// set up.
pub const DEFAULT_BAO_MOUNT: &str = "secret";

impl SecretSource {
    /// The one source this entry names, for the secret `name` (the default `key`).
    ///
    /// # Errors
    /// What is wrong with the entry, lowercase, names in backticks, for a validation problem.
    pub fn from(&self, name: &str) -> Result<SecretFrom, NotOfForm> {
        let given: Vec<&str> = [
            ("bao", self.bao.is_some()),
            ("env", self.env.is_some()),
            ("file", self.file.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        match given.as_slice() {
            [] if self.key.is_some() => {
                return Err(
                    "`key` is set but `bao` is not: `key` names a field of an OpenBao secret"
                        .into(),
                );
            }
            [] => return Err("no source: expected `bao`, `env` or `file`".into()),
            [_] => {}
            many => {
                return Err(NotOfForm(format!(
                    "more than one source ({}): give exactly one",
                    many.iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if self.key.is_some() && self.bao.is_none() {
            return Err("`key` only goes with `bao`".into());
        }
        if let Some(b) = &self.bao {
            let b = b.trim_matches('/');
            let Some((mount, path)) = b
                .split_once('/')
                .filter(|(m, p)| !m.is_empty() && !p.is_empty())
            else {
                return Err(NotOfForm(format!(
                    "`bao = \"{b}\"` must be `<mount>/<path>`, such as \"{DEFAULT_BAO_MOUNT}/homelab\""
                )));
            };
            if path
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            {
                return Err(NotOfForm(format!(
                    "`bao = \"{b}\"` has an empty, `.` or `..` path segment"
                )));
            }
            let key = self.key.clone().unwrap_or_else(|| name.to_string());
            if key.is_empty() {
                return Err("`key` is empty".into());
            }
            return Ok(SecretFrom::Bao {
                mount: mount.to_string(),
                path: path.to_string(),
                key,
            });
        }
        if let Some(v) = &self.env {
            if v.is_empty() || v.contains(['=', '\0']) {
                return Err(NotOfForm(format!(
                    "`env = \"{v}\"` is not an environment variable name"
                )));
            }
            return Ok(SecretFrom::Env(v.clone()));
        }
        // Exactly one source was given and it is neither `bao` nor `env`.
        let p = self.file.clone().unwrap_or_default();
        if p.is_empty() {
            return Err("`file` is empty".into());
        }
        Ok(SecretFrom::File(p))
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

impl Stack {
    /// Fill every setting whose default comes from another component's settings, so that every
    /// consumer (templates, agents, validation) reads the effective value and a default follows
    /// its source; a setting the stack writes stays as written. [`super::parse`] calls this once,
    /// before validation; docs/stack.md lists each with where it comes from.
    pub fn derive_defaults(&mut self) {
        let k = &self.kube;
        let h = &mut self.host;
        h.collector
            .otlp_endpoint
            .get_or_insert_with(|| format!("http://127.0.0.1:{}", k.otel_collector.http_node_port));
        h.ingest.database_url.get_or_insert_with(|| {
            format!(
                "postgres://{}@127.0.0.1:{}/{}",
                k.postgres.user, k.postgres.node_port, k.postgres.database
            )
        });
        let proxy_port = h.proxy.port;
        h.gate.funnel.get_or_insert_with(|| {
            vec![Funnel {
                public_port: 8443,
                target_port: proxy_port,
            }]
        });
        let ssh = is_ssh_url(&h.proxy.repository);
        h.proxy.deploy_key.get_or_insert(ssh);
    }

    /// Where the secret `name` comes from: its `[secrets]` entry, else the default for a stack
    /// that runs OpenBao (field `name` of `secret/<stack name>`), else nothing. `Err` carries the
    /// declaration's problem (validation reports it).
    pub fn secret_from(&self, name: &str) -> Option<Result<SecretFrom, NotOfForm>> {
        if let Some(decl) = self.secrets.get(name) {
            return Some(decl.from(name));
        }
        self.host.openbao.enabled.then(|| {
            Ok(SecretFrom::Bao {
                mount: DEFAULT_BAO_MOUNT.into(),
                path: self.stack.name.clone(),
                key: name.to_string(),
            })
        })
    }
}
