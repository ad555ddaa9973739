//! The reference in docs/stack.md names every setting the schema has; generated tables are current.

use std::path::Path;

use serde_json::Value;

fn keys(prefix: &str, v: &Value, out: &mut Vec<String>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            // Tables are documented by their header, leaves by their key in that table's section.
            out.push(
                if child.is_object()
                    && !["resources", "environment", "values"].contains(&k.as_str())
                {
                    format!("[{path}")
                } else {
                    path.clone()
                },
            );
            // Free-form tables: their keys are the user's.
            if !["extra", "environment", "values", "resources"].contains(&k.as_str()) {
                keys(&path, child, out);
            }
        }
    }
}

#[test]
fn every_setting_is_documented() {
    let stack = labctl::stack::parse(Path::new("stack.toml"), "[stack]\nname = \"lab\"\n").unwrap();
    let mut all = Vec::new();
    keys("", &serde_json::to_value(&stack).unwrap(), &mut all);
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/stack.md"))
        .unwrap();
    let mut missing = Vec::new();
    for path in &all {
        if path.starts_with('[') {
            if !doc.contains(path.as_str()) {
                missing.push(path.clone());
            }
            continue;
        }
        let (table, key) = path.rsplit_once('.').unwrap_or(("", path));
        let table_ok = table.is_empty() || doc.contains(&format!("[{table}]"));
        if !(table_ok && doc.contains(&format!("`{key}`"))) {
            missing.push(path.clone());
        }
    }
    assert!(missing.is_empty(), "not in docs/stack.md: {missing:?}");
}

/// The list merge types compiled in for offline plans (`src/plan/kube/compiled.rs`) are what the
/// generator makes of the recorded real server's table: neither the table nor the generator can
/// change without the other.
#[test]
fn the_compiled_list_types_are_generated_from_the_recorded_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(root.join("scripts/gen_list_types.py"))
        .output()
        .expect("python3 runs scripts/gen_list_types.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compiled = std::fs::read_to_string(root.join("src/plan/kube/compiled.rs")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == compiled,
        "src/plan/kube/compiled.rs is stale: run `scripts/gen_list_types.py > src/plan/kube/compiled.rs`"
    );
}
