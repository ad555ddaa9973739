//! Unattended change you can trust (the proxy's sync against a real user manager, a real git
//! origin and checkout): a bad push never bricks the lab, a change that breaks a service is rolled
//! back, generations are kept, and the command line can roll back too.

use std::time::{Duration, Instant};

use crate::support::agents::SECRET;
use crate::support::gitops::{Gitops, pending, sync_status, synced};
use crate::support::{git, wait_for};

/// A push whose stack.toml does not parse: refused with every problem at its line and column,
/// never retried, the checkout left at the last good commit; a proxy started on a broken checkout
/// still serves webhooks and says what is wrong; the fix applies.
#[test]
fn an_invalid_push_is_refused_where_it_is_wrong_and_the_proxy_keeps_serving() {
    let g = Gitops::new(&["a"]);
    let good_head = git(&g.repo, &["rev-parse", "HEAD"]);
    let mut bad = std::fs::read_to_string(g.repo.join("stack.toml")).unwrap();
    bad.push_str("\n[host.extra.typo]\ntemplat = \"sleeper\"\nunit = \"gitops-typo\"\n");
    let (push, after) = g.push_text(&bad);

    let cmd = g.proxy();
    let p = cmd.start();
    let r = p.deliver("push", "invalid-0001", "application/json", push.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    let status = synced(&p, &after);
    assert_eq!(status["result"], "refused", "{status}\n{}", p.log_text());
    let problems: Vec<&str> = status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let line = bad
        .lines()
        .position(|l| l.starts_with("templat ="))
        .unwrap()
        + 1;
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("stack.toml:{line}:1: unknown field `templat`"))),
        "{status}"
    );
    // Not retried: the slot is empty, the status stays, nothing was touched.
    assert!(pending(&g.repo).is_none());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sync_status(&p), status);
    assert_eq!(git(&g.repo, &["rev-parse", "HEAD"]), good_head);
    assert!(!g.m.unit_dir().join("gitops-typo.service").exists());
    assert_eq!(p.stop(), Some(0));

    // Even with a broken checkout (and no good sync yet), the proxy starts and serves webhooks;
    // `/readyz` says what is wrong.
    std::fs::write(g.repo.join("stack.toml"), &bad).unwrap();
    let p = cmd.start();
    assert_eq!(p.request("GET", "/healthz", &[], b"").status, 200);
    let ready = p.request("GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.json().to_string().contains("templat"), "{ready:?}");
    git(&g.repo, &["checkout", "-q", "--", "stack.toml"]);

    // A fix pushed later applies normally.
    g.stack(&g.work, &["a", "b"]);
    let (push, fixed) = g.push_text(&std::fs::read_to_string(g.work.join("stack.toml")).unwrap());
    let r = p.deliver("push", "invalid-0002", "application/json", push.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    let status = synced(&p, &fixed);
    assert_eq!(status["result"], "ok", "{status}\n{}", p.log_text());
    assert_eq!(g.m.active_state("gitops-b.service"), "active");
    assert_eq!(git(&g.repo, &["rev-parse", "HEAD"]), fixed);
    assert_eq!(p.request("GET", "/readyz", &[], b"").status, 200);
    g.converged();
    assert_eq!(p.stop(), Some(0));
}

/// A push that breaks a service (its unit now exits at once): the health gate fails, the last good
/// generation is applied again (the unit file as it was, active), the status and history say
/// `rolled-back`, and a restarted proxy never applies that commit again.
#[test]
fn a_push_that_breaks_a_unit_is_rolled_back_and_never_applied_again() {
    let g = Gitops::new(&["a"]);
    let unit = g.m.unit_dir().join("gitops-a.service");
    let good_text = std::fs::read_to_string(&unit).unwrap();
    let history = g.history();
    assert_eq!(history.len(), 1, "the apply by hand: {history:?}");
    assert_eq!(history[0]["result"], "ok");
    let (push, after) = g.push(&["a=crash"]);

    let cmd = g.proxy();
    let p = cmd.start();
    let pushed = Instant::now();
    let r = p.deliver("push", "crash-0001", "application/json", push.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    let status = synced(&p, &after);
    let back = pushed.elapsed();
    assert_eq!(
        status["result"],
        "rolled-back",
        "{status}\n{}",
        p.log_text()
    );
    assert_eq!(status["restored"], 1, "{status}");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("gitops-a.service") && error.contains("rolled back to generation 1"),
        "{status}"
    );
    // The previous unit file is back, and running.
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), good_text);
    assert_eq!(g.m.active_state("gitops-a.service"), "active");
    let history = g.history();
    let last = history.last().unwrap();
    assert_eq!(last["result"], "rolled-back", "{history:?}");
    assert_eq!(last["commit"], after.as_str(), "{history:?}");
    assert_eq!(last["restored"], 1, "{history:?}");
    assert!(pending(&g.repo).is_none());
    g.converged();
    eprintln!(
        "push to the previous state serving again: {} ms",
        back.as_millis()
    );
    assert_eq!(p.stop(), Some(0));

    // The same commit, delivered again after a restart, is refused: it was rolled back.
    let p = cmd.start();
    let again = push.replace("\"id\": \"", "\"id\": \"x");
    let r = p.deliver("push", "crash-0002", "application/json", again.as_bytes());
    assert_eq!(r.status, 202, "{r:?}");
    let status = synced(&p, &after);
    assert_eq!(status["result"], "refused", "{status}");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("was rolled back before"),
        "{status}"
    );
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), good_text);
    assert_eq!(
        g.history().len(),
        history.len(),
        "nothing applied, nothing recorded"
    );
    assert_eq!(p.stop(), Some(0));
}

