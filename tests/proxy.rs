//! `labctl agent proxy`, the real binary over loopback: webhook verification, limits, events,
//! delivery dedupe across a restart, and (against a real systemd user manager) the ingest reload
//! and pipelines.

#[path = "support/agents.rs"]
mod agents;
mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use agents::{ProxyCmd, checkout, proxy_stack, wait_for};
use support::systemd::UserManager;

const PUSH: &str = include_str!("fixtures/github-push.json");
const COMMIT: &str = "3d1f6b7e2c9a4f5b8e0d7c6a5b4f3e2d1c0b9a87";

fn pending(repo: &Path) -> Option<serde_json::Value> {
    let p = repo.join(".git/labctl-proxy/pending-sync.json");
    std::fs::read_to_string(p)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap())
}

fn clear_pending(repo: &Path) {
    std::fs::remove_file(repo.join(".git/labctl-proxy/pending-sync.json")).unwrap();
}

#[test]
fn refuses_to_start_without_the_secret_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let repo = checkout(dir.path(), &proxy_stack(""));
    let (code, stderr) = ProxyCmd::new(&repo)
        .without_env("LABCTL_WEBHOOK_SECRET")
        .run_to_end();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("`LABCTL_WEBHOOK_SECRET` is not set"),
        "{stderr}"
    );

    let repo2 = dir.path().join("p");
    std::fs::create_dir_all(&repo2).unwrap();
    let repo2 = checkout(
        &repo2,
        &proxy_stack("[host.proxy.pipelines.etl]\nunit = \"etl\"\n"),
    );
    let (code, stderr) = ProxyCmd::new(&repo2).run_to_end();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("`LABCTL_PIPELINE_TOKEN_ETL` is not set"),
        "{stderr}"
    );
}

#[test]
fn signature_limits_and_routes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = checkout(dir.path(), &proxy_stack(""));
    let p = ProxyCmd::new(&repo).arg("--body-limit").arg("4096").start();

    let r = p.request("GET", "/nowhere", &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(p.request("GET", "/healthz", &[], b"").status, 200);

    // Wrong and missing signatures get the same answer.
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let wrong = p.request(
        "POST",
        "/hooks/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-GitHub-Delivery", "d-wrong"),
            (
                "X-Hub-Signature-256",
                &labctl::agent::proxy::webhook::sign(b"guess", ping),
            ),
            ("Content-Type", "application/json"),
        ],
        ping,
    );
    let missing = p.request(
        "POST",
        "/hooks/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-GitHub-Delivery", "d-missing"),
        ],
        ping,
    );
    assert_eq!((wrong.status, missing.status), (401, 401));
    assert_eq!(wrong.body, missing.body);

    // An oversized body is refused on its announced length, before it is sent.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    write!(
        s,
        "POST /hooks/github HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nContent-Length: 10000000\r\n\r\n{{\"ref\":"
    )
    .unwrap();
    let r = agents::read_answer(&mut s).unwrap();
    assert_eq!(r.status, 413, "{r:?}");
    // Without a length (chunked), it is cut off at the limit.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    write!(
        s,
        "POST /hooks/github HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    for _ in 0..8 {
        let chunk = "x".repeat(1000);
        if write!(s, "{:x}\r\n{chunk}\r\n", chunk.len()).is_err() {
            break;
        }
    }
    let r = agents::read_answer(&mut s).unwrap();
    assert_eq!(r.status, 413, "{r:?}");

    assert_eq!(
        p.deliver("ping", "d-ping", "application/json", ping).status,
        200
    );
    // Bad JSON is named, after verification.
    let r = p.deliver("push", "d-bad", "application/json", b"{\"ref\":");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{r:?}"
    );
}

