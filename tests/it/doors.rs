//! The architecture keeps itself true: each external crate is used only in its room (the module
//! map of the design brief). A stray `use kube::...` in `src/plan/` fails here, naming the file,
//! the line and the crate.
//!
//! `k8s_openapi` has a second room, `src/schema_check.rs`: it uses only the crate's types (to
//! check rendered objects strictly against the API's shapes), never a client.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crate → the files or folders (ending in `/`) allowed to use it.
const ROOMS: &[(&str, &[&str])] = &[
    ("kube", &["src/backend/kube/"]),
    ("k8s_openapi", &["src/backend/kube/", "src/schema_check.rs"]),
    ("zbus", &["src/backend/systemd/"]),
    ("minijinja", &["src/render/"]),
    ("opentelemetry", &["src/telemetry.rs", "src/telemetry/"]),
    ("opentelemetry_sdk", &["src/telemetry.rs", "src/telemetry/"]),
    (
        "opentelemetry_otlp",
        &["src/telemetry.rs", "src/telemetry/"],
    ),
    (
        "opentelemetry_proto",
        &["src/telemetry.rs", "src/telemetry/"],
    ),
    (
        "opentelemetry_semantic_conventions",
        &["src/telemetry.rs", "src/telemetry/"],
    ),
    (
        "tracing_opentelemetry",
        &["src/telemetry.rs", "src/telemetry/"],
    ),
    ("axum", &["src/agent/proxy/http.rs"]),
    ("tokio_postgres", &["src/agent/ingest/db.rs"]),
    (
        "reqwest",
        &[
            "src/backend/openbao/",
            "src/agent/ingest/github.rs",
            "src/ops/gates.rs",
        ],
    ),
    ("indicatif", &["src/view/"]),
];

/// A use of `krate` outside its room.
#[derive(Debug, PartialEq)]
struct Stray {
    file: String,
    line: usize,
    krate: &'static str,
}

fn allowed(file: &str, rooms: &[&str]) -> bool {
    rooms.iter().any(|r| {
        if r.ends_with('/') {
            file.starts_with(r)
        } else {
            file == *r
        }
    })
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether the source brings a module of its own named `name` into scope (`mod kube;`,
/// `use super::{kube, units};`, `use crate::plan::kube;`): then `kube::x` is that module.
fn local_module(text: &str, name: &str) -> bool {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut uses = String::new();
    for stmt in code.split(';') {
        let s = stmt.trim();
        if s.starts_with(&format!("mod {name}"))
            || s.starts_with(&format!("pub mod {name}"))
            || s.starts_with(&format!("pub(crate) mod {name}"))
        {
            return true;
        }
        if let Some(rest) = s
            .strip_prefix("use ")
            .or_else(|| s.strip_prefix("pub use "))
        {
            let rest = rest.trim();
            if rest.starts_with("crate::")
                || rest.starts_with("super::")
                || rest.starts_with("self::")
            {
                uses.push_str(rest);
                uses.push(';');
            }
        }
    }
    // `name` as a leaf of a local `use`: followed by `,`, `}` or the end, and not by `::`.
    let mut rest = uses.as_str();
    while let Some(i) = rest.find(name) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + name.len()..].trim_start();
        if before.is_none_or(|c| !ident_char(c))
            && (after.starts_with(',') || after.starts_with('}') || after.starts_with(';'))
        {
            return true;
        }
        rest = &rest[i + name.len()..];
    }
    false
}

/// Every line of `text` that names `krate` as a crate: `use krate::`, `krate::path`,
/// `::krate::`, `extern crate krate`. A path through a module (`backend::kube::`) is not the
/// crate; comments are skipped.
fn uses(text: &str, krate: &str) -> Vec<usize> {
    let local = local_module(text, krate);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut hit = code.contains(&format!("extern crate {krate}"));
        let mut rest = code;
        let mut offset = 0;
        while let Some(i) = rest.find(krate) {
            let at = offset + i;
            let before: Option<char> = code[..at].chars().next_back();
            let after = &code[at + krate.len()..];
            let pre = &code[..at];
            let is_path = after.starts_with("::")
                || (after.trim_start().starts_with(';') && pre.trim_end().ends_with("use"));
            if is_path && before.is_none_or(|c| !ident_char(c)) {
                hit |= match pre.strip_suffix("::") {
                    // `a::kube::x` goes through a module; `::kube::x` is the crate.
                    Some(head) => !head.chars().next_back().is_some_and(ident_char),
                    // `kube::x` is the crate unless the file has a module of that name.
                    None => !local,
                };
            }
            offset = at + krate.len();
            rest = &code[offset..];
        }
        if hit {
            out.push(n + 1);
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn strays(root: &Path) -> Vec<Stray> {
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&f).unwrap();
        for (krate, rooms) in ROOMS {
            if allowed(&rel, rooms) {
                continue;
            }
            for line in uses(&text, krate) {
                out.push(Stray {
                    file: rel.clone(),
                    line,
                    krate,
                });
            }
        }
    }
    out
}

