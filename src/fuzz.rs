//! Entry points for the fuzz targets (`fuzz/`, cargo-fuzz) and for the test that replays their
//! corpora and saved crashes (`tests/it/fuzz_corpus.rs`): each takes raw bytes, reads them the
//! way labctl reads that input, and checks what must hold whatever the input. A panic or a
//! failed check is a finding; an error for bad input is the expected outcome.
//!
//! Inputs made of several parts (headers and a body, two answers, a set of /proc files) separate
//! them with [`SEP`], so that seed corpora can be written from the project's fixtures by hand.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

/// The separator of the parts of one input (ASCII record separator).
pub const SEP: u8 = 0x1e;

fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |b| *b == SEP).collect();
    out.resize(n, &[]);
    out
}

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// `stack.toml` text: parsed, validated, its problems rendered as the user sees them, and a
/// valid stack rendered with the shipped templates.
pub fn stack_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::stack::parse(Path::new("stack.toml"), text) {
        Ok(stack) => {
            let templates = crate::render::Templates::builtin();
            let _ = crate::render::render(
                &stack,
                &templates,
                &crate::sensitive::Secrets::redacted(),
                None,
            );
        }
        Err(e) => {
            let shown = crate::view::render_error(&e, crate::view::Styles::detect(true, false));
            assert!(!shown.is_empty());
        }
    }
}

/// The strings of [`template_values`], in the bundled stack, in the order the input's parts set
/// them: each is printed into a unit or a manifest, none decides what a template renders.
const HOSTILE: &[&[&str]] = &[
    &["host", "reading-sync", "command"],
    &["host", "proxy", "branch"],
    &["host", "proxy", "repo_dir"],
    &["host", "ingest", "repository"],
    &["host", "ingest", "label"],
    &["host", "collector", "environment", "A"],
    &["host", "gate", "environment", "B"],
    &["host", "openbao", "binary"],
];

fn set(table: &mut toml::Table, path: &[&str], value: &str) {
    let (last, inner) = path.split_last().expect("a path");
    let mut t = table;
    for k in inner {
        t = t
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a table");
    }
    t.insert(last.to_string(), toml::Value::String(value.to_string()));
}

fn bundled(values: &[String]) -> Option<crate::resource::Desired> {
    static BUNDLED: &str = include_str!("../stack.toml");
    let mut table: toml::Table = BUNDLED.parse().expect("the bundled stack.toml");
    for (path, v) in HOSTILE.iter().zip(values) {
        set(&mut table, path, v);
    }
    let text = toml::to_string(&table).ok()?;
    let stack = crate::stack::parse(Path::new("stack.toml"), &text).ok()?;
    crate::render::render(
        &stack,
        &crate::render::Templates::builtin(),
        &crate::sensitive::Secrets::redacted(),
        None,
    )
    .ok()
}

/// Hostile values in the bundled stack's strings ([`HOSTILE`]), rendered with the shipped
/// templates. Checked: a value the stack accepts never adds or removes a line of a unit (no
/// directive smuggled in through a newline), compared with the same stack holding plain values.
pub fn template_values(data: &[u8]) {
    let values: Vec<String> = parts(data, HOSTILE.len())
        .into_iter()
        .map(|p| text(p).into_owned())
        .collect();
    let Some(hostile) = bundled(&values) else {
        return;
    };
    // The same values with every character but `[A-Za-z0-9/._-]` made an `x`: same shape, no
    // way to break a line or a quote.
    let plain: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "/._-".contains(c) {
                        c
                    } else {
                        'x'
                    }
                })
                .collect()
        })
        .collect();
    let Some(plain) = bundled(&plain) else {
        return;
    };
    for (id, o) in &hostile.objects {
        if id.plane() != crate::stack::Plane::Systemd {
            continue;
        }
        let Some(p) = plain.objects.get(id) else {
            continue;
        };
        let (h, p) = (o.content.text(), p.content.text());
        assert_eq!(
            h.lines().count(),
            p.lines().count(),
            "a value changed the lines of `{id}`:\n{h}"
        );
    }
}

/// Rendered manifests: the YAML reader.
pub fn yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::yaml::documents(text);
    }
}

/// A unit file as labctl reads one from a unit folder: its owner marker, `[Install]`, whether
/// the stack runs it.
pub fn unit_file(data: &[u8]) {
    let t = text(data);
    let _ = crate::resource::unit_owner(&t);
    let _ = crate::plan::installable(&t);
    let d = crate::resource::Desired::default();
    for unit in ["a.service", "a.timer", "a.socket", "a.path"] {
        let _ = crate::plan::wants_active(None, unit, &t, &d);
    }
}

struct Webhook {
    rt: tokio::runtime::Runtime,
    proxy: Arc<crate::agent::proxy::Proxy>,
    _dir: tempfile::TempDir,
}

const WEBHOOK_SECRET: &str = "fuzz-secret";

