//! Tailscale's state from tailscaled's local API, over its unix socket, as `tailscale status
//! --json` and `tailscale funnel status` read it: `GET /localapi/v0/status` (`BackendState`, the
//! `Peer` map with each peer's `Online`) and `GET /localapi/v0/serve-config` (`AllowFunnel`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::metric::{Kind, Point};

/// The Host header the tailscale CLI sends to its daemon.
const HOST: &str = "local-tailscaled.sock";
/// One query may take this long; a stuck daemon must not hold up a collection.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The part of `ipnstate.Status` the collector reads.
#[derive(Debug, Deserialize)]
struct Status {
    #[serde(rename = "BackendState", default)]
    backend_state: String,
    #[serde(rename = "Peer", default)]
    peer: Option<HashMap<String, PeerStatus>>,
}

#[derive(Debug, Deserialize)]
struct PeerStatus {
    #[serde(rename = "Online", default)]
    online: bool,
}

/// The part of `ipn.ServeConfig` the collector reads: which `host:port`s are funneled.
#[derive(Debug, Deserialize)]
struct ServeConfig {
    #[serde(rename = "AllowFunnel", default)]
    allow_funnel: Option<HashMap<String, bool>>,
}

/// `tailscale.up` (1 when the backend is `Running`), `tailscale.peers.online` and
/// `tailscale.funnel.on`. No socket means Tailscale is not running here: `tailscale.up` 0 and no
/// other points, not an error.
///
/// # Errors
/// A socket that exists but does not answer, or answers what is not a status: the message says
/// which.
pub async fn collect(socket: &Path, out: &mut Vec<Point>) -> Result<(), Unreadable> {
    let up = |v: f64| {
        Point::new(
            "tailscale.up",
            "",
            "Whether tailscaled's backend is running (logged in and connected).",
            Kind::Gauge,
            v,
        )
    };
    if !socket.exists() {
        out.push(up(0.0));
        return Ok(());
    }
    let status: Status = match get(socket, "/localapi/v0/status").await {
        Ok(s) => s,
        Err(e) => {
            out.push(up(0.0));
            return Err(Unreadable(e));
        }
    };
    status_points(&status, out);
    let serve: ServeConfig = get(socket, "/localapi/v0/serve-config")
        .await
        .map_err(Unreadable)?;
    funnel_point(&serve, out);
    Ok(())
}

/// The points of tailscaled's two answers, as read from its socket: `/localapi/v0/status` and
/// `/localapi/v0/serve-config` (the fuzz targets read them this way).
///
/// # Errors
/// An answer that is not the JSON tailscaled sends, naming which.
pub fn from_answers(status: &[u8], serve: &[u8], out: &mut Vec<Point>) -> Result<(), Unreadable> {
    let status: Status = serde_json::from_slice(status)
        .map_err(|e| Unreadable(format!("tailscaled /localapi/v0/status: {e}")))?;
    status_points(&status, out);
    let serve: ServeConfig = serde_json::from_slice(serve)
        .map_err(|e| Unreadable(format!("tailscaled /localapi/v0/serve-config: {e}")))?;
    funnel_point(&serve, out);
    Ok(())
}

fn status_points(status: &Status, out: &mut Vec<Point>) {
    let running = status.backend_state == "Running";
    out.push(Point::new(
        "tailscale.up",
        "",
        "Whether tailscaled's backend is running (logged in and connected).",
        Kind::Gauge,
        if running { 1.0 } else { 0.0 },
    ));
    let online = status
        .peer
        .iter()
        .flatten()
        .filter(|(_, p)| p.online)
        .count();
    out.push(Point::new(
        "tailscale.peers.online",
        "{peer}",
        "Peers of this node that are online.",
        Kind::Gauge,
        online as f64,
    ));
}

fn funnel_point(serve: &ServeConfig, out: &mut Vec<Point>) {
    let funnel = serve.allow_funnel.iter().flatten().any(|(_, on)| *on);
    out.push(Point::new(
        "tailscale.funnel.on",
        "",
        "Whether a Tailscale Funnel is on for this node.",
        Kind::Gauge,
        if funnel { 1.0 } else { 0.0 },
    ));
}

/// Why tailscaled's answer could not be read: which request, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// One GET over a fresh connection (a query every interval does not need a pool).
async fn get<T: for<'de> Deserialize<'de>>(socket: &Path, path: &str) -> Result<T, String> {
    let what = || format!("tailscaled `{}` {path}", socket.display());
    let fetch = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("{}: cannot connect: {e}", what()))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{}: {e}", what()))?;
        let conn = tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, HOST)
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("{}: {e}", what()))?;
        let res = send
            .send_request(req)
            .await
            .map_err(|e| format!("{}: {e}", what()))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{}: reading the answer: {e}", what()))?
            .to_bytes();
        conn.abort();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(format!("{}: HTTP {status}: {}", what(), text.trim()));
        }
        serde_json::from_slice(&body)
            .map_err(|e| format!("{}: the answer is not what tailscaled sends: {e}", what()))
    };
    tokio::time::timeout(TIMEOUT, fetch)
        .await
        .map_err(|_| format!("{}: no answer within {} s", what(), TIMEOUT.as_secs()))?
}