#[test]
fn push_queues_a_sync_once_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let repo = checkout(dir.path(), &proxy_stack(""));
    let cmd = ProxyCmd::new(&repo);
    let p = cmd.start();

    let r = p.deliver("push", "72d3162e-0001", "application/json", PUSH.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json()["commit"], COMMIT);
    let slot = pending(&repo).expect("a pending sync");
    assert_eq!(slot["commit"], COMMIT);
    assert_eq!(slot["ref"], "refs/heads/main");
    assert_eq!(slot["repository"], "acme/homelab");
    assert_eq!(slot["delivery"], "72d3162e-0001");

    // The sync took it; a redelivery is answered but does not queue it again.
    clear_pending(&repo);
    let r = p.deliver("push", "72d3162e-0001", "application/json", PUSH.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["result"], "already handled");
    assert!(pending(&repo).is_none());

    // Another branch, another repository: acknowledged, ignored.
    let other_branch = PUSH.replace("refs/heads/main", "refs/heads/feature");
    let r = p.deliver(
        "push",
        "72d3162e-0002",
        "application/json",
        other_branch.as_bytes(),
    );
    assert_eq!(r.status, 202);
    assert!(
        r.json()["result"].as_str().unwrap().starts_with("ignored"),
        "{r:?}"
    );
    let other_repo = PUSH.replace("acme/homelab", "evil/homelab");
    let r = p.deliver(
        "push",
        "72d3162e-0003",
        "application/json",
        other_repo.as_bytes(),
    );
    assert_eq!(r.status, 202);
    assert!(
        r.json()["result"].as_str().unwrap().starts_with("ignored"),
        "{r:?}"
    );
    assert!(pending(&repo).is_none());
    // Events the proxy does not act on.
    let r = p.deliver(
        "star",
        "72d3162e-0004",
        "application/json",
        b"{\"action\":\"created\"}",
    );
    assert_eq!(r.status, 202);

    // The form content type carries the same payload in `payload=`.
    let newer = PUSH.replace(COMMIT, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &newer)
        .finish();
    let r = p.deliver(
        "push",
        "72d3162e-0005",
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(pending(&repo).unwrap()["commit"], "a".repeat(40));
    clear_pending(&repo);

    // A restart remembers what was handled.
    assert_eq!(p.stop(), Some(0));
    let p = cmd.start();
    for id in ["72d3162e-0001", "72d3162e-0005"] {
        let r = p.deliver("push", id, "application/json", PUSH.as_bytes());
        assert_eq!(r.status, 200, "{id}: {r:?}");
    }
    assert!(pending(&repo).is_none());
    assert!(p.log_text().contains("redelivery"));
}

/// The stand-in ingest agent: records each SIGHUP in `file`.
fn ingest_unit(file: &Path) -> String {
    format!(
        "[Service]\nExecStart=/bin/sh -c 'trap \"echo hup >> {f}\" HUP; echo up >> {f}; while :; do sleep 0.1; done'\nExecReload=/bin/kill -HUP $MAINPID\n",
        f = file.display()
    )
}

#[test]
fn issues_reload_ingest_and_pipelines_start_units_on_a_real_manager() {
    let m = UserManager::start();
    let scratch = m.scratch();
    let hups = scratch.join("hups");
    let runs = scratch.join("runs");
    let units = m.unit_dir();
    std::fs::write(units.join("px-ingest.service"), ingest_unit(&hups)).unwrap();
    std::fs::write(
        units.join("px-etl.service"),
        format!(
            "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo run >> {}; sleep 3'\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::write(
        units.join("px-once.service"),
        "[Service]\nType=oneshot\nExecStart=/bin/true\n",
    )
    .unwrap();
    m.systemctl(&["daemon-reload"]);
    m.systemctl(&["start", "px-ingest.service"]);
    wait_for(Duration::from_secs(10), "the ingest stand-in", || {
        std::fs::read_to_string(&hups).is_ok_and(|t| t.contains("up"))
    });

    let repo = checkout(
        &scratch,
        &proxy_stack(
            "[host.ingest]\nunit = \"px-ingest\"\n\n\
             [host.proxy.pipelines.etl]\nunit = \"px-etl\"\nmin_interval = \"0s\"\n\n\
             [host.proxy.pipelines.once]\nunit = \"px-once\"\nmin_interval = \"1h\"\n",
        ),
    );
    let mut cmd = ProxyCmd::new(&repo)
        .env("LABCTL_PIPELINE_TOKEN_ETL", "etl-token")
        .env("LABCTL_PIPELINE_TOKEN_ONCE", "once-token");
    for (k, v) in m.env() {
        cmd = cmd.env(k, v);
    }
    let p = cmd.start();

    let r = p.request("GET", "/readyz", &[], b"");
    assert_eq!(r.status, 200, "{r:?}");

    // `issues` → 202 at once, then systemd reloads the ingest unit (SIGHUP).
    let r = p.deliver(
        "issues",
        "9f2b-issues-1",
        "application/json",
        br#"{"action":"opened","issue":{"number":1347,"title":"journal"},"repository":{"full_name":"acme/journal"}}"#,
    );
    assert_eq!(r.status, 202, "{r:?}");
    wait_for(
        Duration::from_secs(20),
        "SIGHUP reaching the ingest unit",
        || std::fs::read_to_string(&hups).is_ok_and(|t| t.contains("hup")),
    );
    assert_eq!(m.active_state("px-ingest.service"), "active");

    // Pipelines: bearer token, start → 202 with the job, running → 409.
    let bearer = |t: &str| format!("Bearer {t}");
    let etl = bearer("etl-token");
    let auth = [("Authorization", etl.as_str())];
    assert_eq!(p.request("POST", "/pipelines/etl", &[], b"").status, 401);
    let wrong = bearer("once-token");
    assert_eq!(
        p.request("POST", "/pipelines/etl", &[("Authorization", &wrong)], b"")
            .status,
        401
    );
    assert_eq!(p.request("POST", "/pipelines/nope", &auth, b"").status, 404);
    let r = p.request("POST", "/pipelines/etl", &auth, b"");
    assert_eq!(r.status, 202, "{r:?}\n{}", p.log_text());
    assert!(
        r.json()["job"]
            .as_str()
            .unwrap()
            .starts_with("/org/freedesktop/systemd1/job/"),
        "{r:?}"
    );
    let r = p.request("POST", "/pipelines/etl", &auth, b"");
    assert_eq!(r.status, 409, "{r:?}");
    let r = p.request("GET", "/pipelines/etl", &auth, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["running"], true, "{r:?}");
    wait_for(Duration::from_secs(20), "the etl run to finish", || {
        m.active_state("px-etl.service") == "inactive"
    });
    let r = p.request("GET", "/pipelines/etl", &auth, b"").json();
    assert_eq!(r["running"], false, "{r}");
    assert_eq!(r["last_result"], "success", "{r}");
    assert_eq!(r["last_exit_status"], 0, "{r}");
    // (`last_started_at`/`last_ended_at` stay null here: this container's user manager reports
    // its unit timestamps as 0.)
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "run\n");

    // Rate limit: `once` may start once an hour.
    let once = bearer("once-token");
    let auth = [("Authorization", once.as_str())];
    assert_eq!(p.request("POST", "/pipelines/once", &auth, b"").status, 202);
    wait_for(Duration::from_secs(20), "the once run to finish", || {
        m.active_state("px-once.service") == "inactive"
    });
    let r = p.request("POST", "/pipelines/once", &auth, b"");
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.header("retry-after").is_some(), "{r:?}");

    assert_eq!(p.stop(), Some(0));
}

