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

/// Run the agent `args` names until it stops; the process's exit code.
pub fn main(args: &AgentArgs) -> ExitCode {
    let otlp = args.otlp_endpoint.as_deref();
    match &args.agent {
        AgentCommand::Proxy(c) => runtime::start("proxy", otlp, |s| proxy::run(c.clone(), s)),
        AgentCommand::Gate(c) => runtime::start("gate", otlp, |s| gate::run(c.clone(), s)),
        AgentCommand::Collector(c) => {
            collector::tune_allocator();
            runtime::start_as(
                "collector",
                otlp,
                c.node_name.as_deref(),
                runtime::Threads::One,
                |s| collector::run(c.as_ref().clone(), s),
            )
        }
        AgentCommand::Ingest(c) => runtime::start("ingest", otlp, |s| ingest::run(c.clone(), s)),
    }
}
