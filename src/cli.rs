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
        default_value = "stack.toml",
        help_heading = GLOBAL
    )]
    pub stack: PathBuf,
    /// Never colour output (also: the NO_COLOR environment variable).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub no_color: bool,
    /// Print what labctl does (backend request counts and timings).
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub verbose: bool,
    /// `labctl --kubeconfig FILE plan` (before the command) keeps working: hidden, as the option
    /// belongs to the commands that reach a cluster.
    #[arg(long = "kubeconfig", value_name = "FILE", hide = true)]
    pub kubeconfig_before_command: Option<PathBuf>,
    /// As `kubeconfig_before_command`, for `--context`.
    #[arg(long = "context", value_name = "NAME", hide = true)]
    pub context_before_command: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The help heading of the options every command takes, apart from the command's own.
const GLOBAL: &str = "Global options";

/// How to reach the cluster: only on the commands that reach one (`plan`, `apply`).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Cluster options")]
pub struct ClusterArgs {
    /// The kubeconfig to reach the cluster with (default: `KUBECONFIG`, `~/.kube/config`, then
    /// the in-cluster service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current one.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl Cli {
    /// The cluster options of the command, when it is one that reaches a cluster.
    pub fn cluster(&self) -> ClusterArgs {
        let own = match &self.command {
            Command::Plan(a) => a.cluster.clone(),
            Command::Apply(a) => a.cluster.clone(),
            Command::ForceUnlock(a) => a.cluster.clone(),
            Command::Rollback(a) => a.cluster.clone(),
            _ => ClusterArgs::default(),
        };
        ClusterArgs {
            kubeconfig: own.kubeconfig.or(self.kubeconfig_before_command.clone()),
            context: own.context.or(self.context_before_command.clone()),
        }
    }
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
    /// Show the plan, ask, and make the live cluster and host match the stack; or apply a
    /// saved plan (`labctl apply FILE`) exactly, without asking.
    Apply(ApplyArgs),
    /// From a fresh host to a secret store `labctl apply` reads: start OpenBao (its unit
    /// alone), initialise and unseal it, fill every secret the stack needs, give labctl a token
    /// that reads only them, and clone the proxy's repository. Run again, it only fills what is
    /// missing; `--unseal` unseals it after a reboot.
    Bootstrap(BootstrapArgs),
    /// Remove the stack's apply lock when its holder is gone and cannot release it.
    ForceUnlock(ForceUnlockArgs),
    /// List the stack's generations on this host: every apply, when, by whom, and how it ended.
    History(HistoryArgs),
    /// Apply the stack as it was at a generation (default: the good one before the last), after
    /// showing the plan as `apply` does.
    Rollback(RollbackArgs),
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
    /// Write `DIR/kube/<namespace>/<kind>-<name>.yaml` (`_cluster` for cluster-scoped objects) and
    /// `DIR/systemd/<unit>` instead of stdout. The folder is labctl's: files it wrote before and
    /// no longer renders are removed; other files are left alone and named.
    #[arg(short = 'd', long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// The old spelling of `--output-dir`, kept for one release (`-o` is a format for `plan`).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        hide = true,
        conflicts_with = "output_dir"
    )]
    pub output_deprecated: Option<PathBuf>,
    /// Only this plane.
    #[arg(long)]
    pub plane: Option<PlaneArg>,
    /// Render without secret values: each is replaced by `(redacted secret <name>)`, and no
    /// secret is read. For looking at the output, never for applying it.
    #[arg(long)]
    pub redact: bool,
}

impl RenderArgs {
    /// The output folder, by either spelling.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.output_dir
            .as_deref()
            .or(self.output_deprecated.as_deref())
    }
}

/// Printed when `render -o DIR` is used.
pub const RENDER_O_DEPRECATED: &str = "warning: `render -o DIR`/`--output DIR` is deprecated and \
     goes away in the next release: use `--output-dir DIR` (`-d DIR`)";

