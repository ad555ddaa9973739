//! `labctl agent proxy`, the real binary over loopback: webhook verification, limits, events,
//! delivery dedupe across a restart, and (against a real systemd user manager) the ingest reload,
//! pipelines, and the GitOps sync: applied, refused, stopped mid-apply and redone, traced.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::agents::{self, ProxyCmd, checkout, proxy_stack};
use crate::support::otlp::{self, Receiver, Span};
use crate::support::systemd::UserManager;
use crate::support::{Stack, git, wait_for};

const PUSH: &str = include_str!("../fixtures/github-push.json");
const COMMIT: &str = "3d1f6b7e2c9a4f5b8e0d7c6a5b4f3e2d1c0b9a87";

/// The pending-sync log, as written.
fn pending_log(repo: &Path) -> String {
    std::fs::read_to_string(repo.join(".git/labctl-proxy/pending-sync.jsonl")).unwrap_or_default()
}

/// What waits in the pending-sync slot: the log's last line.
fn pending(repo: &Path) -> Option<serde_json::Value> {
    pending_log(repo)
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
}

#[test]
fn refuses_to_start_without_the_secret_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let repo = checkout(dir.path(), &proxy_stack(""));
    let (code, _, stderr) = ProxyCmd::new(&repo)
        .env_remove("LABCTL_WEBHOOK_SECRET")
        .run()
        .parts();
    assert_eq!(code, 1, "{stderr}");
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
    let (code, _, stderr) = ProxyCmd::new(&repo2).run().parts();
    assert_eq!(code, 1, "{stderr}");
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

    // A redelivery is answered but does not queue it again: the log is not written.
    let log = pending_log(&repo);
    let r = p.deliver("push", "72d3162e-0001", "application/json", PUSH.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["result"], "already handled");
    assert_eq!(pending_log(&repo), log);

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
    assert_eq!(pending_log(&repo), log);
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

    // A restart remembers what was handled, and what waits (the sync of it failed: this
    // checkout's origin does not exist, and a failed sync keeps its commit).
    assert_eq!(p.stop(), Some(0));
    let p = cmd.start();
    let log = pending_log(&repo);
    assert_eq!(pending(&repo).unwrap()["commit"], "a".repeat(40), "{log}");
    for id in ["72d3162e-0001", "72d3162e-0005"] {
        let r = p.deliver("push", id, "application/json", PUSH.as_bytes());
        assert_eq!(r.status, 200, "{id}: {r:?}");
    }
    assert_eq!(pending_log(&repo), log);
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
    wait_for("the ingest stand-in", Duration::from_secs(10), || {
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
        "SIGHUP reaching the ingest unit",
        Duration::from_secs(20),
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
    wait_for("the etl run to finish", Duration::from_secs(20), || {
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
    wait_for("the once run to finish", Duration::from_secs(20), || {
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

/// Holds a unit in `activating` (its `ExecStartPre=`) while the file `values.hold` exists: an
/// apply that starts it is in the middle for as long as the test wants.
const SLOW: &str = "[Unit]
Description={{ c.values.description }}

[Service]
ExecStartPre=/bin/sh -c 'while [ -e {{ c.values.hold }} ]; do sleep 0.1; done'
ExecStart=/bin/sh -c 'trap \"\" HUP; while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

/// The GitOps setting on a real user manager: a bare origin (named like the payload's
/// repository), the proxy's checkout of it with a stack applied by hand, and a second clone that
/// "someone else" pushes from.
struct Gitops {
    m: UserManager,
    repo: PathBuf,
    work: PathBuf,
    /// While this file exists, units named `slow*` stay activating.
    hold: PathBuf,
}

impl Gitops {
    /// Units `units` committed, pushed and applied by hand (`labctl apply`).
    fn new(units: &[&str]) -> Self {
        let m = UserManager::start();
        let scratch = m.scratch();
        let repo = checkout(&scratch, "");
        let origin = scratch.join("origin/acme/homelab.git");
        std::fs::create_dir_all(&origin).unwrap();
        git(&origin, &["init", "-q", "--bare", "-b", "main"]);
        let g = Gitops {
            repo,
            work: scratch.join("work"),
            hold: scratch.join("hold"),
            m,
        };
        g.stack(&g.repo, units);
        git(&g.repo, &["add", "-A"]);
        git(&g.repo, &["commit", "-q", "-m", "first units"]);
        git(&g.repo, &["push", "-q", "origin", "main"]);
        g.m.labctl(&g.repo.join("stack.toml"), &["apply", "--yes"])
            .code(0);
        for u in units {
            assert_eq!(g.m.active_state(&format!("gitops-{u}.service")), "active");
        }
        git(
            &scratch,
            &[
                "clone",
                "-q",
                origin.to_str().unwrap(),
                g.work.to_str().unwrap(),
            ],
        );
        g
    }

    /// The stack in `dir`: one `[host.extra]` unit `gitops-<name>` per name, from the sleeper
    /// template, or the slow one for names starting with `slow`.
    fn stack(&self, dir: &Path, units: &[&str]) {
        let mut s = Stack::units(dir, "gitops")
            .template("sleeper.service", SLEEPER)
            .template("slow.service", SLOW);
        for u in units {
            let template = if u.starts_with("slow") {
                "slow"
            } else {
                "sleeper"
            };
            s = s.unit(
                u,
                &format!(
                    "template = \"{template}\"\nunit = \"gitops-{u}\"\nvalues = {{ description = \"{u}\", hold = \"{}\" }}",
                    self.hold.display()
                ),
            );
        }
        s.write();
    }

    /// Someone else commits the stack with `units` and pushes it: the push's payload (`before`,
    /// `after` as GitHub sends them) and `after`.
    fn push(&self, units: &[&str]) -> (String, String) {
        let before = git(&self.work, &["rev-parse", "HEAD"]);
        self.stack(&self.work, units);
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "-m", &format!("units {units:?}")],
        );
        git(&self.work, &["push", "-q", "origin", "main"]);
        let after = git(&self.work, &["rev-parse", "HEAD"]);
        let payload = PUSH
            .replace(COMMIT, &after)
            .replace("6113728f27ae82c7b1a177c8d03f9e96e0adf246", &before);
        (payload, after)
    }

    /// The proxy for the checkout, on this manager.
    fn proxy(&self) -> ProxyCmd {
        let mut cmd = ProxyCmd::new(&self.repo);
        for (k, v) in self.m.env() {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    /// `labctl plan` of the checkout's stack against the manager says `No changes.`.
    fn converged(&self) {
        self.m
            .labctl(&self.repo.join("stack.toml"), &["plan", "--user"])
            .code(0)
            .stdout_has("No changes.");
    }

    fn last_applied(&self) -> Option<String> {
        std::fs::read_to_string(self.repo.join(".git/labctl-proxy/last-applied"))
            .ok()
            .map(|t| t.trim().to_string())
    }
}

fn sync_status(p: &agents::Proxy) -> serde_json::Value {
    let r = p.request("GET", "/sync/status", &[], b"");
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// Wait until the sync of `commit` has finished (or stopped); its status.
fn synced(p: &agents::Proxy, commit: &str) -> serde_json::Value {
    let mut status = serde_json::Value::Null;
    wait_for("the sync to finish", Duration::from_secs(120), || {
        status = sync_status(p);
        status["commit"] == commit && status["finished"].is_string()
    });
    status
}

#[test]
fn a_signed_push_checks_out_the_commit_and_applies_it_on_a_real_manager() {
    let g = Gitops::new(&["a"]);
    let (push, after) = g.push(&["a", "b"]);
    let p = g.proxy().start();
    let r = p.deliver("push", "gitops-0001", "application/json", push.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");

    let status = synced(&p, &after);
    assert_eq!(status["result"], "ok", "{status}\n{}", p.log_text());
    assert_eq!(status["summary"]["add"], 1, "{status}");
    assert_eq!(status["summary"]["change"], 0, "{status}");
    assert_eq!(status["summary"]["destroy"], 0, "{status}");
    assert!(status["error"].is_null(), "{status}");
    assert!(
        status["started"].as_str().unwrap().ends_with('Z'),
        "{status}"
    );
    assert_eq!(g.m.active_state("gitops-b.service"), "active");
    // Exactly the pushed commit is checked out; the slot is empty; the applied commit is on disk.
    assert_eq!(git(&g.repo, &["rev-parse", "HEAD"]), after);
    assert!(pending(&g.repo).is_none());
    assert_eq!(g.last_applied().as_deref(), Some(after.as_str()));
    g.converged();

    // A redelivery is answered and does nothing: no new sync.
    let r = p.deliver("push", "gitops-0001", "application/json", push.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sync_status(&p), status);
    assert!(pending(&g.repo).is_none());
    assert_eq!(p.stop(), Some(0));
}

/// A sync that fails (the origin cannot be fetched) keeps its commit and is retried by itself on
/// a backoff: once the origin is back, the commit is applied without another push.
#[test]
fn a_failed_sync_is_retried_by_itself_once_the_origin_is_back() {
    let g = Gitops::new(&["a"]);
    let (push, after) = g.push(&["a", "back"]);
    let origin = g.m.scratch().join("origin/acme/homelab.git");
    let away = g.m.scratch().join("origin-away");
    std::fs::rename(&origin, &away).unwrap();

    let p = g.proxy().start();
    let r = p.deliver("push", "retry-0001", "application/json", push.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    let status = synced(&p, &after);
    assert_eq!(status["result"], "failed", "{status}\n{}", p.log_text());
    assert!(status["next_attempt"].is_string(), "{status}");
    assert_eq!(pending(&g.repo).unwrap()["commit"], after.as_str());
    assert!(
        p.log_text().contains("next sync attempt in"),
        "{}",
        p.log_text()
    );

    std::fs::rename(&away, &origin).unwrap();
    let mut status = serde_json::Value::Null;
    wait_for("the retry to apply", Duration::from_secs(60), || {
        status = sync_status(&p);
        status["result"] == "ok"
    });
    assert_eq!(status["commit"], after.as_str(), "{status}");
    assert!(status["next_attempt"].is_null(), "{status}");
    assert_eq!(g.m.active_state("gitops-back.service"), "active");
    assert!(pending(&g.repo).is_none());
    assert_eq!(g.last_applied().as_deref(), Some(after.as_str()));
    g.converged();
    assert_eq!(p.stop(), Some(0));
}

/// A unit file already on the manager that this stack does not own: applying a stack that
/// declares it needs `--adopt`, which the sync never passes. Nothing of that commit is applied
/// (not even its other, harmless unit), and the status says why.
#[test]
fn a_refused_sync_applies_nothing_and_the_status_says_why() {
    let g = Gitops::new(&["a"]);
    let foreign = "[Service]\nExecStart=/bin/sh -c 'while :; do sleep 1; done'\n";
    let foreign_path = g.m.unit_dir().join("gitops-taken.service");
    std::fs::write(&foreign_path, foreign).unwrap();
    g.m.systemctl(&["daemon-reload"]);
    let before_head = git(&g.repo, &["rev-parse", "HEAD"]);
    let (push, after) = g.push(&["a", "c", "taken"]);

    let p = g.proxy().start();
    let r = p.deliver("push", "refused-0001", "application/json", push.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    let status = synced(&p, &after);
    assert_eq!(status["result"], "refused", "{status}\n{}", p.log_text());
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("gitops-taken.service") && error.contains("--adopt"),
        "{status}"
    );
    // Nothing applied: the foreign file untouched, the harmless unit not written or started.
    assert_eq!(std::fs::read_to_string(&foreign_path).unwrap(), foreign);
    assert!(!g.m.unit_dir().join("gitops-c.service").exists());
    assert_ne!(g.m.active_state("gitops-c.service"), "active");
    // A refusal is not retried (only a new push can change it), and it is not "applied".
    assert!(pending(&g.repo).is_none());
    assert_ne!(g.last_applied().as_deref(), Some(after.as_str()));
    assert_ne!(before_head, after);
    assert!(p.log_text().contains("sync refused"), "{}", p.log_text());
    assert_eq!(p.stop(), Some(0));
}

/// SIGTERM while the apply waits for a unit to start: the proxy stops cleanly (exit 0, not cut
/// off by the runtime's deadline), the push stays in the slot, and the next start syncs it again
/// until the stack has converged.
#[test]
fn sigterm_in_the_middle_of_an_apply_keeps_the_push_and_a_restart_redoes_it() {
    let g = Gitops::new(&["a"]);
    let (push, after) = g.push(&["a", "slow"]);
    std::fs::write(&g.hold, "").unwrap();

    let cmd = g.proxy().arg("--sync-grace").arg("1s");
    let p = cmd.start();
    let r = p.deliver("push", "sigterm-0001", "application/json", push.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    // The apply is in the middle: it started the unit and waits for the start job.
    wait_for(
        "the slow unit to be starting",
        Duration::from_secs(60),
        || g.m.active_state("gitops-slow.service") == "activating",
    );
    assert_eq!(sync_status(&p)["result"], "running");
    let log = p.log.clone();
    assert_eq!(
        p.stop(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("the commit stays queued"), "{text}");
    assert!(!text.contains("did not stop within"), "{text}");
    assert_eq!(pending(&g.repo).unwrap()["commit"], after.as_str());
    assert_ne!(g.last_applied().as_deref(), Some(after.as_str()));

    // The next start syncs the commit again; it converges once the unit may start.
    let p = cmd.start();
    wait_for("the sync to start again", Duration::from_secs(60), || {
        let s = sync_status(&p);
        s["commit"] == after.as_str()
    });
    std::fs::remove_file(&g.hold).unwrap();
    let status = synced(&p, &after);
    assert_eq!(status["result"], "ok", "{status}\n{}", p.log_text());
    // The unit's start job from the first run may still be finishing (its ExecStartPre sees the
    // hold gone on its next poll): a sync that finds it activating has nothing left to do.
    wait_for(
        "the slow unit to be active",
        Duration::from_secs(30),
        || g.m.active_state("gitops-slow.service") == "active",
    );
    assert!(pending(&g.repo).is_none());
    assert_eq!(g.last_applied().as_deref(), Some(after.as_str()));
    assert_eq!(git(&g.repo, &["rev-parse", "HEAD"]), after);
    g.converged();
    assert_eq!(p.stop(), Some(0));
}

/// Each sync is one trace, read back from the project's OTLP receiver: a root `proxy sync` with
/// the commit and result, and beneath it the engine's `observe` and one `apply change` per change.
#[test]
fn a_sync_is_one_trace_with_its_apply_changes() {
    let rx = Receiver::start();
    let g = Gitops::new(&["a"]);
    let (push, after) = g.push(&["a", "b", "c"]);
    let p = g
        .proxy()
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .arg("--otlp-endpoint")
        .arg(&rx.grpc_endpoint())
        .start();
    let r = p.deliver("push", "trace-0001", "application/json", push.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    let status = synced(&p, &after);
    assert_eq!(status["result"], "ok", "{status}\n{}", p.log_text());

    let is_root = |s: &Span| s.name == "proxy sync" && s.attr("labctl.commit") == Some(&after);
    let spans = rx.wait_for_spans(Duration::from_secs(30), |spans| {
        spans.iter().any(is_root) && spans.iter().filter(|s| s.name == "apply change").count() >= 2
    });
    let roots: Vec<&Span> = spans.iter().filter(|s| is_root(s)).collect();
    assert_eq!(roots.len(), 1, "{spans:#?}");
    let root = roots[0];
    assert!(root.parent_span_id.is_empty(), "{root:?}");
    assert_eq!(root.attr("labctl.result"), Some("ok"));
    assert_eq!(
        root.resource.get("service.name").map(String::as_str),
        Some("labctl-proxy")
    );
    let children = otlp::children(&spans, root);
    assert!(
        children.iter().any(|s| s.name == "observe"),
        "{children:#?}"
    );
    let mut changes: Vec<(String, String, String)> = children
        .iter()
        .filter(|s| s.name == "apply change")
        .map(|s| {
            (
                s.attr("labctl.resource").unwrap_or_default().to_string(),
                s.attr("labctl.action").unwrap_or_default().to_string(),
                s.attr("labctl.result").unwrap_or_default().to_string(),
            )
        })
        .collect();
    changes.sort();
    let want: Vec<(String, String, String)> = ["b", "c"]
        .iter()
        .map(|n| {
            (
                format!("unit gitops-{n}.service"),
                "add".into(),
                "ok".into(),
            )
        })
        .collect();
    assert_eq!(changes, want, "{spans:#?}");
    // Every span of the sync is in its one trace.
    assert!(
        spans
            .iter()
            .filter(|s| s.name == "apply change" || s.name == "observe")
            .all(|s| s.trace_id == root.trace_id),
        "{spans:#?}"
    );
    assert_eq!(p.stop(), Some(0));
}
