//! The labctl binary: the library's command line, with the binary's own memory tricks around it
//! ([`memory`]) and its ending on a panic ([`panic`]: one line, exit 70).

mod memory;
mod panic;

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc rather than glibc's allocator: a plan of 1,000 live objects is about 20% faster with
/// it (`benches/kube.sh`), mostly because it backs its memory with transparent huge pages where
/// the command allows them (see `memory::hold_huge_pages`); glibc does so only when told at
/// start-up through `GLIBC_TUNABLES`.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs before Rust's start-up (which allocates the main thread's name), so that no memory is
/// touched before huge pages are held back.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static AT_START: extern "C" fn() = memory::at_start;

fn main() -> ExitCode {
    panic::install();
    let cli = labctl::cli::Cli::parse();
    memory::for_command(&cli.command);
    panic::guard(|| {
        labctl::run(
            cli,
            labctl::Hooks {
                agent_settled: Some(memory::agent_settled),
            },
        )
    })
}
