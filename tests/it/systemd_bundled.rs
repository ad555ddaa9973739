//! The bundled stack's host units, applied to a real systemd user manager. The stack points
//! `host.labctl_path` (and OpenBao's binary) at a long-running stand-in for the agents.
//! The kube plane is not under test here and is switched off.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::support::repo;
use crate::support::systemd::UserManager;

/// Host components, their default unit names, and the templates they need.
const HOST: &[(&str, &str)] = &[
    ("proxy", "labctl-proxy"),
    ("collector", "labctl-collector"),
    ("ingest", "labctl-ingest"),
    ("gate", "labctl-gate"),
    ("openbao", "openbao"),
    ("reading-sync", "reading-sync"),
];
const KUBE: &[&str] = &[
    "collectors",
    "grafana",
    "loki",
    "minio",
    "otel-collector",
    "postgres",
    "prometheus",
    "tempo",
    "thanos",
];

/// Whether labctl ships a unit template for `component`.
fn has_template(component: &str) -> bool {
    std::fs::read_dir(repo().join("systemd-templates")).is_ok_and(|d| {
        d.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(component)
                .is_some_and(|rest| rest.starts_with('.') && !rest[1..].contains('.'))
        })
    })
}

fn table<'a>(t: &'a mut Table, key: &str) -> &'a mut Table {
    t.entry(key)
        .or_insert_with(|| Value::Table(Table::new()))
        .as_table_mut()
        .expect("a table")
}

/// The repository's stack.toml, for the user manager, with every host unit renamed `bt-*`.
fn bundled_for_user_manager(dir: &Path) -> (PathBuf, usize) {
    let text = std::fs::read_to_string(repo().join("stack.toml")).unwrap();
    let mut stack: Table = toml::from_str(&text).unwrap();
    let stand_in = repo()
        .join("tests/fixtures/stand-in-agent")
        .display()
        .to_string();
    let kube = table(&mut stack, "kube");
    kube.remove("extra");
    for k in KUBE {
        table(kube, k).insert("enabled".into(), Value::Boolean(false));
    }
    let host = table(&mut stack, "host");
    host.remove("extra");
    host.remove("unit_dir");
    host.remove("run_as");
    host.insert("scope".into(), Value::String("user".into()));
    host.insert("labctl_path".into(), Value::String(stand_in.clone()));
    let mut enabled = 0;
    for (name, default_unit) in HOST {
        let c = table(host, name);
        if c.get("enabled").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        assert!(
            has_template(name),
            "host component `{name}` has no builtin template in systemd-templates/"
        );
        enabled += 1;
        let unit = c
            .get("unit")
            .and_then(Value::as_str)
            .unwrap_or(default_unit)
            .to_string();
        c.insert("unit".into(), Value::String(format!("bt-{unit}")));
        match *name {
            "openbao" => {
                c.insert("binary".into(), Value::String(stand_in.clone()));
                c.insert(
                    "storage_path".into(),
                    Value::String(dir.join("bao").display().to_string()),
                );
            }
            "reading-sync" => {
                c.insert("command".into(), Value::String("/bin/true".into()));
            }
            _ => {}
        }
    }
    // The agents' secrets, from files: the env files apply writes need every one.
    let secrets = table(&mut stack, "secrets");
    for name in ["webhook-secret", "github-token", "postgres-password"] {
        let file = dir.join(format!("secret-{name}"));
        std::fs::write(&file, format!("bt-{name}-value\n")).unwrap();
        let mut source = Table::new();
        source.insert("file".into(), Value::String(file.display().to_string()));
        secrets.insert(name.into(), Value::Table(source));
    }
    let path = dir.join("stack.toml");
    std::fs::write(&path, toml::to_string(&stack).unwrap()).unwrap();
    (path, enabled)
}

#[test]
fn bundled_host_units_apply_cleanly_to_the_user_manager() {
    let m = UserManager::start();
    let dir = m.scratch();
    let (stack, components) = bundled_for_user_manager(&dir);

    let plan = m.labctl(
        &stack,
        &[
            "plan",
            "--plane",
            "systemd",
            "--output",
            "json",
            "--detailed-exitcode",
        ],
    );
    plan.code(2);
    let json: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let changes = json["changes"].as_array().unwrap();
    assert!(changes.len() >= components, "{}", plan.stdout);
    let impacted = |what: &str| -> Vec<String> {
        changes
            .iter()
            .filter(|c| c["impact"].as_array().unwrap().iter().any(|i| i == what))
            .map(|c| c["id"]["unit"].as_str().unwrap().to_string())
            .collect()
    };
    for c in changes {
        assert_eq!(c["action"], "create", "{c}");
        assert!(c["id"]["unit"].as_str().unwrap().starts_with("bt-"), "{c}");
    }

    m.labctl(&stack, &["apply", "--plane", "systemd", "--yes"])
        .code(0);
    let started = impacted("start");
    let enabled = impacted("enable");
    assert!(!started.is_empty());
    for c in changes {
        let unit = c["id"]["unit"].as_str().unwrap();
        let state = m.active_state(unit);
        if started.iter().any(|u| u == unit) {
            assert_eq!(state, "active", "{unit}");
        } else {
            assert_eq!(state, "inactive", "{unit} is left to its trigger");
        }
        if enabled.iter().any(|u| u == unit) {
            assert_eq!(m.unit_file_state(unit), "enabled", "{unit}");
        }
    }
    assert_eq!(m.active_state("bt-reading-sync.timer"), "active");
    assert_eq!(m.active_state("bt-reading-sync.service"), "inactive");
    m.labctl(
        &stack,
        &["plan", "--plane", "systemd", "--detailed-exitcode"],
    )
    .code(0)
    .stdout_has("No changes.");

    // Switched off (with the gate, which only exposes the proxy), the proxy takes its env file
    // of secrets along: a file of secrets does not outlive its unit.
    let config = m.unit_dir().join("../..");
    let env_file = config.join("labctl/proxy.env");
    assert!(env_file.exists(), "{}", env_file.display());
    let mut t: Table = toml::from_str(&std::fs::read_to_string(&stack).unwrap()).unwrap();
    for c in ["proxy", "gate"] {
        table(table(&mut t, "host"), c).insert("enabled".into(), Value::Boolean(false));
    }
    std::fs::write(&stack, toml::to_string(&t).unwrap()).unwrap();
    m.labctl(&stack, &["plan", "--plane", "systemd"])
        .code(0)
        .stdout_has("- env file %E/labctl/proxy.env")
        .stdout_has("0 to add, 0 to change, 3 to destroy.");
    m.labctl(&stack, &["apply", "--plane", "systemd", "--yes"])
        .code(0);
    assert!(!env_file.exists(), "{}", env_file.display());
    assert!(!m.unit_dir().join("bt-labctl-proxy.service").exists());
    // The ingest's env file stays: its unit still reads it.
    assert!(config.join("labctl/ingest.env").exists());
    m.labctl(
        &stack,
        &["plan", "--plane", "systemd", "--detailed-exitcode"],
    )
    .code(0)
    .stdout_has("No changes.");
}