/// A stack with a Deployment (its image a value) and a host unit (its description a value), in a
/// git repository, on the test API server and a real user manager.
struct Both {
    m: crate::support::systemd::UserManager,
    srv: labctl_testapi::TestApiServer,
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

const SAYS: &str = "[Unit]
Description=says {{ c.values.word }}

[Service]
ExecStart=/bin/sh -c 'trap \"\" HUP; while :; do sleep 1; done'

[Install]
WantedBy=default.target
";

impl Both {
    fn new() -> Self {
        let m = crate::support::systemd::UserManager::start();
        let srv = labctl_testapi::TestApiServer::start_blocking(labctl_testapi::Options {
            auto_rollout: true,
            ..labctl_testapi::Options::default()
        })
        .expect("test API server");
        let dir = m.scratch().join("lab");
        std::fs::create_dir_all(dir.join("templates/web")).unwrap();
        std::fs::write(
            dir.join("templates/web/web.yaml"),
            crate::support::WEB_TEMPLATE,
        )
        .unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        let path = dir.join("stack.toml");
        Both { m, srv, dir, path }
    }

    /// Commit the stack with the Deployment's `image` and the unit's `word`.
    fn commit(&self, image: &str, word: &str) -> String {
        crate::support::Stack::units(&self.dir, "roll")
            .template("says.service", SAYS)
            .unit(
                "says",
                &format!(
                    "template = \"says\"\nunit = \"roll-says\"\nvalues = {{ word = \"{word}\" }}"
                ),
            )
            .write();
        let mut text = std::fs::read_to_string(&self.path).unwrap();
        text.push_str(&format!(
            "\n[kube.extra.web]\nvalues = {{ image = \"{image}\", replicas = 1, greeting = \"hi\" }}\n"
        ));
        std::fs::write(&self.path, text).unwrap();
        git(&self.dir, &["add", "-A"]);
        git(
            &self.dir,
            &["commit", "-q", "-m", &format!("{image} {word}")],
        );
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    fn labctl(&self, args: &[&str]) -> crate::support::Output {
        let kc = self.srv.kubeconfig_path().to_str().unwrap().to_string();
        let mut a = vec!["--kubeconfig", kc.as_str()];
        a.extend_from_slice(args);
        self.m.labctl(&self.path, &a)
    }

    fn image(&self) -> String {
        let d = self
            .srv
            .get("apps/v1", "Deployment", "roll", "web")
            .unwrap();
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn description(&self) -> String {
        std::fs::read_to_string(self.m.unit_dir().join("roll-says.service"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Description=").map(str::to_string))
            .unwrap()
    }

    fn history(&self) -> Vec<serde_json::Value> {
        let out = self.labctl(&["history", "--user", "-o", "json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        doc["generations"].as_array().unwrap().clone()
    }
}

/// `apply --rollback-on-failure`: a change whose rollout never completes (its image cannot run)
/// fails, and both planes go back to the last good generation; the exit code says so, and a plan
/// of the restored commit says `No changes.`.
#[test]
fn apply_rolls_back_both_planes_when_a_rollout_never_completes() {
    let b = Both::new();
    let good = b.commit("web:1", "one");
    b.labctl(&["apply", "--yes"])
        .code(0)
        .stderr_has("Generation 1.");
    b.srv.set_stuck_image("web:broken");
    b.commit("web:broken", "two");
    let out = b.labctl(&[
        "apply",
        "--yes",
        "--rollback-on-failure",
        "--wait-timeout",
        "2s",
    ]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("Deployment roll/web")
            && out.stderr.contains("rolled back to generation 1 (commit"),
        "{}",
        out.stderr
    );
    // Both planes are as generation 1 left them.
    assert_eq!(b.image(), "web:1");
    assert_eq!(b.description(), "says one");
    assert_eq!(b.m.active_state("roll-says.service"), "active");
    let history = b.history();
    let last = history.last().unwrap();
    assert_eq!(
        (&last["result"], &last["restored"]),
        (&serde_json::json!("rolled-back"), &serde_json::json!(1)),
        "{history:?}"
    );
    // The restored commit, planned again: nothing to do.
    git(&b.dir, &["checkout", "-q", &good]);
    b.labctl(&["plan", "--user", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");
}

/// `labctl rollback`: the stack as it was at the previous good generation, applied after showing
/// the plan; history records it; the restored commit plans clean; an unknown generation is named.
#[test]
fn rollback_applies_the_previous_good_generation() {
    let b = Both::new();
    let first = b.commit("web:1", "one");
    b.labctl(&["apply", "--yes"]).code(0);
    b.commit("web:2", "two");
    b.labctl(&["apply", "--yes"])
        .code(0)
        .stderr_has("Generation 2.");
    assert_eq!(
        (b.image(), b.description()),
        ("web:2".into(), "says two".into())
    );

    let out = b.labctl(&["rollback", "--yes", "--user"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("Rolling back to generation 1 (commit"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("# Deployment roll/web will be updated"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("Generation 3 is generation 1 again."),
        "{}",
        out.stderr
    );
    assert_eq!(
        (b.image(), b.description()),
        ("web:1".into(), "says one".into())
    );
    let history = b.history();
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(history[2]["result"], "ok");
    assert_eq!(history[2]["restored"], 1);
    assert_eq!(history[2]["commit"], first.as_str());
    let table = b.labctl(&["history", "--user"]);
    assert!(table.stdout.starts_with("GEN  TIME"), "{}", table.stdout);
    assert!(table.stdout.contains("ok to 1"), "{}", table.stdout);
    git(&b.dir, &["checkout", "-q", &first]);
    b.labctl(&["plan", "--user", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");
    b.labctl(&["rollback", "--yes", "--user", "9"])
        .code(1)
        .stderr_has("no generation 9");
}

/// The proxy updating itself into one that cannot serve (its new port is taken): the dead-man
/// switch the sync armed in systemd puts the previous unit back and restarts the previous proxy
/// within the confirmation time; that proxy records the commit as rolled back, and the next good
/// push applies normally.
#[test]
fn a_proxy_that_cannot_serve_after_a_sync_is_put_back_by_systemd() {
    use crate::support::agents::{checkout, proxy_stack, try_request};
    let m = crate::support::systemd::UserManager::start();
    let scratch = m.scratch();
    let origin = scratch.join("origin/acme/homelab.git");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);
    let secret = scratch.join("webhook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let port = crate::support::free_port();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let repo = checkout(&scratch, "");
    let bin = env!("CARGO_BIN_EXE_labctl");
    let stack = |proxy_port: u16, units: &str| {
        proxy_stack(&format!(
            "labctl_path = \"{bin}\"\n\n[host.ingest]\nenabled = false\n\n[host.proxy]\n\
             port = {proxy_port}\nrepo_dir = \"{}\"\nconfirm_within = \"6s\"\n\n[secrets]\n\
             webhook-secret = {{ file = \"{}\" }}\n{units}",
            repo.display(),
            secret.display()
        ))
        .replace("[host]\nscope = \"user\"\n\n", "[host]\nscope = \"user\"\n")
    };
    std::fs::write(repo.join("stack.toml"), stack(port, "")).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "the proxy"]);
    git(&repo, &["push", "-q", "origin", "main"]);
    let stack_file = repo.join("stack.toml");
    m.labctl(&stack_file, &["apply", "--yes"]).code(0);
    let unit = m.unit_dir().join("labctl-proxy.service");
    let good_unit = std::fs::read_to_string(&unit).unwrap();
    let serves =
        |port: u16| try_request(port, "GET", "/healthz", &[], b"").is_ok_and(|a| a.status == 200);
    wait_for("the proxy unit to serve", Duration::from_secs(30), || {
        serves(port)
    });

    // Someone pushes a stack that moves the proxy to a port another process holds.
    let work = scratch.join("work");
    git(
        &scratch,
        &[
            "clone",
            "-q",
            origin.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    let push = |text: String, message: &str| {
        let before = git(&work, &["rev-parse", "HEAD"]);
        std::fs::write(work.join("stack.toml"), text).unwrap();
        git(&work, &["commit", "-q", "-am", message]);
        git(&work, &["push", "-q", "origin", "main"]);
        let after = git(&work, &["rev-parse", "HEAD"]);
        let payload = crate::support::gitops::PUSH
            .replace(crate::support::gitops::COMMIT, &after)
            .replace("6113728f27ae82c7b1a177c8d03f9e96e0adf246", &before);
        (payload, after)
    };
    let (payload, bad) = push(stack(taken_port, ""), "move the proxy");
    let deliver = |id: &str, payload: &str| {
        let sig = labctl::agent::proxy::webhook::sign(SECRET.as_bytes(), payload.as_bytes());
        let headers = [
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", id),
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", sig.as_str()),
        ];
        try_request(port, "POST", "/hooks/github", &headers, payload.as_bytes()).unwrap()
    };
    let pushed = Instant::now();
    assert_eq!(deliver("self-0001", &payload).status, 202);
    // The previous proxy comes back on the old port, and says the commit was rolled back.
    let status = |port: u16| {
        try_request(port, "GET", "/sync/status", &[], b"")
            .ok()
            .map(|a| a.json())
            .unwrap_or_default()
    };
    let until = |what: &str, timeout: Duration, ok: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + timeout;
        loop {
            let s = status(port);
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}: still {s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let last = until(
        "the previous proxy back, its status rolled back",
        Duration::from_secs(90),
        &|s| s["result"] == "rolled-back",
    );
    let back = pushed.elapsed();
    assert_eq!(last["commit"], bad.as_str(), "{last}");
    assert!(
        last["error"].as_str().unwrap().contains("did not serve"),
        "{last}"
    );
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), good_unit);
    assert!(serves(port));
    let history = m.labctl(&stack_file, &["history", "--user", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let gens = doc["generations"].as_array().unwrap();
    let rolled = gens.last().unwrap();
    assert_eq!(
        (&rolled["result"], &rolled["commit"]),
        (&serde_json::json!("rolled-back"), &serde_json::json!(bad)),
        "{gens:?}"
    );
    eprintln!(
        "breaking push to the previous proxy serving again: {} ms (confirmation time 6 s)",
        back.as_millis()
    );

    // The next good push applies normally, by the previous proxy.
    let units = "\n[host.extra.after]\ntemplate = \"after\"\nunit = \"after-fix\"\n";
    std::fs::create_dir_all(work.join("systemd-templates")).unwrap();
    std::fs::write(
        work.join("systemd-templates/after.service"),
        "[Service]\nExecStart=/bin/sh -c 'while :; do sleep 1; done'\n\n[Install]\nWantedBy=default.target\n",
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    let (payload, good) = push(stack(port, units), "a unit, the proxy where it was");
    assert_eq!(deliver("self-0002", &payload).status, 202);
    until("the good push to apply", Duration::from_secs(60), &|s| {
        s["commit"] == good.as_str() && s["result"] == "ok"
    });
    assert_eq!(m.active_state("after-fix.service"), "active");
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), good);
    drop(taken);
}
