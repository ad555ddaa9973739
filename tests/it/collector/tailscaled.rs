//! Tailscale's state from the tailscaled stand-in's local API.

use super::*;

#[tokio::test]
async fn tailscale_running_with_peers_and_a_funnel() {
    let t = Tailscaled::start(
        tailscale_fixture("status-running.json"),
        tailscale_fixture("serve-config-funnel.json"),
    );
    let mut out = Vec::new();
    tailscale::collect(&t.socket, &mut out).await.unwrap();
    let by: BTreeMap<&str, (f64, &str)> = out.iter().map(|p| (p.name, (p.value, p.unit))).collect();
    assert_eq!(
        by,
        [
            ("tailscale.up", (1.0, "")),
            ("tailscale.peers.online", (2.0, "{peer}")),
            ("tailscale.funnel.on", (1.0, "")),
        ]
        .into()
    );
}

#[tokio::test]
async fn tailscale_logged_out_is_down() {
    let t = Tailscaled::start(
        tailscale_fixture("status-needs-login.json"),
        tailscale_fixture("serve-config-empty.json"),
    );
    let mut out = Vec::new();
    tailscale::collect(&t.socket, &mut out).await.unwrap();
    let by: BTreeMap<&str, f64> = out.iter().map(|p| (p.name, p.value)).collect();
    assert_eq!(
        by,
        [
            ("tailscale.up", 0.0),
            ("tailscale.peers.online", 0.0),
            ("tailscale.funnel.on", 0.0),
        ]
        .into()
    );
}

#[tokio::test]
async fn tailscale_answering_nonsense_is_down_and_named() {
    let t = Tailscaled::start("<html>oops</html>".into(), "{}".into());
    let mut out = Vec::new();
    let e = tailscale::collect(&t.socket, &mut out).await.unwrap_err().0;
    assert!(
        e.contains("/localapi/v0/status") && e.contains("not what tailscaled sends"),
        "{e}"
    );
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].name, out[0].value), ("tailscale.up", 0.0));
}
