use std::process::ExitCode;

/// mimalloc rather than glibc's allocator: a plan of 1,000 live objects is about 20% faster with
/// it (`benches/kube.sh`), mostly because it backs its memory with transparent huge pages where
/// the command allows them (see `labctl::hold_huge_pages`); glibc does so only when told at
/// start-up through `GLIBC_TUNABLES`.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs before Rust's start-up (which allocates the main thread's name), so that no memory is
/// touched before huge pages are held back.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static HOLD_HUGE_PAGES: extern "C" fn() = labctl::hold_huge_pages;

fn main() -> ExitCode {
    labctl::run()
}
