//! Grafana's dashboard model, as grafana-foundation-sdk 11.4 types it (`models/dashboard.py`, the
//! panel plugins registered in `cog/plugins.py`): every dashboard follows it, names a provisioned
//! datasource and links to dashboards that exist; the SDK reads each one back; a stack adds and
//! overrides dashboards.

use super::*;

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
