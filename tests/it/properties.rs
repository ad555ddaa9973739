//! Properties of the core over generated inputs (proptest): a set diffed with itself is empty; a
//! generated stack applied to the test API server and to a real user manager re-plans as
//! `No changes.`; generated secrets never show in any view of a generated layout. The slow ones
//! run few cases (each case is a real apply); a failure prints the shrunk input.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

use labctl::plan::{Live, diff};
use labctl::resource::{Content, Desired, DesiredObject, ResourceId};

use crate::support::systemd::UserManager;
use crate::support::{BARE, Stack};

/// Any JSON a manifest may hold, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z][a-zA-Z0-9_.-]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn desired(objects: Vec<(String, Value)>, units: Vec<(String, String)>) -> Desired {
    let mut d = Desired::default();
    for (name, data) in objects {
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "lab"},
            "data": data,
        });
        let id = labctl::resource::kube_id(&obj).expect("an id");
        d.objects.insert(
            id.clone(),
            DesiredObject {
                id,
                component: "c".into(),
                template: "t".into(),
                content: Content::kube(labctl::resource::normalize(obj)),
                reload_on_change: false,
            },
        );
    }
    for (unit, text) in units {
        let id = ResourceId::Systemd {
            host: None,
            unit: format!("{unit}.service"),
        };
        d.objects.insert(
            id.clone(),
            DesiredObject {
                id,
                component: "u".into(),
                template: "u".into(),
                content: Content::unit(&text),
                reload_on_change: false,
            },
        );
    }
    d
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_set_diffed_with_itself_is_empty(
        objects in prop::collection::vec(("[a-z][a-z0-9-]{0,10}", json_value()), 0..8),
        units in prop::collection::vec(("[a-z][a-z0-9-]{0,10}", "[ -~\n]{0,80}"), 0..4),
    ) {
        let d = desired(objects, units);
        let plan = diff(&d, &Live::from_desired(&d));
        let changes: Vec<String> = plan.actionable().map(|c| c.id.to_string()).collect();
        prop_assert!(changes.is_empty(), "{:?}", changes);
    }
}

/// ConfigMap data values and unit descriptions a user may write: printable, quotes, `%`, `$`,
/// backslashes and non-ASCII included.
fn text() -> impl Strategy<Value = String> {
    "[ -~éß€]{1,24}".prop_filter("not blank", |s| !s.trim().is_empty())
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.into()).to_string()
}

const CM: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ c.values.name }}
data:
{% for k, v in c.values.data | dictsort %}
  {{ k }}: {{ v }}
{% endfor %}
";

