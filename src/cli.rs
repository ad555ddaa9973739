//! The command line: clap types only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Declarative homelab: one stack.toml renders Kubernetes manifests and systemd units, plans them
/// against the live cluster and host, and applies them.
#[derive(Debug, Parser)]
#[command(name = "labctl", version, propagate_version = true)]
pub struct Cli {
    /// The stack file.
    #[arg(
        long,
        global = true,
        env = "LABCTL_STACK",
        default_value = "stack.toml"
    )]
    pub stack: PathBuf,
    /// Never colour output (also: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Print what labctl does (backend request counts and timings).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// The kubeconfig to reach the cluster with (default: `KUBECONFIG`, `~/.kube/config`, then
    /// the in-cluster service account).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current one.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check stack.toml and its templates: every problem, or a one-line count of what renders.
    Validate,
    /// Render manifests and units, to a folder or as one stream on stdout.
    Render(RenderArgs),
    /// Show what apply would change.
    Plan(PlanArgs),
    /// Show the plan, ask, and make the live cluster and host match the stack.
    Apply(ApplyArgs),
    /// Run one of the host's long-running services (systemd units run these).
    Agent(AgentArgs),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Which plane(s) a command covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlaneArg {
    /// The Kubernetes cluster.
    Kube,
    /// systemd units on the host.
    Systemd,
}

/// `labctl render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Write `DIR/kube/<namespace>/<kind>-<name>.yaml` and `DIR/systemd/<unit>` instead of stdout.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Only this plane.
    #[arg(long)]
    pub plane: Option<PlaneArg>,
}

/// Output format of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// For programs (see docs/plan-json.md).
    Json,
}

/// `labctl plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Plan against an empty world: no cluster, no host.
    #[arg(long, conflicts_with = "base")]
    pub offline: bool,
    /// Plan against the same stack as committed at this git revision: no cluster, no host.
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Only this plane.
    #[arg(long)]
    pub plane: Option<PlaneArg>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Human)]
    pub output: Format,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Use the calling user's systemd manager (session bus, `$XDG_CONFIG_HOME/systemd/user`),
    /// as `host.scope = "user"` does.
    #[arg(long)]
    pub user: bool,
    /// Kube: confirm each object that differs locally with a server-side dry-run apply (exact
    /// defaulting; one request per differing object, none for unchanged ones).
    #[arg(long, conflicts_with_all = ["offline", "base"])]
    pub server_dry_run: bool,
    /// Kube: plan to delete PersistentVolumeClaims and `protect`ed components no longer rendered.
    #[arg(long)]
    pub prune_volumes: bool,
}

/// `labctl apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Apply without asking (required when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// Only this plane.
    #[arg(long)]
    pub plane: Option<PlaneArg>,
    /// Use the calling user's systemd manager (session bus, `$XDG_CONFIG_HOME/systemd/user`),
    /// as `host.scope = "user"` does.
    #[arg(long)]
    pub user: bool,
    /// Take over same-named resources this stack does not own (the plan marks them `!`).
    #[arg(long)]
    pub adopt: bool,
    /// Exit 0 when there were no changes, 2 when changes were applied, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Kube: confirm locally differing objects with a server-side dry-run apply first.
    #[arg(long)]
    pub server_dry_run: bool,
    /// Kube: take ownership of fields another field manager owns.
    #[arg(long)]
    pub force_conflicts: bool,
    /// Kube: delete and re-create objects whose immutable fields change (never a PVC).
    #[arg(long)]
    pub allow_replace: bool,
    /// Kube: also delete PersistentVolumeClaims and `protect`ed components no longer rendered.
    #[arg(long)]
    pub prune_volumes: bool,
    /// Kube: how long to wait for Deployments, StatefulSets and DaemonSets to roll out
    /// (`90s`, `5m`, `1h`).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub wait_timeout: std::time::Duration,
    /// Kube: do not wait for rollouts.
    #[arg(long)]
    pub no_wait: bool,
    /// systemd: how long a started unit must stay up before it counts as started (a service
    /// whose process exits at once fails only after its start job is done).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub settle: std::time::Duration,
}

/// `500ms`, `90s`, `5m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (as `90s`, `5m`)"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("`{s}` has an unknown unit (use ms, s, m or h)")),
    };
    Ok(std::time::Duration::from_millis(ms))
}

/// `labctl agent`: the services the host units run (docs/agents.md is the contract).
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Where to send OTLP traces, metrics and logs (overrides `OTEL_EXPORTER_OTLP_ENDPOINT`).
    #[arg(long, global = true, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Which agent.
    #[command(subcommand)]
    pub agent: AgentCommand,
}

/// The agents.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Webhooks, GitOps syncs and data pipelines over HTTP.
    Proxy(ProxyArgs),
    /// Tailscale Funnel on while the proxy is healthy, off otherwise.
    Gate(GateArgs),
    /// Host metrics (CPU, memory, disks, network, Tailscale, units) over OTLP.
    Collector(CollectorArgs),
    /// GitHub issues into journal entries in PostgreSQL.
    Ingest(IngestArgs),
}

/// `labctl agent proxy`.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Address to serve on, as `127.0.0.1:8085` or `[::1]:8085`.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: std::net::SocketAddr,
    /// The git checkout of the stack that pushes sync.
    #[arg(long, value_name = "DIR")]
    pub repo_dir: PathBuf,
    /// The branch whose pushes are applied.
    #[arg(long, value_name = "BRANCH")]
    pub branch: String,
}

/// `labctl agent gate`.
#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// How often to probe the proxy and read the funnel back (`15s`, `1m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// Consecutive failed probes before the funnel goes off.
    #[arg(long, value_name = "N")]
    pub failures: u32,
    /// The proxy's health URL; without it, health is unknown and the funnel stays off.
    #[arg(long, value_name = "URL")]
    pub health_url: Option<String>,
    /// A funnel to keep on while healthy, as `8443:8085` (public HTTPS port : local port).
    #[arg(long, value_name = "PUBLIC:TARGET")]
    pub funnel: Vec<String>,
}

/// `labctl agent collector`.
#[derive(Debug, Clone, Args)]
pub struct CollectorArgs {
    /// How often to collect (`15s`, `1m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// The proc filesystem to read (the DaemonSet mounts the host's at `/host/proc`).
    #[arg(long, value_name = "PATH", default_value = "/proc")]
    pub proc_path: PathBuf,
    /// The sys filesystem to read (the DaemonSet mounts the host's at `/host/sys`).
    #[arg(long, value_name = "PATH", default_value = "/sys")]
    pub sys_path: PathBuf,
    /// tailscaled's local API socket.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/var/run/tailscale/tailscaled.sock"
    )]
    pub tailscale_socket: PathBuf,
    /// The node's name (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
}

/// `labctl agent ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// The GitHub repository, as `owner/name`.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repository: String,
    /// Only issues with this label become journal entries.
    #[arg(long, value_name = "LABEL")]
    pub label: String,
    /// How often to sync (`5m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// The PostgreSQL database, as `postgres://user@host:5432/db` (password from `PGPASSWORD`).
    #[arg(long, value_name = "URL")]
    pub database_url: String,
    /// GitHub's REST API root (a GitHub Enterprise server's is `https://HOST/api/v3`).
    #[arg(long, value_name = "URL", default_value = "https://api.github.com")]
    pub github_api: String,
    /// Sync once and exit: 0 when the sync completed, 1 when it failed.
    #[arg(long)]
    pub once: bool,
}