#[test]
fn every_crate_stays_in_its_room() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let strays = strays(root);
    let text: Vec<String> = strays
        .iter()
        .map(|s| {
            let rooms = ROOMS.iter().find(|(k, _)| *k == s.krate).unwrap().1;
            format!(
                "{}:{}: uses `{}`, which only {} may use",
                s.file,
                s.line,
                s.krate,
                rooms.join(" and ")
            )
        })
        .collect();
    assert!(
        text.is_empty(),
        "crates outside their rooms:\n{}",
        text.join("\n")
    );
}

#[test]
fn the_scanner_sees_imports_and_paths_but_not_modules() {
    let src = "use kube::api::Patch;\n\
               // kube::comment\n\
               use crate::backend::kube::Connect;\n\
               fn f() { let _ = k8s_openapi::api::core::v1::Pod::default(); }\n\
               fn g() -> ::zbus::Result<()> { todo!() }\n";
    assert_eq!(uses(src, "kube"), vec![1]);
    assert_eq!(uses(src, "k8s_openapi"), vec![4]);
    assert_eq!(uses(src, "zbus"), vec![5]);
    let local = "use super::{kube, units};\nfn f() { kube::prepare_all(); }\n";
    assert!(uses(local, "kube").is_empty());
    let module = "//! docs\n\npub mod kube;\nfn f() { kube::apply(); }\n";
    assert!(uses(module, "kube").is_empty());
    let stray = "use super::units;\nfn f() { kube::Client::new(); }\n";
    assert_eq!(uses(stray, "kube"), vec![2]);
    assert!(allowed("src/view/progress.rs", &["src/view/"]));
    assert!(!allowed("src/apply/mod.rs", &["src/view/"]));
}

/// The rooms under `src/` (its top-level modules: `plan`, `backend`, `stack`, ...) that the file
/// at `rel` (relative to `src/`) names with `crate::` paths, comments and tests left out.
fn rooms_named(rel: &str, text: &str) -> BTreeSet<String> {
    let own = room_of(rel);
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut out = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            // `crate::{a, b::c}` names each part.
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                group.split('}').next().unwrap_or("").split(',').collect()
            } else {
                vec![rest]
            };
            for n in names {
                let name: String = n.trim().chars().take_while(|c| ident_char(*c)).collect();
                if !name.is_empty() && Some(name.as_str()) != own.as_deref() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

/// `plan` for `plan/kube/mod.rs`; `None` for the crate roots.
fn room_of(rel: &str) -> Option<String> {
    let first = rel.split('/').next()?;
    let room = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(room, "lib" | "main" | "bin")).then(|| room.to_string())
}

/// A circle of rooms, as `a -> b -> a`, if the graph has one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

/// No two rooms import each other, however indirectly: each room's door is narrow, and a change
/// in one never needs the other to change back.
#[test]
fn no_room_imports_a_room_that_imports_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let Some(room) = room_of(&rel) else { continue };
        let text = std::fs::read_to_string(&f).unwrap();
        edges
            .entry(room)
            .or_default()
            .extend(rooms_named(&rel, &text));
    }
    assert!(edges.len() > 10, "rooms found: {:?}", edges.keys());
    if let Some(c) = circle(&edges) {
        panic!("rooms in a circle: {}", c.join(" -> "));
    }
}

#[test]
fn the_circle_finder_finds_one_and_only_one() {
    let g = |pairs: &[(&str, &str)]| {
        let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            e.entry(a.to_string()).or_default().insert(b.to_string());
        }
        e
    };
    assert_eq!(
        circle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(circle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        rooms_named(
            "plan/kube/mod.rs",
            "use crate::{error::Error, resource};\nuse crate::plan::x;\n"
        ),
        ["error", "resource"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}
