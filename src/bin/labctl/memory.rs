//! The binary's tricks: process-wide tuning of memory that depends on how the process starts
//! and which command it runs, kept out of the library (which behaves the same without them: the
//! tests run none). Each says what it gains, measured, and where: `benches/tricks.sh` runs the
//! benchmarks with `LABCTL_TRICKS=off` (or one trick off) beside the normal binary.

use labctl::cli::Command;

/// Whether `trick` runs. For the benchmarks that measure what each gains, `LABCTL_TRICKS=off`
/// turns them all off, and `LABCTL_TRICKS=-NAME,-NAME` the ones named (`huge-pages`,
/// `start-up-pages`). Reads the environment through libc (`getenv`), which
/// allocates nothing: the huge-pages hold runs before anything is set up.
fn enabled(trick: &str) -> bool {
    // SAFETY: a NUL-terminated name; the environment is not changed while labctl runs.
    let value = unsafe { libc::getenv(c"LABCTL_TRICKS".as_ptr()) };
    if value.is_null() {
        return true;
    }
    // SAFETY: a non-null result is a NUL-terminated string owned by the environment.
    let value = unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes();
    value != b"off"
        && !value
            .split(|b| *b == b',')
            .any(|t| t.strip_prefix(b"-") == Some(trick.as_bytes()))
}

/// The hook `.init_array` runs: see [`hold_huge_pages`].
pub extern "C" fn at_start() {
    if enabled("huge-pages") {
        hold_huge_pages();
    }
}

/// Tune the process for `command`, once it is known (before the library runs it).
pub fn for_command(command: &Command) {
    if reads_live_state(command) {
        release_huge_pages();
    }
}

/// The hook the library calls once an agent has settled ([`labctl::Hooks::agent_settled`]).
pub fn agent_settled() {
    if enabled("start-up-pages") {
        let kib = release_start_up_pages();
        tracing::debug!("unmapped {kib} KiB of the binary once settled");
    }
}

