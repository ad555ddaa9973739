//! The fuzz targets' seed corpora (`fuzz/corpus/<target>/`) and every crash input a fuzzer found
//! (`fuzz/regressions/<target>/`, fixed since), replayed through the same entry points the
//! targets call (`labctl::fuzz`) on the suite's ordinary build: a crash that comes back fails
//! here without a fuzzer. `scripts/fuzz.sh MINUTES` is the fuzzing itself.

use std::path::Path;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file() && p.file_name().is_none_or(|n| n != ".gitkeep"));
    v.sort();
    v
}

#[test]
fn every_seed_and_saved_crash_passes_its_target() {
    let root = crate::support::repo().join("fuzz");
    let mut replayed = 0;
    for (name, target) in labctl::fuzz::TARGETS {
        let seeds = inputs(&root.join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz target `{name}` has no seed corpus");
        assert!(
            root.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz target `{name}` has no fuzz_targets/{name}.rs"
        );
        for input in seeds
            .iter()
            .chain(&inputs(&root.join("regressions").join(name)))
        {
            let data = std::fs::read(input).unwrap();
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "`{name}` panicked on {}", input.display());
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} inputs");
}

/// The first finding (`template_values`): a line break in a host service's setting went into its
/// unit file and started a directive of its own. Now refused, naming the key.
#[test]
fn a_line_break_in_a_host_setting_is_refused_naming_the_key() {
    let text = std::fs::read_to_string(crate::support::repo().join("stack.toml"))
        .unwrap()
        .replace(
            "command = \"/usr/bin/rclone sync reading: /srv/reading\"",
            "command = \"/usr/bin/rclone sync\\nExecStartPre=/bin/false\"",
        );
    let s = crate::support::Stack::new(&text);
    s.labctl(&["validate"])
        .run()
        .code(1)
        .stderr_has("`host.reading-sync.command` holds a control character ('\\n')");
}
