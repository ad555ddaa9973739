//! The proxy killed (SIGKILL, through its failpoints) after a sync's apply and before the commit
//! was recorded, and after a push was queued and before the delivery was remembered or answered.
//! Started again, it finishes what it was doing: the commit applied once more converges, the
//! delivery redelivered is taken, and nothing queued is lost.

use std::time::{Duration, Instant};

use crate::support::agents::{Proxy, SECRET, try_request};
use crate::support::gitops::{Gitops, pending, synced};
use crate::support::wait_for;

/// Wait for the proxy to die of a failpoint; its log says which.
fn killed_by(mut p: Proxy, point: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy was not killed at `{point}`:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(9), "{status}\n{}", p.log_text());
    assert!(
        p.log_text().contains(&format!("failpoint `{point}`")),
        "{}",
        p.log_text()
    );
}

#[test]
fn a_proxy_killed_during_a_sync_redoes_it_when_started_again() {
    let g = Gitops::new(&["a"]);
    let (push, after) = g.push(&["a", "b"]);
    let p = g.proxy().env("LABCTL_FAILPOINT", "proxy.sync").start();
    let r = p.deliver(
        "push",
        "kill-sync-0001",
        "application/json",
        push.as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");
    killed_by(p, "proxy.sync");
    // Applied, not recorded: the commit is still queued.
    assert_eq!(pending(&g.repo).unwrap()["commit"], after.as_str());
    assert_ne!(g.last_applied().as_deref(), Some(after.as_str()));

    let p = g.proxy().start();
    let status = synced(&p, &after);
    assert_eq!(status["result"], "ok", "{status}\n{}", p.log_text());
    assert!(pending(&g.repo).is_none());
    assert_eq!(g.last_applied().as_deref(), Some(after.as_str()));
    g.converged();
    assert_eq!(p.stop(), Some(0));
}

#[test]
fn a_proxy_killed_writing_a_delivery_takes_the_redelivery() {
    let g = Gitops::new(&["a"]);
    let (push, after) = g.push(&["a", "c"]);
    let sig = labctl::agent::proxy::webhook::sign(SECRET.as_bytes(), push.as_bytes());
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "kill-delivery-0001"),
        ("X-Hub-Signature-256", sig.as_str()),
        ("Content-Type", "application/json"),
    ];
    let p = g.proxy().env("LABCTL_FAILPOINT", "proxy.delivery").start();
    let port = p.port;
    // The connection dies with the process: GitHub sees no answer and redelivers later.
    let answer = try_request(port, "POST", "/hooks/github", &headers, push.as_bytes());
    assert!(answer.is_err(), "{answer:?}");
    killed_by(p, "proxy.delivery");
    assert_eq!(pending(&g.repo).unwrap()["commit"], after.as_str());

    let p = g.proxy().start();
    let r = try_request(p.port, "POST", "/hooks/github", &headers, push.as_bytes()).unwrap();
    assert!(r.status == 202 || r.status == 200, "{r:?}");
    let status = synced(&p, &after);
    assert_eq!(status["result"], "ok", "{status}\n{}", p.log_text());
    g.converged();
    // Now it is remembered.
    let r = try_request(p.port, "POST", "/hooks/github", &headers, push.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    wait_for("the queue to empty", Duration::from_secs(30), || {
        pending(&g.repo).is_none()
    });
    assert_eq!(p.stop(), Some(0));
}
