//! The host's long-running services, run by the units labctl renders as `labctl agent <name>`.
//!
//! Each agent lives in its own room and is `run(config, shutdown)`; [`runtime`] is what they share
//! (signals, systemd's notify protocol, the stop deadline). An agent reuses the library (an agent
//! that applies calls `plan`/`apply`), never reaches into another agent, and never runs labctl as a
//! subprocess.

pub mod collector;
pub mod gate;
pub mod ingest;
pub mod proxy;
pub mod runtime;

use std::process::ExitCode;

use crate::cli::{AgentArgs, AgentCommand};

/// Run the agent `args` names until it stops; the process's exit code. `settled` is the
/// binary's hook for when the agent has settled ([`runtime::Shutdown::settled`]).
pub fn main(args: &AgentArgs, settled: Option<fn()>) -> ExitCode {
    let how = runtime::Start {
        otlp_endpoint: args.otlp_endpoint.as_deref(),
        settled,
        ..runtime::Start::default()
    };
    match &args.agent {
        AgentCommand::Proxy(c) => runtime::start_as("proxy", how, |s| proxy::run(c.clone(), s)),
        AgentCommand::Gate(c) => runtime::start_as("gate", how, |s| gate::run(c.clone(), s)),
        AgentCommand::Collector(c) => runtime::start_as(
            "collector",
            runtime::Start {
                host: c.node_name.as_deref(),
                threads: runtime::Threads::One,
                ..how
            },
            |s| collector::run(c.as_ref().clone(), s),
        ),
        AgentCommand::Ingest(c) => runtime::start_as("ingest", how, |s| ingest::run(c.clone(), s)),
    }
}
