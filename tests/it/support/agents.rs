//! For the proxy and gate tests: the real `labctl agent proxy` on a loopback port, a checkout for
//! it, and a small HTTP/1.1 client (each request on its own connection, as GitHub's deliveries
//! come).

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use super::{Labctl, Output, free_port, git, signal};

/// The webhook secret the tests' proxies use.
pub const SECRET: &str = "It's a Secret to Everybody";

/// A checkout for the proxy: `git init`, an `origin` named like the fixture payload's repository
/// (`acme/homelab`), and `stack_toml` as its stack file.
pub fn checkout(dir: &Path, stack_toml: &str) -> PathBuf {
    let repo = dir.join("homelab");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let origin = dir.join("origin/acme/homelab.git");
    git(
        &repo,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    std::fs::write(repo.join("stack.toml"), stack_toml).unwrap();
    repo
}

/// A stack with only the proxy (and `extra`, more TOML) enabled, for the user manager.
pub fn proxy_stack(extra: &str) -> String {
    let mut t = String::from("[stack]\nname = \"edge\"\n\n");
    for c in [
        "kube.collectors",
        "kube.grafana",
        "kube.loki",
        "kube.minio",
        "kube.otel-collector",
        "kube.postgres",
        "kube.prometheus",
        "kube.tempo",
        "kube.thanos",
        "host.collector",
        "host.gate",
        "host.openbao",
        "host.reading-sync",
    ] {
        t.push_str(&format!("[{c}]\nenabled = false\n\n"));
    }
    t.push_str("[host]\nscope = \"user\"\n\n");
    t.push_str(extra);
    t
}

/// A running `labctl agent proxy`.
pub struct Proxy {
    /// Its process.
    pub child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
}

/// A `labctl agent proxy` to start: its command, loopback port and log file.
#[derive(Clone)]
pub struct ProxyCmd {
    /// `labctl agent proxy` and its environment.
    pub labctl: Labctl,
    /// The loopback port it listens on.
    pub port: u16,
    /// Where its stderr goes, across restarts.
    pub log: PathBuf,
}

impl ProxyCmd {
    /// The proxy for `repo` on a free port, with the webhook secret set and, of the test's
    /// environment, only `PATH`.
    pub fn new(repo: &Path) -> Self {
        let port = free_port();
        let labctl = Labctl::new()
            .args(["agent", "proxy", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--repo-dir")
            .arg(repo)
            .args(["--branch", "main"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LABCTL_LOG", "info")
            // No bus unless the test gives one.
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
            .env("LABCTL_WEBHOOK_SECRET", SECRET);
        ProxyCmd {
            labctl,
            port,
            log: repo.parent().unwrap().join("proxy.log"),
        }
    }

    /// One more environment variable.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.labctl = self.labctl.env(k, v);
        self
    }

    /// Without variable `k`.
    pub fn env_remove(mut self, k: &str) -> Self {
        self.labctl = self.labctl.env_remove(k);
        self
    }

    /// One more argument.
    pub fn arg(mut self, a: &str) -> Self {
        self.labctl = self.labctl.arg(a);
        self
    }

    /// Run to completion (for start-up failures).
    #[track_caller]
    pub fn run(&self) -> Output {
        self.labctl.run()
    }

    /// Start it and wait until `/healthz` answers.
    pub fn start(&self) -> Proxy {
        let mut p = Proxy {
            child: self.labctl.clone().log_to(&self.log).spawn(),
            port: self.port,
            log: self.log.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = try_request(p.port, "GET", "/healthz", &[], b"")
                && r.status == 200
            {
                return p;
            }
            if let Some(s) = p.child.try_wait().unwrap() {
                panic!("the proxy exited ({s}) before serving:\n{}", p.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not serve within 30 s:\n{}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Proxy {
    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send a request.
    #[track_caller]
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        try_request(self.port, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log_text()))
    }

    /// Send a signed GitHub delivery.
    #[track_caller]
    pub fn deliver(&self, event: &str, delivery: &str, content_type: &str, body: &[u8]) -> Answer {
        let sig = labctl::agent::proxy::webhook::sign(SECRET.as_bytes(), body);
        self.request(
            "POST",
            "/hooks/github",
            &[
                ("X-GitHub-Event", event),
                ("X-GitHub-Delivery", delivery),
                ("X-Hub-Signature-256", &sig),
                ("Content-Type", content_type),
                ("User-Agent", "GitHub-Hookshot/044aadd"),
            ],
            body,
        )
    }

    /// Send a signal (`TERM`, `KILL`) to it.
    pub fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }

    /// SIGTERM, and its exit code once it stopped.
    pub fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(Instant::now() < deadline, "the proxy did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    read_answer(&mut s)
}

/// Read an answer until the server closes the connection.
pub fn read_answer(s: &mut TcpStream) -> std::io::Result<Answer> {
    let mut raw = Vec::new();
    // The server may close while a refused body is still unsent: what arrived is the answer.
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no answer: {text:?}"),
        )
    })?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, head.to_string()))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}
