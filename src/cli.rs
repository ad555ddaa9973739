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
}
