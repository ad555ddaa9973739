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

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
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

use crate::support::tailscaled::Tailscaled;
use crate::support::{Labctl, free_port, http_get, otlp, repo};

mod alerts;
mod docs;
mod model;
mod prometheus;

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

/// `label_values(metric, label)` as (metric selector, label).
fn label_values(q: &str) -> Option<(&str, &str)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (metric, label) = inner.rsplit_once(',')?;
    Some((metric.trim(), label.trim()))
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