/// Whether [`hold_huge_pages`] disabled transparent huge pages, for [`release_huge_pages`].
static HUGE_PAGES_HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Disable transparent huge pages for this process until the command is known. Runs from
/// `.init_array`, before Rust's own start-up, which already allocates.
///
/// The allocator (mimalloc) asks the kernel to back its memory with huge pages. A plan of 1,000
/// live objects touches about 40 MB for the first time: in 4 KiB pages that is 9,100 page faults
/// and a fifth of its CPU time, in 2 MiB pages 640-980 (mimalloc against the glibc build, with
/// `hyperfine`: 88 against 110 ms, 1.19-1.26x, system time 25 against 49 ms). But a 2 MiB page
/// is resident as soon as one byte of it is, which would double an agent's resident set and
/// push an offline plan of 1,000 objects past its 50 MB. So only a command that reads live state
/// gets them back. Measured against `LABCTL_TRICKS=off` (`benches/tricks.sh`, one run): offline
/// plan 34 against 50 MB peak, the collector 9.1 against 20.1 MB resident, the idle proxy 11.4
/// against 21.3; a live plan the same within noise (104.5 against 111.3 ms), with 1,282 minor
/// faults against 764 for what Rust's start-up allocates before the command is known. When
/// the process already has them disabled (by its parent), that choice stands. Must not
/// allocate: nothing is set up yet.
extern "C" fn hold_huge_pages() {
    #[cfg(target_os = "linux")]
    if rustix::thread::transparent_huge_pages_are_disabled().is_ok_and(|off| !off)
        && rustix::thread::disable_transparent_huge_pages(true).is_ok()
    {
        HUGE_PAGES_HELD.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Give huge pages back after [`hold_huge_pages`]. Child processes (git) inherit the flag, so
/// they too get the system's setting back.
fn release_huge_pages() {
    #[cfg(target_os = "linux")]
    if HUGE_PAGES_HELD.swap(false, std::sync::atomic::Ordering::Relaxed) {
        // Failing leaves small pages: slower, nothing worse.
        let _ = rustix::thread::disable_transparent_huge_pages(false);
    }
}

/// A command that builds the live state of a cluster or host in memory: a plan that is not
/// offline nor against a git revision, and an apply.
fn reads_live_state(command: &Command) -> bool {
    match command {
        Command::Plan(args) => !args.offline && args.base.is_none(),
        Command::Apply(_) => true,
        _ => false,
    }
}

/// Unmap the binary's read-only pages, once the agent runs: returns the KiB unmapped.
///
/// The kernel maps a binary's code and constants in windows of up to 64 KiB around each page
/// touched, and labctl is one binary for every command: starting an agent (parsing the command
/// line, setting up logs and the exporter, connecting) touches code all over it, which the
/// agent's loop never runs again, yet it stays mapped and counted in the agent's resident
/// memory. Dropping those mappings (`MADV_DONTNEED`) once the agent is up (the collector: after
/// its first collection; the proxy: once it serves) leaves mapped only what the loop touches
/// again; the pages stay in the page cache, shared, and any page needed later is mapped back on
/// its first use (a minor fault, no I/O).
///
/// Measured (`benches/proxy.sh`, `benches/collector.sh`): the idle proxy's resident set 14.6 ->
/// 9.1 MB; the collector stays at 8.9 MB, under its 10 MB target, only with it.
///
/// Only mappings of the binary's own file that are private, not writable and hold no page of
/// their own (`Anonymous: 0 kB`: nothing relocated or copied on write) are dropped, so nothing is
/// lost: what comes back is the file's bytes, which is what was there.
fn release_start_up_pages() -> u64 {
    let (Ok(exe), Ok(smaps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/smaps"),
    ) else {
        return 0;
    };
    let exe = exe.to_string_lossy();
    let mut released = 0;
    for range in releasable(&smaps, &exe) {
        // SAFETY: the range is a whole mapping of the binary's file, private, read-only and
        // without anonymous pages: MADV_DONTNEED only drops its page-table entries, and every
        // later access maps the same file bytes again. No Rust reference is invalidated.
        let done = unsafe {
            libc::madvise(
                range.start as *mut libc::c_void,
                range.end - range.start,
                libc::MADV_DONTNEED,
            )
        };
        if done == 0 {
            released += (range.end - range.start) as u64 / 1024;
        }
    }
    released
}

/// The mappings of `exe` in `smaps` text that are private, not writable and without anonymous
/// pages. Unreadable text gives none.
fn releasable(smaps: &str, exe: &str) -> Vec<std::ops::Range<usize>> {
    use procfs_core::FromBufRead;
    use procfs_core::process::{MMPermissions, MMapPath, MemoryMaps};
    let Ok(maps) = MemoryMaps::from_buf_read(smaps.as_bytes()) else {
        return Vec::new();
    };
    maps.into_iter()
        .filter(|m| matches!(&m.pathname, MMapPath::Path(p) if p.as_os_str() == exe))
        .filter(|m| {
            m.perms.contains(MMPermissions::PRIVATE) && !m.perms.contains(MMPermissions::WRITE)
        })
        .filter(|m| m.extension.map.get("Anonymous") == Some(&0))
        .filter_map(|m| {
            Some(usize::try_from(m.address.0).ok()?..usize::try_from(m.address.1).ok()?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
00400000-00401000 r--p 00000000 fd:00 42 /usr/bin/labctl
Size:                  4 kB
Anonymous:             0 kB
00401000-01800000 r-xp 00001000 fd:00 42 /usr/bin/labctl
Size:              20476 kB
Anonymous:             0 kB
01800000-01a00000 r--p 01400000 fd:00 42 /usr/bin/labctl
Anonymous:             0 kB
01a00000-01a10000 r--p 01600000 fd:00 42 /usr/bin/labctl
Anonymous:            12 kB
01a10000-01a20000 rw-p 01610000 fd:00 42 /usr/bin/labctl
Anonymous:            64 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:00 43 /usr/lib/libc.so.6
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0 
Anonymous:          1024 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Anonymous:           132 kB
";

    #[test]
    fn only_the_binarys_read_only_pages_without_copies_are_released() {
        assert_eq!(
            releasable(SMAPS, "/usr/bin/labctl"),
            vec![
                0x40_0000..0x40_1000,
                0x40_1000..0x180_0000,
                0x180_0000..0x1a0_0000
            ],
            "relocated (anonymous) and writable mappings, and other files, stay"
        );
        assert!(releasable(SMAPS, "/usr/bin/other").is_empty());
    }

    #[test]
    fn released_pages_leave_the_resident_set_and_come_back_on_use() {
        // The resident bytes of this test binary's own file mappings.
        let resident = || {
            use procfs_core::FromBufRead;
            use procfs_core::process::{MMapPath, MemoryMaps};
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            let smaps = std::fs::read("/proc/self/smaps").unwrap();
            MemoryMaps::from_buf_read(smaps.as_slice())
                .unwrap()
                .into_iter()
                .filter(|m| matches!(&m.pathname, MMapPath::Path(p) if *p == exe))
                .map(|m| m.extension.map.get("Rss").copied().unwrap_or(0))
                .sum::<u64>()
        };
        let before = resident();
        let released = release_start_up_pages();
        let after = resident();
        assert!(released > 0);
        assert!(after < before, "resident {before} B -> {after} B");
        // That `resident` ran again after its own code was unmapped, and this test returns, is
        // the check that released pages come back on use: a page that did not would fault.
    }
}
