//! Replays every exchange recorded from a real kube-apiserver 1.36 (`tests/transcripts/01..12`)
//! against a fresh test server and compares status, `Content-Type` and body.
//!
//! Volatile values (uids, resourceVersions, times, cluster IPs, continue tokens, the token and
//! its expiry, the contents of the server's own `kube-system` ConfigMaps) are not compared
//! as values; their relations are: two resourceVersions are equal (or one is older) in our
//! answers exactly when they were in the recording, and a time recorded as later is later here
//! too. Where the recording was trimmed (file 12), the items that are there must be in our
//! answer, equal and in the same relative order.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{Resp, request, start};
use labctl_testapi::TestApiServer;
use serde_json::{Value, json};

/// A volatile value found in an answer: what it is, where, and the value.
#[derive(Debug, Clone)]
struct Volatile {
    kind: &'static str,
    at: String,
    value: String,
}

/// Replaces volatile values with a marker (so presence still counts), collecting them.
fn scrub(v: &mut Value, at: &str, out: &mut Vec<Volatile>) {
    match v {
        Value::Object(m) => {
            // The server's own ConfigMaps in kube-system: only their names are stable.
            if m.get("metadata")
                .and_then(|md| md.get("namespace"))
                .and_then(Value::as_str)
                == Some("kube-system")
                && m.contains_key("data")
            {
                let md = &m["metadata"];
                *v = json!({"metadata": {"name": md["name"], "namespace": md["namespace"]}});
                return;
            }
            for (k, child) in m.iter_mut() {
                let here = format!("{at}.{k}");
                let kind = match k.as_str() {
                    "resourceVersion" => Some("rv"),
                    "creationTimestamp" | "time" => Some("time"),
                    "uid"
                    | "clusterIP"
                    | "clusterIPs"
                    | "continue"
                    | "expirationTimestamp"
                    | "token" => Some("opaque"),
                    _ => None,
                };
                match kind {
                    Some(kind) if !child.is_object() => {
                        out.push(Volatile {
                            kind,
                            at: here,
                            value: match &*child {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            },
                        });
                        *child = json!(format!("<{kind}>"));
                    }
                    _ => scrub(child, &here, out),
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter_mut().enumerate() {
                scrub(child, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Differences between two scrubbed bodies, as `path: recorded != ours` lines. The order of
/// an object's keys is not compared (Go prints struct fields in declaration order; JSON
/// readers do not care); the order of list items is.
fn diff(want: &Value, got: &Value, at: &str, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => diff(wv, gv, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k}: missing (recorded {wv})")),
                }
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{at}.{k}: unexpected {}", g[k]));
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                diff(wv, gv, &format!("{at}[{i}]"), out);
            }
        }
        _ if want == got => {}
        _ => out.push(format!("{at}: recorded {want} != ours {got}")),
    }
}

fn item_name(v: &Value) -> Option<&str> {
    v["name"]
        .as_str()
        .or_else(|| v["metadata"]["name"].as_str())
}

/// A trimmed recording: the array it cut down holds a subset of ours, by name, in order.
fn diff_trimmed(want: &Value, got: &Value, out: &mut Vec<String>) {
    let (Value::Object(w), Value::Object(g)) = (want, got) else {
        return diff(want, got, "", out);
    };
    for (k, wv) in w {
        let Some(gv) = g.get(k) else {
            out.push(format!(".{k}: missing"));
            continue;
        };
        match (wv, gv) {
            (Value::Array(wa), Value::Array(ga)) => {
                let mut last = None;
                for wi in wa {
                    let name = item_name(wi);
                    match ga.iter().position(|gi| item_name(gi) == name) {
                        None => out.push(format!(".{k}: no item named {name:?}")),
                        Some(pos) => {
                            if last.is_some_and(|l| pos < l) {
                                out.push(format!(".{k}: {name:?} out of order"));
                            }
                            last = Some(pos);
                            diff(wi, &ga[pos], &format!(".{k}[{name:?}]"), out);
                        }
                    }
                }
            }
            _ => diff(wv, gv, &format!(".{k}"), out),
        }
    }
}

/// Seconds since the epoch of an RFC 3339 time in whole seconds (`2026-11-30T07:55:29Z`).
fn secs(t: &str) -> i64 {
    let n = |a: usize, b: usize| -> i64 { t[a..b].parse().expect("time digits") };
    let (y, mo, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (y, mo) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)
}

/// Checks that the volatile values relate in our answers as they did in the recording.
fn check_relations(pairs: &[(String, Volatile, Volatile)], out: &mut Vec<String>) {
    let rvs: Vec<_> = pairs.iter().filter(|(_, w, _)| w.kind == "rv").collect();
    for (i, (ei, wi, gi)) in rvs.iter().enumerate() {
        for (ej, wj, gj) in &rvs[i + 1..] {
            let num = |v: &Volatile| v.value.parse::<u64>().unwrap_or(0);
            let (w, g) = (num(wi).cmp(&num(wj)), num(gi).cmp(&num(gj)));
            if w != g {
                out.push(format!(
                    "resourceVersion {ei}{} vs {ej}{}: recorded {w:?}, ours {g:?} ({} vs {})",
                    wi.at, wj.at, gi.value, gj.value
                ));
            }
        }
    }
    let times: Vec<_> = pairs.iter().filter(|(_, w, _)| w.kind == "time").collect();
    for (i, (ei, wi, gi)) in times.iter().enumerate() {
        for (ej, wj, gj) in &times[i + 1..] {
            let (w, g) = (
                secs(&wi.value) - secs(&wj.value),
                secs(&gi.value) - secs(&gj.value),
            );
            let ok = match w.signum() {
                0 => g.abs() <= 1,
                s => g.signum() == s,
            };
            if !ok {
                out.push(format!(
                    "time {ei}{} vs {ej}{}: recorded {} vs {}, ours {} vs {}",
                    wi.at, wj.at, wi.value, wj.value, gi.value, gj.value
                ));
            }
        }
    }
}

/// The pause a note asks for before its exchange (`1.5 s later, ...`).
fn pause_of(note: &str) -> Option<Duration> {
    let (n, rest) = note.split_once(' ')?;
    rest.starts_with("s later")
        .then(|| n.parse::<f64>().ok().map(Duration::from_secs_f64))
        .flatten()
}

fn send(srv: &TestApiServer, req: &Value, token: Option<&str>, path: &str) -> Resp {
    let mut headers: Vec<(String, String)> = req["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "Authorization")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    if req["headers"].get("Authorization").is_some() {
        let token = token.expect("a TokenRequest answered before a bearer request");
        headers.push(("Authorization".into(), format!("Bearer {token}")));
    }
    let body = match &req["body"] {
        Value::Null => None,
        b => Some(b.to_string()),
    };
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    request(
        srv,
        req["method"].as_str().expect("method"),
        path,
        &h,
        body.as_deref(),
    )
}

fn replay(file: &str) {
    let path = format!("{}/tests/transcripts/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let rec: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let srv = start();
    let mut token: Option<String> = None;
    // Recorded continue token → ours, to follow pages.
    let mut continues: BTreeMap<String, String> = BTreeMap::new();
    let mut pairs: Vec<(String, Volatile, Volatile)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for (i, ex) in rec["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .enumerate()
    {
        let note = ex["note"].as_str().unwrap_or_default();
        if let Some(d) = pause_of(note) {
            std::thread::sleep(d);
        }
        let req = &ex["request"];
        let mut path = req["path"].as_str().expect("path").to_string();
        for (theirs, ours) in &continues {
            path = path.replace(theirs.as_str(), ours);
        }
        let resp = send(&srv, req, token.as_deref(), &path);
        let want = &ex["response"];
        let label = format!("#{i} {} {}", req["method"].as_str().unwrap_or(""), path);
        let mut here = Vec::new();
        if want["status"].as_u64() != Some(u64::from(resp.status)) {
            here.push(format!(
                "status: recorded {} != ours {}",
                want["status"], resp.status
            ));
        }
        let want_ct = want["headers"]["Content-Type"].as_str().unwrap_or_default();
        let got_ct = resp.header("content-type").unwrap_or_default();
        if want_ct != got_ct {
            here.push(format!(
                "Content-Type: recorded {want_ct:?} != ours {got_ct:?}"
            ));
        }
        let got: Value = serde_json::from_slice(&resp.body).unwrap_or_else(
            |_| json!({"<not JSON>": String::from_utf8_lossy(&resp.body).to_string()}),
        );
        if let Some(t) = got["status"]["token"].as_str() {
            token = Some(t.to_string());
        }
        if let (Some(theirs), Some(ours)) = (
            want["body"]["metadata"]["continue"].as_str(),
            got["metadata"]["continue"].as_str(),
        ) {
            continues.insert(theirs.to_string(), ours.to_string());
        }
        let (mut w, mut g) = (want["body"].clone(), got);
        let (mut wv, mut gv) = (Vec::new(), Vec::new());
        scrub(&mut w, "", &mut wv);
        scrub(&mut g, "", &mut gv);
        if ex.get("trimmed").is_some() {
            diff_trimmed(&w, &g, &mut here);
        } else {
            diff(&w, &g, "", &mut here);
        }
        if here.is_empty() {
            for (a, b) in wv.into_iter().zip(gv) {
                pairs.push((format!("#{i}"), a, b));
            }
        }
        problems.extend(here.into_iter().map(|p| format!("{label}: {p}")));
    }
    check_relations(&pairs, &mut problems);
    assert!(
        problems.is_empty(),
        "{file}: the test server answers differently from the recording:\n{}",
        problems.join("\n")
    );
}

macro_rules! replays {
    ($($name:ident => $file:literal,)*) => {$(
        #[test]
        fn $name() {
            replay($file);
        }
    )*};
}

replays! {
    ssa_create_configmap => "01-ssa-create-configmap.json",
    ssa_noop_reapply => "02-ssa-noop-reapply.json",
    ssa_conflict => "03-ssa-conflict.json",
    keyed_list_service_ports => "04-keyed-list-service-ports.json",
    keyed_list_containers_merge => "05-keyed-list-containers-merge.json",
    atomic_and_defaults => "06-atomic-and-defaults.json",
    dropped_field => "07-dropped-field.json",
    immutable => "08-immutable.json",
    quota_dry_run => "09-quota-dry-run.json",
    list_selector_paging => "10-list-selector-paging.json",
    rbac_namespaced => "11-rbac-namespaced.json",
    discovery => "12-discovery.json",
}

/// The test's own checks must be able to fail: a wrong status, a changed body and a broken
/// resourceVersion relation are each reported.
#[test]
fn comparison_catches_differences() {
    let mut out = Vec::new();
    diff(
        &json!({"a": 1, "b": [1, 2]}),
        &json!({"a": 1, "b": [2, 1]}),
        "",
        &mut out,
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let (mut w, mut g) = (
        json!({"metadata": {"resourceVersion": "5", "uid": "x"}}),
        json!({"metadata": {"resourceVersion": "9", "uid": "y"}}),
    );
    let (mut wv, mut gv) = (Vec::new(), Vec::new());
    scrub(&mut w, "", &mut wv);
    scrub(&mut g, "", &mut gv);
    assert_eq!(w, g, "volatile values are not compared as values");
    let v = |kind, value: &str| Volatile {
        kind,
        at: ".metadata.resourceVersion".into(),
        value: value.into(),
    };
    let mut out = Vec::new();
    check_relations(
        &[
            ("#1".into(), v("rv", "5"), v("rv", "9")),
            ("#2".into(), v("rv", "5"), v("rv", "10")),
        ],
        &mut out,
    );
    assert_eq!(
        out.len(),
        1,
        "an unchanged resourceVersion that moved: {out:?}"
    );
    assert_eq!(
        pause_of("1.5 s later, labctl re-applies"),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(secs("1970-01-02T00:00:01Z"), 86_401);
}
