//! The lab you can look at: the Grafana dashboards and Prometheus alert rules labctl renders.
//!
//! - every dashboard follows Grafana's dashboard model (the structure, in Rust, against the model
//!   grafana-foundation-sdk types for Grafana 11.4; and every key and value read back through that
//!   SDK, `scripts/check-dashboards.py`), names a provisioned datasource by uid, and links to
//!   dashboards that exist, whichever stores are enabled;
//! - the alert rules pass `promtool check rules` and `promtool test rules`
//!   (tests/fixtures/rules/: for every alert a case where it fires and one where it stays silent);
//! - a real Prometheus scraping the real collector (and the other agents' points, through the same
//!   translation) accepts every panel's, variable's and rule's PromQL, and every query whose
//!   metrics it has returns data;
//! - the collector's endpoint serves what the OTel Collector's remote write makes of the OTLP the
//!   collector exports (the translation, implemented a second time here from the Go code);
//! - every metric a dashboard or rule uses is documented in docs/agents.md under the name
//!   Prometheus gets; docs/dashboards.md has each dashboard's picture (drawn by
//!   `scripts/dashboard-layout.py`, current) and each alert's row, which its description names.
//!
//! `prometheus`/`promtool` (Debian's `prometheus`) and grafana-foundation-sdk (PyPI) are required:
//! a test without them fails saying what to install.

#[path = "support/otlp.rs"]
mod otlp;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use labctl::agent::collector::prometheus::{Snapshot, metric_name, render as exposition};
use labctl::metric::{Kind, Point};
use labctl::render::Templates;
use labctl::sensitive::Secrets;
use labctl::stack::Plane;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bundled_text() -> String {
    std::fs::read_to_string(repo().join("stack.toml")).unwrap()
}

/// The bundled stack.toml with `enabled = false` in each of `off`'s `[kube.<name>]` tables.
fn without(off: &[&str]) -> String {
    let mut out = String::new();
    for line in bundled_text().lines() {
        out.push_str(line);
        out.push('\n');
        if off.iter().any(|c| line.starts_with(&format!("[kube.{c}]"))) {
            out.push_str("enabled = false\n");
        }
    }
    out
}

/// What the kube plane of `text` renders, with `templates`.
struct Rendered {
    objects: BTreeMap<(String, String), Value>,
}

impl Rendered {
    fn of(text: &str, templates: &Templates) -> Result<Self, String> {
        let stack =
            labctl::stack::parse(Path::new("stack.toml"), text).map_err(|e| e.to_string())?;
        let desired =
            labctl::render::render(&stack, templates, &Secrets::redacted(), Some(Plane::Kube))
                .map_err(|e| e.to_string())?;
        let mut objects = BTreeMap::new();
        for o in desired.objects.values() {
            let v = o.content.as_kube().unwrap().clone();
            let kind = v["kind"].as_str().unwrap().to_string();
            let name = v["metadata"]["name"].as_str().unwrap().to_string();
            objects.insert((kind, name), v);
        }
        Ok(Rendered { objects })
    }

    fn bundled() -> Self {
        Self::of(&bundled_text(), &Templates::builtin()).unwrap()
    }

    fn config_map(&self, name: &str) -> Option<&serde_json::Map<String, Value>> {
        self.objects
            .get(&("ConfigMap".to_string(), name.to_string()))
            .map(|cm| cm["data"].as_object().unwrap())
    }