const SLEEPER: &str = "[Unit]
Description={{ c.values.description }}

[Service]
ExecStart=/bin/sh -c 'trap \"\" HUP; while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

/// `git` in `dir` as a test author; stdout trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The stack of the GitOps test: the sleeper template and one `[host.extra]` unit per name.
fn gitops_stack(dir: &Path, units: &[&str]) {
    let mut s = support::TestStack::new(dir, "gitops").template("sleeper.service", SLEEPER);
    for u in units {
        s = s.unit(
            u,
            &format!("template = \"sleeper\"\nunit = \"gitops-{u}\"\nvalues = {{ description = \"{u}\" }}"),
        );
    }
    s.write();
}

fn sync_status(p: &agents::Proxy) -> serde_json::Value {
    let r = p.request("GET", "/sync/status", &[], b"");
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

#[test]
fn a_signed_push_checks_out_the_commit_and_applies_it_on_a_real_manager() {
    let m = UserManager::start();
    let scratch = m.scratch();
    let repo = checkout(&scratch, "");
    let origin = scratch.join("origin/acme/homelab.git");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);

    // The checkout holds the applied stack (unit a) and is on origin.
    gitops_stack(&repo, &["a"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "unit a"]);
    git(&repo, &["push", "-q", "origin", "main"]);
    let before = git(&repo, &["rev-parse", "HEAD"]);
    m.labctl(&repo.join("stack.toml"), &["apply", "--yes"])
        .code(0);
    assert_eq!(m.active_state("gitops-a.service"), "active");

    // Someone else adds unit b and pushes it.
    let work = scratch.join("work");
    let out = std::process::Command::new("git")
        .args(["clone", "-q"])
        .arg(&origin)
        .arg(&work)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    gitops_stack(&work, &["a", "b"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "unit b"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let after = git(&work, &["rev-parse", "HEAD"]);

    let mut cmd = ProxyCmd::new(&repo);
    for (k, v) in m.env() {
        cmd = cmd.env(k, v);
    }
    let p = cmd.start();
    let push = PUSH
        .replace(COMMIT, &after)
        .replace("6113728f27ae82c7b1a177c8d03f9e96e0adf246", &before);
    let r = p.deliver("push", "gitops-0001", "application/json", push.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");

    let mut status = serde_json::Value::Null;
    wait_for(Duration::from_secs(120), "the sync to finish", || {
        status = sync_status(&p);
        status["commit"] == after.as_str() && status["finished"].is_string()
    });
    assert_eq!(status["result"], "ok", "{status}\n{}", p.log_text());
    assert_eq!(status["summary"]["add"], 1, "{status}");
    assert_eq!(status["summary"]["change"], 0, "{status}");
    assert_eq!(status["summary"]["destroy"], 0, "{status}");
    assert!(status["error"].is_null(), "{status}");
    assert!(
        status["started"].as_str().unwrap().ends_with('Z'),
        "{status}"
    );
    assert_eq!(m.active_state("gitops-b.service"), "active");
    // Exactly the pushed commit is checked out; the slot is empty; the applied commit is on disk.
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), after);
    assert!(pending(&repo).is_none());
    let last = std::fs::read_to_string(repo.join(".git/labctl-proxy/last-applied")).unwrap();
    assert_eq!(last.trim(), after);

    m.labctl(&repo.join("stack.toml"), &["plan", "--user"])
        .code(0)
        .stdout_has("No changes.");

    // A redelivery is answered and does nothing: no new sync.
    let r = p.deliver("push", "gitops-0001", "application/json", push.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sync_status(&p), status);
    assert!(pending(&repo).is_none());
    assert_eq!(p.stop(), Some(0));
}