const UNIT: &str = "[Unit]
Description={{ c.values.description | replace(\"%\", \"%%\") }}

[Service]
ExecStart=/bin/sleep infinity
Environment=\"NOTE={{ c.values.note | replace(\"%\", \"%%\") | replace(\"\\\\\", \"\\\\\\\\\") | replace('\"', '\\\\\"') }}\"

[Install]
WantedBy=default.target
";

/// A stack of `cms` ConfigMaps (keys and values generated) and `units` host units.
fn generated_stack(
    cms: &[BTreeMap<String, String>],
    units: &[(String, String)],
    prefix: &str,
) -> String {
    let mut t = format!("{BARE}\n[host]\nscope = \"user\"\n");
    for (i, data) in cms.iter().enumerate() {
        let pairs: Vec<String> = data
            .iter()
            .map(|(k, v)| format!("{} = {}", toml_str(k), toml_str(v)))
            .collect();
        t.push_str(&format!(
            "\n[kube.extra.cm{i}]\ntemplate = \"cm\"\nvalues = {{ name = \"cm{i}\", data = {{ {} }} }}\n",
            pairs.join(", ")
        ));
    }
    for (i, (description, note)) in units.iter().enumerate() {
        t.push_str(&format!(
            "\n[host.extra.{prefix}{i}]\ntemplate = \"gen\"\nunit = \"{prefix}{i}\"\nvalues = {{ description = {}, note = {} }}\n",
            toml_str(description),
            toml_str(note)
        ));
    }
    t
}

fn cms() -> impl Strategy<Value = Vec<BTreeMap<String, String>>> {
    prop::collection::vec(
        prop::collection::btree_map("[a-zA-Z][a-zA-Z0-9_.-]{0,10}", text(), 1..4),
        0..4,
    )
}

fn units() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((text(), text()), 0..3)
}

fn write_stack(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir.join("templates/cm")).unwrap();
    std::fs::create_dir_all(dir.join("systemd-templates")).unwrap();
    std::fs::write(dir.join("templates/cm/cm.yaml"), CM).unwrap();
    std::fs::write(dir.join("systemd-templates/gen.service"), UNIT).unwrap();
    std::fs::write(dir.join("stack.toml"), text).unwrap();
}

#[test]
fn generated_stacks_applied_re_plan_as_no_changes_on_both_planes() {
    let m = UserManager::start();
    let srv = labctl_testapi::TestApiServer::start_blocking(labctl_testapi::Options {
        auto_rollout: true,
        ..labctl_testapi::Options::default()
    })
    .expect("test API server");
    let dir = m.scratch().join("gen");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let n = std::cell::Cell::new(0);
    runner
        .run(&(cms(), units()), |(cms, units)| {
            n.set(n.get() + 1);
            write_stack(&dir, &generated_stack(&cms, &units, "pg"));
            let stack = dir.join("stack.toml");
            let run = |args: &[&str]| {
                m.command(&stack, &["--kubeconfig"])
                    .arg(srv.kubeconfig_path())
                    .args(args)
                    .run()
            };
            let applied = run(&["apply", "--yes", "--settle", "200ms"]);
            prop_assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
            let plan = run(&["plan", "--detailed-exitcode"]);
            prop_assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
            prop_assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
            Ok(())
        })
        .unwrap();
    assert!(n.get() >= 16, "{} cases", n.get());
}

/// Where a secret goes: a Secret's value, inside a ConfigMap's URL, an annotation, a unit's env
/// file and (to check masking) a unit's `Environment=` line.
const SECRET_KUBE: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: s
stringData:
  v: {{ secret("a") }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: c
  annotations:
    example.com/url: {{ "https://u:" ~ secret("b") ~ "@h/" }}
data:
  url: {{ "postgres://app:" ~ secret("a") ~ "@db/app" }}
  plain: {{ secret("b") }}
"#;

const SECRET_UNIT: &str = r#"{% import "systemd-templates/_lib/unit.j2" as u %}
[Service]
ExecStart=/bin/sleep infinity
Environment="URL=postgres://app:{{ secret("a") }}@db/app"
{{ u.env_file("rs", {"TOKEN": "b"}) -}}
"#;

#[test]
fn generated_secrets_show_in_no_view() {
    let srv = labctl_testapi::TestApiServer::start_blocking(labctl_testapi::Options {
        auto_rollout: true,
        ..labctl_testapi::Options::default()
    })
    .expect("test API server");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    // Long enough not to turn up by chance in a plan (a 4-letter value would).
    let secret = "[a-zA-Z0-9!#%&()*+,./:;<=>?@^_{|}~-]{10,24}";
    runner
        .run(
            &(secret, secret, any::<bool>(), any::<bool>()),
            |(a, b, with_kube, with_unit)| {
                let mut text = format!("{BARE}\n[host]\nscope = \"user\"\n");
                if with_kube {
                    text.push_str("\n[kube.extra.sec]\n");
                }
                if with_unit {
                    text.push_str("\n[host.extra.rs]\ntemplate = \"rs\"\nunit = \"rs\"\n");
                }
                let s = Stack::new(&text);
                s.file("templates/sec/sec.yaml", SECRET_KUBE);
                s.file("systemd-templates/rs.service", SECRET_UNIT);
                let env = [
                    ("LABCTL_SECRET_A", a.as_str()),
                    ("LABCTL_SECRET_B", b.as_str()),
                ];
                let mut seen = Vec::new();
                let out = |args: &[&str]| {
                    s.labctl(&["--kubeconfig"])
                        .arg(srv.kubeconfig_path())
                        .args(args)
                        .envs(env)
                        .run()
                };
                let saved = s.path().join("plan.json");
                for args in [
                    &["plan", "--plane", "kube"][..],
                    &["plan", "--plane", "kube", "--output", "json"],
                    &["plan", "--offline"],
                    &["plan", "--offline", "--output", "json"],
                    &["render", "--redact"],
                ] {
                    let o = out(args);
                    seen.push((format!("{args:?}"), o.stdout, o.stderr));
                }
                let o = out(&["plan", "--plane", "kube", "--out", saved.to_str().unwrap()]);
                seen.push(("plan --out".into(), o.stdout, o.stderr));
                if let Ok(t) = std::fs::read_to_string(&saved) {
                    seen.push(("the saved plan".into(), t, String::new()));
                }
                let o = out(&["apply", "--plane", "kube", "--yes"]);
                prop_assert_eq!(o.code, 0, "{}", o.stderr);
                seen.push(("apply".into(), o.stdout, o.stderr));
                for (what, stdout, stderr) in &seen {
                    for v in [&a, &b] {
                        prop_assert!(
                            !stdout.contains(v.as_str()) && !stderr.contains(v.as_str()),
                            "{} shows a secret value:\n{}\n{}",
                            what,
                            stdout,
                            stderr
                        );
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}