    /// File name → dashboard.
    fn dashboards(&self) -> BTreeMap<String, Value> {
        self.config_map("grafana-dashboards")
            .map(|data| {
                data.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            serde_json::from_str(v.as_str().unwrap()).unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Provisioned datasources: uid → type.
    fn datasources(&self) -> BTreeMap<String, String> {
        let data = self.config_map("grafana-datasources").unwrap();
        let y: Value = serde_saphyr::from_str(data["datasources.yaml"].as_str().unwrap()).unwrap();
        y["datasources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    d["uid"].as_str().unwrap().to_string(),
                    d["type"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn rules(&self) -> String {
        self.config_map("prometheus").unwrap()["rules.yml"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// `bin` on PATH, or a failure naming the package that has it.
fn require(bin: &str, install: &str) {
    let found = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(found, "`{bin}` is not installed: {install} (.ci/run does)");
}

fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Grafana's dashboard model, as grafana-foundation-sdk 11.4 (`models/dashboard.py`, the panel
// plugins registered in `cog/plugins.py`) types it.

/// `Dashboard`'s fields.
const DASHBOARD_KEYS: &[&str] = &[
    "id",
    "uid",
    "title",
    "description",
    "revision",
    "gnetId",
    "tags",
    "timezone",
    "editable",
    "graphTooltip",
    "time",
    "timepicker",
    "fiscalYearStartMonth",
    "liveNow",
    "weekStart",
    "refresh",
    "schemaVersion",
    "version",
    "panels",
    "templating",
    "annotations",
    "links",
    "snapshot",
    "preload",
];
/// `Panel`'s fields.
const PANEL_KEYS: &[&str] = &[
    "type",
    "id",
    "pluginVersion",
    "targets",
    "title",
    "description",
    "transparent",
    "datasource",
    "gridPos",
    "links",
    "repeat",
    "repeatDirection",
    "maxPerRow",
    "maxDataPoints",
    "transformations",
    "interval",
    "timeFrom",
    "timeShift",
    "hideTimeOverride",
    "libraryPanel",
    "cacheTimeout",
    "queryCachingTTL",
    "options",
    "fieldConfig",
];
/// `RowPanel`'s fields.
const ROW_KEYS: &[&str] = &[
    "type",
    "collapsed",
    "title",
    "datasource",
    "gridPos",
    "id",
    "panels",
    "repeat",
];
/// The panel plugins Grafana 11.4 ships (the SDK's registered panelcfg variants), and `traces`,
/// a core panel the SDK has no options type for.
const PANEL_TYPES: &[&str] = &[
    "annolist",
    "barchart",
    "bargauge",
    "candlestick",
    "canvas",
    "dashlist",
    "datagrid",
    "debug",
    "gauge",
    "geomap",
    "heatmap",
    "histogram",
    "logs",
    "news",
    "nodeGraph",
    "piechart",
    "stat",
    "state-timeline",
    "status-history",
    "table",
    "text",
    "timeseries",
    "trend",
    "xychart",
    "traces",
];
/// `VariableType`.
const VARIABLE_TYPES: &[&str] = &[
    "query",
    "adhoc",
    "groupby",
    "constant",
    "datasource",
    "interval",
    "textbox",
    "custom",
    "system",
    "snapshot",
];
/// The schema version of Grafana 11.4's dashboards (`Dashboard.schema_version`'s default there).
const SCHEMA_VERSION: u64 = 39;

/// Everything wrong with the dashboards of one render, against `datasources` (uid → type).
fn model_problems(
    dashboards: &BTreeMap<String, Value>,
    datasources: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut bad = Vec::new();
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let variables: BTreeMap<&str, BTreeSet<&str>> = dashboards
        .values()
        .map(|d| {
            (
                d["uid"].as_str().unwrap_or_default(),
                d["templating"]["list"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v["name"].as_str())
                    .collect(),
            )
        })
        .collect();
    for (file, d) in dashboards {
        let mut say = |m: String| bad.push(format!("{file}: {m}"));
        for k in d.as_object().unwrap().keys() {
            if !DASHBOARD_KEYS.contains(&k.as_str()) {
                say(format!("`{k}` is not a dashboard field"));
            }
        }
        let uid = d["uid"].as_str().unwrap_or_default();
        if uid.is_empty()
            || uid.len() > 40
            || !uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            say(format!("uid `{uid}` is not 1-40 of [A-Za-z0-9_-]"));
        }
        if !uids.insert(uid.to_string()) {
            say(format!("uid `{uid}` is used twice"));
        }
        let title = d["title"].as_str().unwrap_or_default();
        if title.is_empty() || !titles.insert(title.to_string()) {
            say(format!("title `{title}` is empty or used twice"));
        }
        if d["schemaVersion"].as_u64() != Some(SCHEMA_VERSION) {
            say(format!(
                "schemaVersion is {}, not {SCHEMA_VERSION}",
                d["schemaVersion"]
            ));
        }
        if !d["tags"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("labctl")))
        {
            say("not tagged `labctl` (the dashboards link each other by that tag)".into());
        }
        if !d["links"].as_array().into_iter().flatten().any(|l| {
            l["type"] == "dashboards"
                && l["tags"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!("labctl")))
        }) {
            say("no link to the other labctl dashboards".into());
        }
        for l in d["links"].as_array().into_iter().flatten() {
            if !["link", "dashboards"].contains(&l["type"].as_str().unwrap_or_default()) {
                say(format!(
                    "link type {} is neither `link` nor `dashboards`",
                    l["type"]
                ));
            }
        }
        // Variables.
        let mut names = BTreeSet::new();
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap_or_default();
            if !names.insert(name) {
                say(format!("variable `{name}` twice"));
            }
            let kind = v["type"].as_str().unwrap_or_default();
            if !VARIABLE_TYPES.contains(&kind) {
                say(format!("variable `{name}` has type `{kind}`"));
            }
            if kind == "query" {
                check_datasource(&v["datasource"], datasources, &mut |m| {
                    say(format!("variable `{name}`: {m}"))
                });
                let q = v["query"].as_str().unwrap_or_default();
                if label_values(q).is_none() {
                    say(format!(
                        "variable `{name}`: `{q}` is not label_values(metric, label)"
                    ));
                }
            }
            if kind == "custom" && v["query"].as_str().is_none_or(str::is_empty) {
                say(format!("custom variable `{name}` has no values"));
            }
        }
        // Panels: fields, types, ids, datasources, targets, links, grid.
        let mut ids = BTreeSet::new();
        let mut cells: Vec<(String, [i64; 4])> = Vec::new();
        for p in all_panels(d) {
            let ptitle = p["title"].as_str().unwrap_or_default().to_string();
            let mut say = |m: String| bad.push(format!("{file}: panel `{ptitle}`: {m}"));
            let kind = p["type"].as_str().unwrap_or_default();
            let keys = if kind == "row" { ROW_KEYS } else { PANEL_KEYS };
            for k in p.as_object().unwrap().keys() {
                if !keys.contains(&k.as_str()) {
                    say(format!("`{k}` is not a field of a {kind} panel"));
                }
            }
            if kind != "row" && !PANEL_TYPES.contains(&kind) {
                say(format!("`{kind}` is not a panel type of Grafana 11.4"));
            }
            if !p["id"].as_u64().is_some_and(|id| ids.insert(id)) {
                say(format!("id {} missing or used twice", p["id"]));
            }
            let g = &p["gridPos"];
            let pos = ["x", "y", "w", "h"].map(|k| g[k].as_i64().unwrap_or(-1));
            let [x, y, w, h] = pos;
            if x < 0 || y < 0 || w < 1 || h < 1 || x + w > 24 {
                say(format!("gridPos {g} is off Grafana's 24-column grid"));
            }
            if kind == "row" && (x, w, h) != (0, 24, 1) {
                say(format!("a row spans the grid one unit high, not {g}"));
            }
            for (other, [ox, oy, ow, oh]) in &cells {
                if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                    say(format!("overlaps `{other}`"));
                }
            }
            cells.push((ptitle.clone(), pos));
            if kind == "row" {
                continue;
            }
            check_datasource(&p["datasource"], datasources, &mut |m| say(m));
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                say("no queries".into());
            }
            let mut refs = BTreeSet::new();
            for t in &targets {
                if !t["refId"]
                    .as_str()
                    .is_some_and(|r| refs.insert(r.to_string()))
                {
                    say(format!("refId {} missing or twice", t["refId"]));
                }
                if t["datasource"] != p["datasource"] {
                    say(format!(
                        "a query's datasource {} is not the panel's",
                        t["datasource"]
                    ));
                }
                let field = match p["datasource"]["type"].as_str().unwrap_or_default() {
                    "prometheus" | "loki" => "expr",
                    "tempo" => "query",
                    _ => "rawSql",
                };
                if t[field].as_str().is_none_or(|s| s.trim().is_empty()) {
                    say(format!("query {} has no `{field}`", t["refId"]));
                }
            }
            for l in p["links"].as_array().into_iter().flatten() {
                let url = l["url"].as_str().unwrap_or_default();
                let Some(rest) = url.strip_prefix("/d/") else {
                    continue;
                };
                let target = rest.split(['/', '?']).next().unwrap_or_default();
                match variables.get(target) {
                    None => say(format!(
                        "links to dashboard `{target}`, which is not provisioned"
                    )),
                    Some(vars) => {
                        for param in url.split(['?', '&']).filter_map(|q| q.strip_prefix("var-")) {
                            let var = param.split('=').next().unwrap_or_default();
                            if !vars.contains(var) {
                                say(format!(
                                    "links to `{target}` with `var-{var}`, a variable it lacks"
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    bad
}

fn check_datasource(
    ds: &Value,
    provisioned: &BTreeMap<String, String>,
    say: &mut dyn FnMut(String),
) {
    let uid = ds["uid"].as_str().unwrap_or_default();
    match provisioned.get(uid) {
        None => say(format!("datasource uid `{uid}` is not provisioned")),
        Some(t) if ds["type"].as_str() != Some(t.as_str()) => say(format!(
            "datasource `{uid}` is of type `{t}`, not {}",
            ds["type"]
        )),
        Some(_) => {}
    }
}

/// `label_values(metric, label)` as (metric selector, label).
fn label_values(q: &str) -> Option<(&str, &str)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (metric, label) = inner.rsplit_once(',')?;
    Some((metric.trim(), label.trim()))
}

#[test]
fn every_dashboard_follows_grafanas_model_with_provisioned_datasources() {
    let r = Rendered::bundled();
    let dashboards = r.dashboards();
    assert_eq!(
        dashboards.keys().collect::<Vec<_>>(),
        [
            "gitops.json",
            "host.json",
            "journal.json",
            "lab-overview.json",
            "logs-traces.json"
        ]
    );
    let bad = model_problems(&dashboards, &r.datasources());
    assert!(bad.is_empty(), "{bad:#?}");
    // The lab overview links to the host detail and to the GitOps dashboard, and every dashboard
    // but one links to the logs and traces.
    let linking: Vec<&String> = dashboards
        .iter()
        .filter(|(_, d)| {
            all_panels(d).iter().any(|p| {
                p["links"].as_array().into_iter().flatten().any(|l| {
                    l["url"]
                        .as_str()
                        .is_some_and(|u| u.starts_with("/d/labctl-logs/"))
                })
            })
        })
        .map(|(f, _)| f)
        .collect();
    assert_eq!(linking.len(), 3, "{linking:?}");

    // Whichever stores are off, the panels left name provisioned datasources; a dashboard whose
    // stores are all off is not provisioned.
    for (off, gone) in [
        (&["thanos"][..], &[][..]),
        (
            &["thanos", "prometheus"][..],
            &["lab-overview.json", "host.json", "gitops.json"][..],
        ),
        (&["loki"][..], &[][..]),
        (&["loki", "tempo"][..], &["logs-traces.json"][..]),
        (&["postgres"][..], &[][..]),
        (
            &["postgres", "thanos", "prometheus"][..],
            &[
                "lab-overview.json",
                "host.json",
                "gitops.json",
                "journal.json",
            ][..],
        ),
    ] {
        let r = Rendered::of(&without(off), &Templates::builtin()).unwrap();
        let dashboards = r.dashboards();
        for g in gone {
            assert!(
                !dashboards.contains_key(*g),
                "{off:?}: {g} still provisioned"
            );
        }
        assert_eq!(
            dashboards.len() + gone.len(),
            5,
            "{off:?}: {:?}",
            dashboards.keys()
        );
        let bad = model_problems(&dashboards, &r.datasources());
        // With Prometheus off, a link to a dashboard that is gone is expected; nothing else.
        let bad: Vec<&String> = bad
            .iter()
            .filter(|m| !m.contains("which is not provisioned"))
            .collect();
        assert!(bad.is_empty(), "{off:?}: {bad:#?}");
    }
    // The model check finds what is wrong (each line below breaks one rule).
    let mut broken = dashboards.clone();
    let host = broken.get_mut("host.json").unwrap();
    host["panels"][1]["datasource"]["uid"] = json!("nope");
    host["panels"][2]["gridPos"]["x"] = json!(20);
    host["panels"][3]["legend"] = json!({});
    host["templating"]["list"][0]["type"] = json!("dropdown");
    broken.get_mut("journal.json").unwrap()["uid"] = json!("labctl-host");
    let found = model_problems(&broken, &r.datasources()).join("\n");
    for want in [
        "datasource uid `nope` is not provisioned",
        "off Grafana's 24-column grid",
        "`legend` is not a field of a timeseries panel",
        "has type `dropdown`",
        "uid `labctl-host` is used twice",
    ] {
        assert!(found.contains(want), "no `{want}` in {found}");
    }
}

#[test]
fn grafana_foundation_sdk_reads_every_dashboard_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, d) in Rendered::bundled().dashboards() {
        let p = dir.path().join(&name);
        std::fs::write(&p, serde_json::to_string_pretty(&d).unwrap()).unwrap();
        files.push(p);
    }
    let run = |files: &[PathBuf]| {
        let out = Command::new("python3")
            .arg(repo().join("scripts/check-dashboards.py"))
            .args(files)
            .output()
            .expect("python3 runs scripts/check-dashboards.py");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = run(&files);
    assert!(
        !text.contains("is not installed"),
        "grafana-foundation-sdk is missing: pip install 'grafana-foundation-sdk==1769699520!11.4.0' (.ci/run does): {text}"
    );
    assert_eq!(code, Some(0), "{text}");
    // A misspelled field is caught.
    let p = dir.path().join("host.json");
    let text =
        std::fs::read_to_string(&p)
            .unwrap()
            .replacen("\"legendFormat\"", "\"legendformat\"", 1);
    std::fs::write(&p, text).unwrap();
    let (code, text) = run(std::slice::from_ref(&p));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("legendformat: not in Grafana's model"),
        "{text}"
    );
}

#[test]
fn a_stack_adds_and_overrides_dashboards_and_a_broken_one_is_named_with_its_line() {
    let mut t = Templates::builtin();
    t.insert(
        "templates/grafana/dashboards/mine.json",
        // Values print JSON-quoted in a `.json` template.
        "{% import \"templates/grafana/_dashboards.j2\" as g %}\n{\"uid\": \"mine\", \"title\": \"Mine\", \"ds\": {{ g.metrics_uid }}, \"panels\": []}\n".into(),
    );
    t.insert(
        "templates/grafana/dashboards/host.json",
        "{\"uid\": \"my-host\", \"title\": \"My host\", \"panels\": []}\n".into(),
    );
    let d = Rendered::of(&bundled_text(), &t).unwrap().dashboards();
    assert_eq!(d["mine.json"]["ds"], "thanos");
    assert_eq!(d["host.json"]["uid"], "my-host");
    assert_eq!(d.len(), 6);

    t.insert(
        "templates/grafana/dashboards/broken.json",
        "{\n  \"uid\": \"broken\",\n  \"title\": \"Broken\"\n  \"panels\": []\n}\n".into(),
    );
    let e = Rendered::of(&bundled_text(), &t).err().unwrap();
    assert!(
        e.contains("`templates/grafana/dashboards/broken.json` does not render valid JSON")
            && e.contains("line 4"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Alert rules.

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

#[derive(Debug)]
struct Rule {
    alert: String,
    expr: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn rules(text: &str) -> Vec<Rule> {
    let y: Value = serde_saphyr::from_str(text).unwrap();
    let map = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    };
    y["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| Rule {
            alert: r["alert"].as_str().unwrap().to_string(),
            expr: r["expr"].as_str().unwrap().to_string(),
            labels: map(&r["labels"]),
            annotations: map(&r["annotations"]),
        })
        .collect()
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

// ---------------------------------------------------------------------------------------------
// PromQL: which metrics a query reads, and the values Grafana fills in.

/// The metric names `expr` selects: identifiers that are not functions, keywords, label names
/// (in braces or grouping lists), durations or numbers.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut s = String::new();
    let (mut braces, mut brackets, mut quoted) = (0, 0, false);
    let expr = format!("{expr} ");
    for c in expr.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                s.push(' ');
            }
            _ if quoted => {}
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            _ if braces > 0 || brackets > 0 => {}
            _ => s.push(c),
        }
    }
    // Grouping lists: `by (a, b)`, `without (...)`, `on (...)`, `ignoring (...)`, `group_left(...)`.
    let mut out = BTreeSet::new();
    let words: Vec<(usize, &str)> = s
        .match_indices(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .fold((Vec::new(), 0), |(mut v, start), (i, sep)| {
            if i > start {
                v.push((start, &s[start..i]));
            }
            (v, i + sep.len())
        })
        .0;
    let mut skip_list = false;
    for (i, w) in words {
        let next = s[i + w.len()..].trim_start().chars().next();
        if skip_list {
            if s[i + w.len()..].trim_start().starts_with(')') {
                skip_list = false;
            }
            continue;
        }
        // Keywords, and the aggregation operators (which may be followed by `by`, not `(`).
        let keyword = [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
            "and",
            "or",
            "unless",
            "bool",
            "offset",
            "sum",
            "min",
            "max",
            "avg",
            "group",
            "stddev",
            "stdvar",
            "count",
            "count_values",
            "bottomk",
            "topk",
            "quantile",
        ];
        if keyword.contains(&w) {
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&w)
                && next == Some('(')
            {
                skip_list = true;
            }
            continue;
        }
        if next == Some('(') || w.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            continue;
        }
        out.insert(w.to_string());
    }
    out
}

/// `expr` with Grafana's variables as Grafana fills them for a Prometheus datasource whose
/// scrape interval is 1 s: a multi-value variable as a regex group.
fn fill(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut e = expr.to_string();
    for (k, v) in vars {
        e = e
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    e.replace("$__rate_interval", "4s")
        .replace("$__interval", "2s")
        .replace("$__range", "5m")
}

#[test]
fn promql_metric_names_are_found() {
    assert_eq!(
        metrics_in(
            r#"sum by (host_name, direction) (max by (host_name, device) (rate(system_network_io_bytes_total{host_name=~"$host", device!="lo"}[$__rate_interval])))"#
        ),
        BTreeSet::from(["system_network_io_bytes_total".to_string()])
    );
    assert_eq!(
        metrics_in(
            r#"a_total unless on (host_name) max by (host_name) (increase(b{result="ok"}[1h])) > 0 or vector(0) and time() - c"#
        ),
        ["a_total", "b", "c"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus, scraping the real collector and the other agents' points.

/// tailscaled's local API on a unix socket, answering the fixture JSON.
struct Tailscaled {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tailscaled {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tailscaled.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let fixture = |f: &str| {
            std::fs::read_to_string(repo().join("tests/fixtures/proc-sys-tailscale").join(f))
                .unwrap()
        };
        let (status, serve) = (
            fixture("status-running.json"),
            fixture("serve-config-funnel.json"),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let path = request_path(&mut BufReader::new(&s));
                let body = match path.as_str() {
                    "/localapi/v0/status" => &status,
                    "/localapi/v0/serve-config" => &serve,
                    _ => "{}",
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Tailscaled { socket, _dir: dir }
    }
}

/// The path of the HTTP request on `r`, its headers read.
fn request_path(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    let _ = r.read_line(&mut line);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            return path;
        }
    }
}

/// Serves `pages` (path → Prometheus text) over HTTP on loopback; returns the address.
fn serve_pages(pages: BTreeMap<String, String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let path = request_path(&mut BufReader::new(&s));
            let (code, body) = match pages.get(&path) {
                Some(b) => ("200 OK", b.as_str()),
                None => ("404 Not Found", ""),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The collector on the fixture proc/sys tree as `node1`, serving `/metrics`; its address.
fn collector(extra: &[&str], env: &[(&str, &str)], tailscale: &Path) -> (Running, String) {
    let f = repo().join("tests/fixtures/proc-sys");
    let mut child = Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args([
            "agent",
            "collector",
            "--interval",
            "500ms",
            "--node-name",
            "node1",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--proc-path")
        .arg(f.join("proc"))
        .arg("--sys-path")
        .arg(f.join("sys"))
        .arg("--root-path")
        .arg(f.join("root"))
        .arg("--tailscale-socket")
        .arg(tailscale)
        .args(extra)
        .envs(env.iter().copied())
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_SERVICE_NAME")
        .env("LABCTL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start labctl agent collector");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0 && Instant::now() < deadline,
            "never served: {seen}"
        );
        seen.push_str(&line);
        if let Some(rest) = line.split("serving Prometheus metrics on http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (Running(child), addr)
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus (Debian's) with `config`, on a free loopback port.
struct Prometheus {
    addr: String,
    _process: Running,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(config: &str, rules: &str) -> Self {
        require("prometheus", "apt-get install prometheus");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        // Prometheus cannot listen on port 0: take a free port and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            addr,
            _process: Running(child),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&p.addr).is_err() || http_get(&p.addr, "/-/ready").0 != 200 {
            let log =
                std::fs::read_to_string(p._dir.path().join("prometheus.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "prometheus never got ready: {log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// `GET /api/v1/<path>`: the JSON answer, whatever its status.
    fn api(&self, path: &str) -> Value {
        let (_, body) = http_get(&self.addr, &format!("/api/v1/{path}"));
        serde_json::from_str(&body).unwrap_or_else(|_| json!({"status": "error", "error": body}))
    }

    /// Evaluate `expr` now (instant) or over the last minute (range): (accepted, error, series).
    fn query(&self, expr: &str, range: bool) -> Result<usize, String> {
        let q = encode(expr);
        let v = if range {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            self.api(&format!(
                "query_range?query={q}&start={}&end={now}&step=2",
                now - 60
            ))
        } else {
            self.api(&format!("query?query={q}"))
        };
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        let data = &v["data"];
        Ok(match data["resultType"].as_str() {
            Some("scalar") | Some("string") => 1,
            _ => data["result"].as_array().map_or(0, Vec::len),
        })
    }
}

/// The other agents' points, through the same translation as the collector's: the proxy's (a
/// sync rolled back, deliveries, pipeline starts), the gate's, the ingest's (named as
/// docs/agents.md lists them), the host collector's units, and telemetry drops.
fn agents_pages() -> BTreeMap<String, String> {
    use labctl::agent::proxy::metrics::Counts;
    let resource = |service: &str, host: &str| -> Vec<(String, String)> {
        [
            ("host.name", host),
            ("service.name", service),
            ("service.instance.id", host),
            ("service.version", "test"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    };
    let page = |service: &str, host: &str, points: Vec<Point>| {
        exposition(&Snapshot {
            resource: resource(service, host),
            points,
        })
    };
    let mut c = Counts::default();
    let mut proxy = c.start();
    let now = std::time::SystemTime::now();
    c.sync("abc1234", "ok", Duration::from_secs(12), now);
    let (totals, last) = c.sync(
        "def5678",
        labctl::agent::proxy::metrics::ROLLED_BACK,
        Duration::from_secs(40),
        now,
    );
    proxy.extend(totals);
    proxy.extend(last);
    proxy.extend(c.delivery(Some("push"), 202));
    c.pipeline_start("nightly-etl", 202);
    proxy.extend(c.pipeline_start("nightly-etl", 429));
    let dropped = |n| {
        Point::new(
            labctl::telemetry::DROPPED,
            "{item}",
            "drops",
            Kind::Counter,
            n,
        )
        .with("signal", "spans")
    };
    proxy.push(dropped(0.0));
    let mut gate = labctl::agent::gate::points(true, 2);
    gate.push(dropped(0.0));
    let ingest = vec![
        Point::new(
            "labctl.ingest.entries.upserted",
            "{entry}",
            "",
            Kind::Counter,
            42.0,
        ),
        Point::new(
            "labctl.ingest.comments.upserted",
            "{comment}",
            "",
            Kind::Counter,
            7.0,
        ),
        Point::new(
            "labctl.ingest.api.calls",
            "{request}",
            "",
            Kind::Counter,
            120.0,
        ),
        Point::new(
            "labctl.ingest.ratelimit.remaining",
            "{request}",
            "",
            Kind::Gauge,
            4880.0,
        ),
        Point::new("labctl.ingest.sync.duration", "s", "", Kind::Gauge, 1.5).with("result", "ok"),
        Point::new("labctl.ingest.syncs", "{sync}", "", Kind::Counter, 3.0).with("result", "ok"),
        Point::new("labctl.ingest.syncs", "{sync}", "", Kind::Counter, 0.0).with("result", "error"),
    ];
    let mut units = Vec::new();
    for (unit, state, service) in [
        (
            "labctl-proxy.service",
            "active",
            Some(("notify".to_string(), 0)),
        ),
        (
            "labctl-gate.service",
            "active",
            Some(("notify".to_string(), 1)),
        ),
        (
            "reading-sync.service",
            "inactive",
            Some(("oneshot".to_string(), 0)),
        ),
        ("reading-sync.timer", "active", None),
    ] {
        units.extend(labctl::agent::collector::unit_points(
            unit, "homelab", state, service,
        ));
    }
    [
        ("/proxy", page("labctl-proxy", "node1", proxy)),
        ("/gate", page("labctl-gate", "node1", gate)),
        ("/ingest", page("labctl-ingest", "node1", ingest)),
        // The host collector's units (the fixture collector has no systemd to ask); told apart
        // from the fixture collector's series by their `service_version`.
        ("/units", page("labctl-collector", "node1", units)),
    ]
    .into_iter()
    .map(|(p, t)| (p.to_string(), t))
    .collect()
}

#[test]
fn a_real_prometheus_accepts_every_query_and_panels_over_data_it_has_return_data() {
    require("prometheus", "apt-get install prometheus");
    let r = Rendered::bundled();
    let rules_text = r.rules();
    let tailscale = Tailscaled::start();
    let (_collector, addr) = collector(&[], &[], &tailscale.socket);
    let pages = agents_pages();
    let stub = serve_pages(pages.clone());
    // Scraped as a user without an OTel Collector scrapes: `honor_labels` keeps the endpoint's
    // job and instance, so the series are those the remote write would store.
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: collector\n    honor_labels: true\n    static_configs: [{{targets: ['{addr}']}}]\n"
    );
    for path in pages.keys() {
        config.push_str(&format!(
            "  - job_name: stub{}\n    honor_labels: true\n    metrics_path: {path}\n    static_configs: [{{targets: ['{stub}']}}]\n",
            path.replace('/', "-")
        ));
    }
    let prom = Prometheus::start(&config, &rules_text);

    // Enough scrapes for rates and trends, and the rules evaluated.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let samples = prom.query(
            "count_over_time(system_uptime_seconds{host_name=\"node1\"}[1m])",
            false,
        );
        let stubbed = prom.query("labctl_proxy_syncs_total", false);
        if samples.is_ok_and(|_| {
            let v = prom.api(&format!(
                "query?query={}",
                encode("count_over_time(system_uptime_seconds{host_name=\"node1\"}[1m])")
            ));
            v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(0.0)
                >= 6.0
        }) && stubbed.is_ok_and(|n| n > 0)
            && prom
                .query("ALERTS{alertstate=\"firing\"}", false)
                .is_ok_and(|n| n > 0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus has not scraped enough: {:#}",
            prom.api("targets")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let names: BTreeSet<String> = prom.api("label/__name__/values")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let scraped = |expr: &str| {
        let m = metrics_in(expr);
        !m.is_empty() && m.iter().all(|n| names.contains(n))
    };

    let mut problems = Vec::new();
    let mut checked = 0;
    let mut with_data = 0;
    // Panel queries over metrics Prometheus does not have (none here: every metric is fed).
    let mut empty = Vec::new();
    for (file, d) in r.dashboards() {
        // Variables first: their values fill the panels' queries.
        let mut vars = BTreeMap::new();
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap().to_string();
            match v["type"].as_str() {
                Some("query") => {
                    let (metric, label) = label_values(v["query"].as_str().unwrap()).unwrap();
                    let expr = format!("count by ({label}) ({metric})");
                    let values = prom.api(&format!("query?query={}", encode(&expr)));
                    let mut found: Vec<String> = values["data"]["result"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["metric"][label].as_str().map(String::from))
                        .collect();
                    found.sort();
                    checked += 1;
                    if found.is_empty() {
                        problems.push(format!(
                            "{file}: variable `{name}`: `{expr}` found nothing: {values}"
                        ));
                        continue;
                    }
                    // A multi-value variable as Grafana formats it for Prometheus; a single one as
                    // its first value.
                    let value = if v["multi"] == true {
                        format!("({})", found.join("|"))
                    } else {
                        found[0].clone()
                    };
                    vars.insert(name, value);
                }
                _ => {
                    vars.insert(name, String::new());
                }
            }
        }
        for p in all_panels(&d) {
            if p["datasource"]["type"] != "prometheus" {
                continue;
            }
            let title = p["title"].as_str().unwrap();
            for t in p["targets"].as_array().unwrap() {
                let expr = fill(t["expr"].as_str().unwrap(), &vars);
                let range = t["range"] == true;
                checked += 1;
                match prom.query(&expr, range) {
                    Err(e) => problems.push(format!("{file}: `{title}`: `{expr}` refused: {e}")),
                    Ok(0) if scraped(&expr) => problems.push(format!(
                        "{file}: `{title}`: `{expr}` returned nothing though Prometheus has {:?}",
                        metrics_in(&expr)
                    )),
                    Ok(0) => empty.push(format!("{file}: `{title}`: `{expr}`")),
                    Ok(_) => with_data += 1,
                }
            }
        }
    }
    for rule in rules(&rules_text) {
        checked += 1;
        if let Err(e) = prom.query(&rule.expr, false) {
            problems.push(format!("rule {}: `{}` refused: {e}", rule.alert, rule.expr));
        }
    }
    // Prometheus evaluated every rule itself without an error, and the rolled-back sync fires.
    let loaded = prom.api("rules");
    let groups = loaded["data"]["groups"].as_array().unwrap();
    let evaluated: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(evaluated.len(), rules(&rules_text).len(), "{loaded:#}");
    for rule in &evaluated {
        if rule["health"] != "ok" {
            problems.push(format!(
                "rule {} is {}: {}",
                rule["name"], rule["health"], rule["lastError"]
            ));
        }
    }
    let firing = prom.api(&format!(
        "query?query={}",
        encode("ALERTS{alertstate=\"firing\"}")
    ));
    assert_eq!(
        firing["data"]["result"][0]["metric"]["alertname"], "LabctlGitOpsRolledBack",
        "{firing:#}"
    );
    assert!(
        problems.is_empty(),
        "{} of {checked} queries:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Every metric the panels read is fed here (the collector's for real, the others' through the
    // same translation), so every panel has data, the host panels among them.
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    assert!(with_data >= 50, "{with_data} panel queries");
    for host_panel in [
        "system_cpu_utilization_ratio",
        "system_filesystem_usage_bytes",
        "system_disk_io_bytes_total",
        "system_paging_usage_bytes",
        "tailscale_peers_online",
    ] {
        assert!(
            names.contains(host_panel),
            "{host_panel} never scraped: {names:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The translation: the collector's endpoint serves what the remote write makes of its OTLP.

/// contrib v0.116 `normalizeName` for the units labctl uses, from the Go code.
fn prw_name(name: &str, unit: &str, kind: &str, monotonic: bool) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    let word = match unit {
        "s" => "seconds",
        "By" => "bytes",
        "1" | "" => "",
        u if u.contains('{') => "",
        u => panic!("add unit `{u}` to the test's table"),
    };
    if !word.is_empty() && !tokens.iter().any(|t| t == word) {
        tokens.push(word.into());
    }
    if kind == "sum" && monotonic {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    }
    if unit == "1" && kind == "gauge" {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".into());
    }
    tokens.join("_")
}

/// contrib v0.116 `createAttributes` with `resource_to_telemetry_conversion`, as `name{labels}`.
fn prw_series(
    name: &str,
    point: &BTreeMap<String, String>,
    resource: &BTreeMap<String, String>,
) -> String {
    let mut merged = point.clone();
    merged.extend(resource.clone());
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in merged {
        let k: String = k
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        labels
            .entry(k)
            .and_modify(|e| {
                if *e != v {
                    *e = format!("{e};{v}")
                }
            })
            .or_insert(v);
    }
    labels.insert("job".into(), resource["service.name"].clone());
    labels.insert("instance".into(), resource["service.instance.id"].clone());
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

#[test]
fn the_collector_endpoint_serves_what_remote_write_makes_of_its_otlp_export() {
    let rx = otlp::Receiver::start();
    let tailscale = Tailscaled::start();
    let endpoint = rx.http_endpoint();
    let (_collector, addr) = collector(
        &["--otlp-endpoint", &endpoint],
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ],
        &tailscale.socket,
    );
    let metrics = rx.wait_for_metrics(Duration::from_secs(30), |m| {
        m.iter().any(|m| m.name == "system.uptime")
            && m.iter().any(|m| m.name == labctl::telemetry::DROPPED)
    });
    // The latest export of each metric, as the OTel Collector would get it.
    let mut latest: BTreeMap<&str, &otlp::Metric> = BTreeMap::new();
    for m in &metrics {
        latest.insert(&m.name, m);
    }
    let mut want = BTreeSet::new();
    let mut resource = None;
    for m in latest.values() {
        let name = prw_name(&m.name, &m.unit, m.kind, m.monotonic);
        for (attrs, _) in &m.points {
            want.insert(prw_series(&name, attrs, &m.resource));
        }
        resource = Some(m.resource.clone());
    }
    let resource = resource.unwrap();
    assert_eq!(resource["service.instance.id"], "node1");
    // target_info: the resource but job's and instance's sources, with job and instance.
    let mut info: BTreeMap<String, String> = resource
        .iter()
        .filter(|(k, _)| {
            !["service.name", "service.namespace", "service.instance.id"].contains(&k.as_str())
        })
        .map(|(k, v)| (k.replace('.', "_"), v.clone()))
        .collect();
    info.insert("job".into(), resource["service.name"].clone());
    info.insert("instance".into(), resource["service.instance.id"].clone());
    let inner: Vec<String> = info.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.insert(format!("target_info{{{}}}", inner.join(",")));

    let (code, text) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    let got: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
        .collect();
    let missing: Vec<&String> = want.difference(&got).collect();
    let extra: Vec<&String> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing on /metrics: {missing:#?}\nnot in the OTLP export: {extra:#?}"
    );
    assert!(got.len() > 50, "{}", got.len());
}

// ---------------------------------------------------------------------------------------------
// Documentation.

/// docs/agents.md's table of metrics in Prometheus: OpenTelemetry name → (kind, unit, Prometheus
/// name).
fn documented() -> BTreeMap<String, (String, String, String)> {
    let doc = std::fs::read_to_string(repo().join("docs/agents.md")).unwrap();
    let table = doc
        .split("## Metrics in Prometheus")
        .nth(1)
        .expect("docs/agents.md has a `## Metrics in Prometheus` section");
    let mut out = BTreeMap::new();
    for line in table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
    {
        let cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').to_string())
            .collect();
        assert_eq!(cells.len(), 6, "{line}");
        out.insert(
            cells[0].clone(),
            (cells[1].clone(), cells[2].clone(), cells[5].clone()),
        );
    }
    out
}

#[test]
fn every_metric_in_a_dashboard_or_rule_is_documented_under_its_prometheus_name() {
    let docs = documented();
    let mut names = BTreeSet::new();
    for (metric, (kind, unit, prom)) in &docs {
        let kind = match kind.as_str() {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "updowncounter" => Kind::UpDownCounter,
            other => panic!("{metric}: kind `{other}`"),
        };
        let unit = if unit == "(none)" { "" } else { unit.as_str() };
        let name = metric_name(&Point::new(
            Box::leak(metric.clone().into_boxed_str()),
            Box::leak(unit.to_string().into_boxed_str()),
            "",
            kind,
            0.0,
        ));
        assert_eq!(&name, prom, "docs/agents.md: {metric} arrives as {name}");
        names.insert(name);
    }
    // Every name the code produces is documented (the points agents record).
    let mut c = labctl::agent::proxy::metrics::Counts::default();
    let mut points = c.start();
    let (a, b) = c.sync("c", "ok", Duration::ZERO, std::time::SystemTime::now());
    points.extend(a.into_iter().chain(b));
    points.extend(c.delivery(None, 200));
    points.extend(c.pipeline_start("p", 202));
    points.extend(labctl::agent::gate::points(true, 1));
    points.extend(labctl::agent::collector::unit_points(
        "u.service",
        "s",
        "active",
        Some(("simple".into(), 0)),
    ));
    let f = repo().join("tests/fixtures/proc-sys");
    let mut host = labctl::agent::collector::host::Host::new(
        &f.join("proc"),
        &f.join("sys"),
        &f.join("root"),
        &[],
    );
    assert!(host.collect(&mut points).is_empty());
    points.push(Point::new(
        labctl::telemetry::DROPPED,
        "{item}",
        "",
        Kind::Counter,
        0.0,
    ));
    for name in ["tailscale.up", "tailscale.funnel.on"] {
        points.push(Point::new(name, "", "", Kind::Gauge, 0.0));
    }
    points.push(Point::new(
        "tailscale.peers.online",
        "{peer}",
        "",
        Kind::Gauge,
        0.0,
    ));
    for p in &points {
        assert!(
            names.contains(&metric_name(p)),
            "{} ({}) is not in docs/agents.md",
            p.name,
            metric_name(p)
        );
    }
    // Every metric a query reads is one of them, Prometheus's own, or the OTel Collector's.
    let r = Rendered::bundled();
    let mut exprs: Vec<String> = rules(&r.rules()).into_iter().map(|r| r.expr).collect();
    for d in r.dashboards().values() {
        for p in all_panels(d) {
            if p["datasource"]["type"] == "prometheus" {
                exprs.extend(
                    p["targets"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["expr"].as_str().unwrap().to_string()),
                );
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if let Some((metric, _)) = v["query"].as_str().and_then(label_values) {
                exprs.push(metric.to_string());
            }
        }
    }
    for e in &exprs {
        for m in metrics_in(e) {
            assert!(
                names.contains(&m) || m == "ALERTS",
                "`{m}` (in `{e}`) is not in docs/agents.md's metrics table"
            );
        }
    }
}

#[test]
fn the_layout_pictures_in_docs_match_the_dashboards() {
    let dashboards = Rendered::bundled().dashboards();
    let json_dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, d) in &dashboards {
        let p = json_dir.path().join(name);
        std::fs::write(&p, serde_json::to_string(d).unwrap()).unwrap();
        files.push(p);
    }
    let ran = Command::new("python3")
        .arg(repo().join("scripts/dashboard-layout.py"))
        .arg(out.path())
        .args(&files)
        .output()
        .expect("python3 runs scripts/dashboard-layout.py");
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let docs = repo().join("docs/dashboards");
    let update = std::env::var_os("LABCTL_UPDATE_DOCS").is_some();
    let doc = std::fs::read_to_string(repo().join("docs/dashboards.md")).unwrap();
    for name in dashboards.keys() {
        let svg = name.replace(".json", ".svg");
        let drawn = std::fs::read_to_string(out.path().join(&svg)).unwrap();
        assert!(drawn.matches("<rect").count() > 5, "{drawn}");
        if update {
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(&svg), &drawn).unwrap();
        }
        let committed = std::fs::read_to_string(docs.join(&svg)).unwrap_or_default();
        assert!(
            committed == drawn,
            "docs/dashboards/{svg} is not the layout of {name}: run `LABCTL_UPDATE_DOCS=1 cargo test --test dashboards layout`"
        );
        assert!(
            doc.contains(&format!("(dashboards/{svg})")),
            "docs/dashboards.md does not show {svg}"
        );
    }
}
