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

mod host;
mod secrets;

pub use host::*;
pub use secrets::*;

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