/// Output format of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// For programs (see docs/plan-json.md).
    Json,
    /// For a pull-request comment (see docs/ci.md).
    Markdown,
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
    /// Exit 0 when there are no changes, 2 when there are, 3 when the server refuses some of
    /// them (`--server-dry-run`), 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Use the calling user's systemd manager (session bus, `$XDG_CONFIG_HOME/systemd/user`),
    /// as `host.scope = "user"` does.
    #[arg(long)]
    pub user: bool,
    /// Kube: check each change with a server-side dry-run apply: the plan shows what the server
    /// would store, and a change it refuses as failing (one request per change, none for
    /// unchanged objects).
    #[arg(long, conflicts_with_all = ["offline", "base"])]
    pub server_dry_run: bool,
    /// Kube: plan to delete PersistentVolumeClaims and `protect`ed components no longer rendered.
    #[arg(long)]
    pub prune_volumes: bool,
    /// Also write the plan to FILE with what it was made from (each object's resourceVersion or
    /// file hash; no secret value), for `labctl apply FILE`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["offline", "base"])]
    pub out: Option<PathBuf>,
    /// How many hosts (`[hosts.<name>]`) to observe at once.
    #[arg(long, value_name = "N", default_value_t = crate::plan::DEFAULT_HOSTS_CONCURRENCY)]
    pub hosts_concurrency: usize,
    #[command(flatten)]
    pub select: SelectArgs,
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `--target` / `--exclude`: cut a plan down (plan and apply).
#[derive(Debug, Clone, Default, Args)]
pub struct SelectArgs {
    /// Only the resources whose id (as the plan prints it) matches this glob, and what they
    /// depend on: `--target 'Deployment homelab/*'`, `--target 'unit labctl-*'` (repeatable).
    #[arg(long, value_name = "ID")]
    pub target: Vec<String>,
    /// Leave out the resources whose id matches this glob, and what depends on them
    /// (repeatable).
    #[arg(long, value_name = "ID")]
    pub exclude: Vec<String>,
}

/// `labctl bootstrap`.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Where OpenBao's unseal keys and root token are written when bootstrap initialises it
    /// (JSON as `bao operator init -format=json` prints it, owner-only, refused if the file
    /// exists); `--unseal` reads the keys from it. Without it they are shown once on a terminal.
    #[arg(long, value_name = "FILE")]
    pub keys_file: Option<PathBuf>,
    /// How many unseal keys to make (1 suits a one-person lab; more, held by several people,
    /// need `--key-threshold` of them to unseal).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub key_shares: u32,
    /// How many unseal keys it takes to unseal.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub key_threshold: u32,
    /// Only unseal OpenBao (it seals itself when it restarts), with the keys of `--keys-file`
    /// or keys typed on a terminal; change nothing else.
    #[arg(long)]
    pub unseal: bool,
    /// Ask nothing: apply the OpenBao unit without asking, and fail naming the secrets that
    /// cannot be generated and are not in their `LABCTL_SECRET_<NAME>` variable.
    #[arg(short, long)]
    pub yes: bool,
    /// Use the calling user's systemd manager, as `host.scope = "user"` does.
    #[arg(long)]
    pub user: bool,
    /// How long to wait for OpenBao to answer once its unit runs.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub wait_timeout: std::time::Duration,
    /// How long the started OpenBao unit must stay up before it counts as started.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub settle: std::time::Duration,
    /// How long to wait for another apply of the stack to release its lock.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
}

/// `labctl force-unlock`.
#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    /// Only this plane's lock.
    #[arg(long)]
    pub plane: Option<PlaneArg>,
    /// The user manager's host lock, as `host.scope = "user"` does.
    #[arg(long)]
    pub user: bool,
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `labctl apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `labctl plan --out FILE`: applied exactly, without asking, or refused
    /// when anything it read changed since (the options that shape a plan come from the file).
    #[arg(
        value_name = "FILE",
        conflicts_with_all = ["plane", "user", "server_dry_run", "prune_volumes", "target", "exclude", "kubeconfig", "context"]
    )]
    pub plan_file: Option<PathBuf>,
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
    /// Kube: how many changes of one ordering tier to send at once.
    #[arg(long, value_name = "N", default_value_t = crate::apply::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// How many hosts (`[hosts.<name>]`) to observe and apply at once.
    #[arg(long, value_name = "N", default_value_t = crate::plan::DEFAULT_HOSTS_CONCURRENCY)]
    pub hosts_concurrency: usize,
    /// systemd: how long a started unit must stay up before it counts as started (a service
    /// whose process exits at once fails only after its start job is done).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub settle: std::time::Duration,
    /// How long to wait for another apply of the stack to release its lock (`0`: fail at once,
    /// naming the holder).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// How long the cluster lock outlives this apply if it stops renewing it (killed): another
    /// apply takes it over after that.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub lock_lease: std::time::Duration,
    /// When a change or a health gate fails, apply the last good generation again (both
    /// planes) and check its gates; the exit code is non-zero either way.
    #[arg(long)]
    pub rollback_on_failure: bool,
    #[command(flatten)]
    pub select: SelectArgs,
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `labctl history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// `human` (default) or `json`.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = HistoryFormat::Human)]
    pub output: HistoryFormat,
    /// The generations kept for the user manager, as `host.scope = "user"` does.
    #[arg(long)]
    pub user: bool,
}

/// How `labctl history` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryFormat {
    /// A table for people.
    Human,
    /// One JSON document (docs/plan-json.md's conventions).
    Json,
}