fn webhook_proxy() -> &'static Webhook {
    static W: OnceLock<Webhook> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp folder");
        // SAFETY: set once, before the proxy (the only reader) is built, on this thread.
        unsafe { std::env::set_var("LABCTL_WEBHOOK_SECRET", WEBHOOK_SECRET) };
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "labctl",
            "agent",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--branch",
            "main",
            "--repo-dir",
            &dir.path().to_string_lossy(),
            "--state-dir",
            &dir.path().join("state").to_string_lossy(),
        ])
        .expect("proxy arguments");
        let crate::cli::Command::Agent(a) = cli.command else {
            unreachable!()
        };
        let crate::cli::AgentCommand::Proxy(args) = a.agent else {
            unreachable!()
        };
        let proxy = crate::agent::proxy::configure(&args).expect("a proxy");
        Webhook {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            proxy: Arc::new(proxy),
            _dir: dir,
        }
    })
}

/// A webhook delivery: part 1 is the `X-GitHub-Event`, part 2 the delivery id, part 3 the
/// content type (either of GitHub's two, or anything), part 4 the signature header (empty:
/// signed correctly, so the body reaches the parser), part 5 the body.
pub fn webhook(data: &[u8]) {
    let p = parts(data, 5);
    let (event, id, ctype, sig) = (text(p[0]), text(p[1]), text(p[2]), text(p[3]));
    let body = p[4];
    let good = crate::agent::proxy::webhook::sign(WEBHOOK_SECRET.as_bytes(), body);
    let signature = if sig.is_empty() { &good } else { &*sig };
    let w = webhook_proxy();
    let d = crate::agent::proxy::webhook::Delivery {
        signature: Some(signature),
        event: (!event.is_empty()).then_some(&*event),
        id: (!id.is_empty()).then_some(&*id),
        content_type: (!ctype.is_empty()).then_some(&*ctype),
    };
    let reply =
        w.rt.block_on(crate::agent::proxy::webhook::handle(&w.proxy, d, body));
    assert!((200..600).contains(&reply.status), "{}", reply.status);
    if sig.is_empty() && !id.is_empty() {
        // A correctly signed delivery is never refused as unsigned.
        assert_ne!(reply.status, 401, "{:?}", reply.body);
    }
}

/// A GitHub page: part 1 is the `Link` header, part 2 the body, read as a page of issues and as
/// one of comments.
pub fn github_page(data: &[u8]) {
    let p = parts(data, 2);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(p[0]) {
        headers.insert(http::header::LINK, v);
    }
    let url = "https://api.github.com/repos/o/r/issues?page=1";
    let _ = crate::agent::ingest::github::issues_page(url, &headers, p[1]);
    let _ = crate::agent::ingest::github::comments_page(url, &headers, p[1]);
}

/// A live object with `managedFields` (part 1) projected onto what labctl compares, against a
/// desired object (part 2, optional), with list types from an OpenAPI document (part 3,
/// optional).
pub fn projection(data: &[u8]) {
    let p = parts(data, 3);
    let Ok(live) = serde_json::from_slice::<Value>(p[0]) else {
        return;
    };
    let desired = serde_json::from_slice::<Value>(p[1]).ok();
    let types = serde_json::from_slice::<Value>(p[2])
        .ok()
        .map(|d| crate::plan::kube::ListTypes::from_openapi(&d));
    let _ = crate::plan::kube::labctl_fields(&live);
    let _ = crate::plan::kube::comparable_by(&live, desired.as_ref(), types.as_ref());
}

/// An OpenAPI v3 document, read for its list merge types.
pub fn openapi(data: &[u8]) {
    if let Ok(doc) = serde_json::from_slice::<Value>(data) {
        let _ = crate::plan::kube::ListTypes::from_openapi(&doc);
    }
}

/// tailscaled's status (part 1) and serve config (part 2).
pub fn tailscale(data: &[u8]) {
    let p = parts(data, 2);
    let mut out = Vec::new();
    let _ = crate::agent::collector::tailscale::from_answers(p[0], p[1], &mut out);
}

/// The /proc files the host collector reads, in this order, separated by [`SEP`].
pub const PROC_FILES: &[&str] = &[
    "stat",
    "loadavg",
    "meminfo",
    "swaps",
    "1/mountinfo",
    "diskstats",
    "net/dev",
    "uptime",
];

/// A /proc made of the input's parts ([`PROC_FILES`]), collected twice (the second collection
/// takes differences with the first).
pub fn procfs(data: &[u8]) {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let t = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        };
        t.expect("a temp folder")
    });
    let proc = dir.path().join("proc");
    for (name, part) in PROC_FILES.iter().zip(parts(data, PROC_FILES.len())) {
        let path = proc.join(name);
        let _ = std::fs::create_dir_all(path.parent().expect("a folder"));
        std::fs::write(&path, part).expect("a /proc file written");
    }
    let sys = dir.path().join("sys");
    let root = dir.path().join("root");
    let mut host = crate::agent::collector::host::Host::new(&proc, &sys, &root, &[]);
    let mut out = Vec::new();
    let _ = host.collect(&mut out);
    let _ = host.collect(&mut out);
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target, by name: what `fuzz/fuzz_targets/*.rs` and the corpus test call.
pub const TARGETS: &[(&str, Target)] = &[
    ("stack_toml", stack_toml),
    ("template_values", template_values),
    ("yaml", yaml),
    ("unit_file", unit_file),
    ("webhook", webhook),
    ("github_page", github_page),
    ("projection", projection),
    ("openapi", openapi),
    ("tailscale", tailscale),
    ("procfs", procfs),
];
