//! The alert rules: `promtool check rules` and `promtool test rules`, and each alert's row in
//! docs/dashboards.md.

use super::*;

/// The rendered rules and the promtool tests in a folder of their own.
fn rules_dir(rules: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    for e in std::fs::read_dir(repo().join("tests/fixtures/rules")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn promtool(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn alert_rules_pass_promtool_check_and_every_alert_fires_and_stays_silent_in_its_tests() {
    require(
        "promtool",
        "apt-get install prometheus (Debian's package has promtool)",
    );
    let text = Rendered::bundled().rules();
    let all = rules(&text);
    assert!(all.len() >= 13, "{all:#?}");
    for r in &all {
        assert!(
            ["critical", "warning"].contains(
                &r.labels
                    .get("severity")
                    .map(String::as_str)
                    .unwrap_or_default()
            ),
            "{r:?}"
        );
        assert!(!r.annotations["summary"].is_empty(), "{r:?}");
        let anchor = format!("docs/dashboards.md#{}", r.alert.to_lowercase());
        assert!(r.annotations["description"].ends_with(&anchor), "{r:?}");
    }
    let dir = rules_dir(&text);
    let (code, out) = promtool(dir.path(), &["check", "rules", "rules.yml"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", all.len())),
        "{out}"
    );

    // Every alert is named in a case that expects it and in one that expects nothing.
    let tests: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(dir.path().join("labctl.test.yml")).unwrap(),
    )
    .unwrap();
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for t in tests["tests"].as_array().unwrap() {
        for c in t["alert_rule_test"].as_array().unwrap() {
            let name = c["alertname"].as_str().unwrap().to_string();
            if c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                fires.insert(name);
            } else {
                silent.insert(name);
            }
        }
    }
    let names: BTreeSet<String> = all.iter().map(|r| r.alert.clone()).collect();
    assert_eq!(fires, names, "alerts without a case where they fire");
    assert_eq!(
        silent, names,
        "alerts without a case where they stay silent"
    );
    let (code, out) = promtool(dir.path(), &["test", "rules", "labctl.test.yml"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // The tests can fail: a unit-down rule that forgets the timer's oneshot fires where a case
    // expects silence.
    let loose = text.replace(
        r#"labctl_unit_active{unit_type!="oneshot"}"#,
        "labctl_unit_active",
    );
    assert_ne!(loose, text);
    let dir = rules_dir(&loose);
    let (code, out) = promtool(dir.path(), &["test", "rules", "labctl.test.yml"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("LabctlUnitDown"), "{out}");
}

#[test]
fn every_alert_has_its_row_in_docs_dashboards_md() {
    let doc = std::fs::read_to_string(repo().join("docs/dashboards.md")).unwrap();
    for r in rules(&Rendered::bundled().rules()) {
        let anchor = format!("<a id=\"{}\"></a>", r.alert.to_lowercase());
        let row = doc
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&anchor))
            .unwrap_or_else(|| panic!("no row for {} ({anchor}) in docs/dashboards.md", r.alert));
        // name | condition | why it matters | what to do
        assert_eq!(row.matches(" | ").count(), 3, "{row}");
        assert!(row.contains(&format!("`{}`", r.alert)), "{row}");
    }
}