/// `labctl rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The generation to apply again (`labctl history` lists them); default: the newest good
    /// generation before the newest good one.
    pub generation: Option<u64>,
    /// Apply without asking.
    #[arg(long)]
    pub yes: bool,
    /// Use the user manager, as `host.scope = "user"` does.
    #[arg(long)]
    pub user: bool,
    /// How long to wait for workloads to roll out.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub wait_timeout: std::time::Duration,
    /// How long a started unit must stay up (and not be restarted) to count as started.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub settle: std::time::Duration,
    /// How long to wait for another writer's lock.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// A duration flag, parsed by humantime: `500ms`, `90s`, `5m`, `1h30m`, `2 days`, or plain
/// seconds. Clap names the flag when this fails.
///
/// # Errors
/// [`BadDuration`] saying why `s` is not a duration, or that it is too long to represent.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, BadDuration> {
    let s = s.trim();
    // Plain seconds were always accepted (`--settle 3`); humantime insists on a unit.
    let with_unit;
    let text = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        with_unit = format!("{s}s");
        &with_unit
    } else {
        s
    };
    humantime::parse_duration(text).map_err(|e| {
        BadDuration(match e {
            humantime::DurationError::NumberOverflow => {
                format!("`{s}` is too long a duration (the most is about 584 billion years)")
            }
            humantime::DurationError::Empty => {
                "a duration is needed, as `90s`, `5m` or `1h30m`".into()
            }
            other => format!("`{s}` is not a duration ({other}); use `90s`, `5m`, `1h30m`"),
        })
    })
}

/// Why a duration flag's value is not a duration, in the user's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadDuration(pub String);

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
    Collector(Box<CollectorArgs>),
    /// GitHub issues into journal entries in PostgreSQL.
    Ingest(IngestArgs),
    /// Put the previous proxy back (run by the proxy's dead-man switch, not by people).
    #[command(hide = true)]
    Rescue(RescueArgs),
}

/// `labctl agent rescue`.
#[derive(Debug, Clone, Args)]
pub struct RescueArgs {
    /// The proxy's state folder, where its armed switch is.
    #[arg(long)]
    pub state_dir: PathBuf,
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
    /// The stack file inside `--repo-dir` (its `[host.proxy.pipelines.*]`, `host.scope` and
    /// `host.ingest` are read at start).
    #[arg(long, value_name = "PATH", default_value = "stack.toml")]
    pub stack_file: PathBuf,
    /// Where remembered deliveries and the pending sync are kept (default: systemd's
    /// `STATE_DIRECTORY`, else `<repo-dir>/.git/labctl-proxy`, writable under the unit's sandbox).
    #[arg(long, value_name = "DIR", env = "STATE_DIRECTORY")]
    pub state_dir: Option<PathBuf>,
    /// Largest request body accepted, in bytes (GitHub caps webhook payloads at 25 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = 25 * 1024 * 1024)]
    pub body_limit: usize,
    /// How long a client may take to send a request's headers, and then its body.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub read_timeout: std::time::Duration,
    /// Most connections served at once; further ones wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
    /// How long a sync under way may run on after SIGTERM; past that it is left where it is,
    /// and the next start syncs the commit again. Keep it under the runtime's 20 s stop deadline.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub sync_grace: std::time::Duration,
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
    /// Consecutive healthy probes before the funnel goes (back) on.
    #[arg(long, value_name = "M", default_value_t = 2)]
    pub successes: u32,
    /// The `tailscale` command line tool.
    #[arg(long, value_name = "PATH", default_value = "tailscale")]
    pub tailscale_bin: PathBuf,
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
    /// Where the host's `/` is, for measuring its filesystems (the DaemonSet mounts it at
    /// `/host/root`).
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub root_path: PathBuf,
    /// A pseudo filesystem type to measure too (`tmpfs`, `overlay`; repeatable). Without it only
    /// filesystems holding the host's data are measured.
    #[arg(long, value_name = "TYPE")]
    pub filesystem_type: Vec<String>,
    /// Report `labctl.unit.active` for the units labctl rendered, read from this manager.
    #[arg(long, value_name = "MANAGER")]
    pub systemd: Option<UnitsScope>,
    /// With `--systemd`: only units of this stack (default: every labctl stack's).
    #[arg(long, value_name = "NAME", requires = "systemd")]
    pub stack_name: Option<String>,
    /// With `--systemd`: the folder labctl writes unit files to (default: the manager's usual one).
    #[arg(long, value_name = "DIR", requires = "systemd")]
    pub unit_dir: Option<PathBuf>,
    /// Also serve the latest collection as Prometheus text on `GET /metrics` here.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<std::net::SocketAddr>,
}

/// Which systemd manager the collector asks about labctl's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnitsScope {
    /// The system manager, over the system bus.
    System,
    /// The user's manager, over the session bus.
    User,
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
