//! GitHub webhook deliveries: verified before anything else, remembered so none is acted on
//! twice, answered at once (work that takes time happens after the answer).
//!
//! GitHub sends `X-Hub-Signature-256: sha256=<hex>` (HMAC-SHA256 of the raw body with the hook's
//! secret), `X-GitHub-Event` (`ping`, `push`, `issues`, ...) and `X-GitHub-Delivery` (a GUID,
//! the same on a redelivery); the body is the JSON payload, or with content type
//! `application/x-www-form-urlencoded` the form field `payload` holding it.

use std::sync::Arc;

use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;

use super::deliveries::Begin;
use super::pending::PendingSync;
use super::{Proxy, Reply};
use crate::backend::systemd::{JobKind, JobResult};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What is read from a delivery's headers.
#[derive(Debug, Default, Clone)]
pub struct Delivery<'a> {
    /// `X-Hub-Signature-256`.
    pub signature: Option<&'a str>,
    /// `X-GitHub-Event`.
    pub event: Option<&'a str>,
    /// `X-GitHub-Delivery`.
    pub id: Option<&'a str>,
    /// `Content-Type`, parameters included.
    pub content_type: Option<&'a str>,
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`. The comparison
/// takes the same time wherever the first differing byte is.
pub fn verify_signature(secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// `sha256=<hex>` for `body` under `secret`, as GitHub computes it (for tests and the bench).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The parts of a `push` payload the proxy reads.
#[derive(Debug, Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
    #[serde(default)]
    clone_url: Option<String>,
    #[serde(default)]
    ssh_url: Option<String>,
    #[serde(default)]
    git_url: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
}

/// Handle one delivery whose body was read whole. Checks, in order: the signature (401 with the
/// same body whether it is missing or wrong), the headers, a redelivery (200), the payload.
pub async fn handle(proxy: &Arc<Proxy>, d: Delivery<'_>, body: &[u8]) -> Reply {
    if !proxy.verify(d.signature, body) {
        return Reply::error(401, "signature verification failed");
    }
    let Some(event) = d.event.filter(|e| !e.is_empty()) else {
        return Reply::error(400, "missing `X-GitHub-Event` header");
    };
    let Some(id) = d.id else {
        return Reply::error(400, "missing `X-GitHub-Delivery` header");
    };
    if !super::deliveries::valid_id(id) {
        return Reply::error(400, "`X-GitHub-Delivery` is not a delivery ID");
    }
    // The delivery is claimed, not locked: other deliveries go ahead while this one waits for
    // the disk, and the same delivery arriving twice at once is acted on once.
    let claim = loop {
        let done = proxy.handled.notified();
        let begin = super::lock(&proxy.deliveries).begin(id);
        match begin {
            Begin::Seen => {
                tracing::info!(delivery = id, event, "redelivery: already handled");
                return Reply::json(
                    200,
                    json!({ "delivery": id, "event": event, "result": "already handled" }),
                );
            }
            Begin::Busy => done.await,
            Begin::Started => break Claim { proxy, id },
        }
    };
    // Parsed straight into what the event needs: a push's few fields, or (for the others) only
    // checked to be JSON; never into a tree of the whole payload.
    let parsed = match event {
        "push" => payload::<Push>(d.content_type, body, event).map(Some),
        _ => payload::<serde::de::IgnoredAny>(d.content_type, body, event).map(|_| None),
    };
    let pushed = match parsed {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (reply, after) = match (event, pushed) {
        (_, Some(p)) => match push(proxy, id, p).await {
            Ok(r) => (r, None),
            Err(r) => return r,
        },
        ("ping", None) => (
            Reply::json(
                200,
                json!({ "delivery": id, "event": "ping", "result": "pong" }),
            ),
            None,
        ),
        ("issues", None) => match &proxy.ingest_unit {
            Some(unit) => (
                Reply::json(
                    202,
                    json!({ "delivery": id, "event": "issues", "result": "ingest told to sync", "unit": unit }),
                ),
                Some(unit.clone()),
            ),
            None => (ignored(id, event, "`host.ingest` is disabled"), None),
        },
        (other, None) => (ignored(id, other, "not an event the proxy acts on"), None),
    };
    crate::failpoint::hit("proxy.delivery");
    if let Err(e) = claim.finish() {
        tracing::error!(delivery = id, "{e}");
        return Reply::error(500, "cannot remember the delivery; redeliver it later");
    }
    tracing::info!(
        delivery = id,
        event,
        status = reply.status,
        "{}",
        reply.body["result"]
    );
    if let Some(unit) = after {
        // After the answer: GitHub waits 10 s at most, a reload job may take longer.
        let proxy = proxy.clone();
        tokio::spawn(async move { reload_ingest(&proxy, &unit).await });
    }
    reply
}

/// A delivery being handled. Dropped without [`finish`](Claim::finish) (refused, failed, or the
/// client went away mid-way), it is released unrecorded, so a redelivery is handled again.
struct Claim<'a> {
    proxy: &'a Proxy,
    id: &'a str,
}

impl Claim<'_> {
    /// Remember the delivery as handled and release it.
    fn finish(self) -> Result<(), crate::error::Error> {
        let r = super::lock(&self.proxy.deliveries).finish(self.id);
        self.proxy.handled.notify_waiters();
        std::mem::forget(self);
        r
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        super::lock(&self.proxy.deliveries).abandon(self.id);
        self.proxy.handled.notify_waiters();
    }
}

fn ignored(id: &str, event: &str, why: &str) -> Reply {
    Reply::json(
        202,
        json!({ "delivery": id, "event": event, "result": format!("ignored: {why}") }),
    )
}

/// The JSON payload of an `event` delivery, from either content type GitHub sends, as `T`.
fn payload<T: serde::de::DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
    event: &str,
) -> Result<T, Reply> {
    let mime = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json_text: std::borrow::Cow<'_, [u8]> = match mime.as_str() {
        "application/json" => body.into(),
        "application/x-www-form-urlencoded" => {
            match form_urlencoded::parse(body).find(|(k, _)| k == "payload") {
                Some((_, v)) => v.into_owned().into_bytes().into(),
                None => {
                    return Err(Reply::error(400, "form body has no `payload` field"));
                }
            }
        }
        other => {
            return Err(Reply::error(
                415,
                format!(
                    "content type `{other}` is not one GitHub sends (application/json or application/x-www-form-urlencoded)"
                ),
            ));
        }
    };
    serde_json::from_slice(&json_text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            Reply::error(400, format!("not a `{event}` payload: {e}"))
        }
        _ => Reply::error(400, format!("payload is not valid JSON: {e}")),
    })
}

/// A push to the followed branch of the checked-out repository is recorded as the pending sync
/// before the 202; any other push is acknowledged and ignored.
async fn push(proxy: &Proxy, id: &str, p: Push) -> Result<Reply, Reply> {
    let want = format!("refs/heads/{}", proxy.branch);
    if p.git_ref != want {
        return Ok(ignored(
            id,
            "push",
            &format!("`{}` is not the followed `{want}`", p.git_ref),
        ));
    }
    if let Some(origin) = &proxy.origin
        && !same_repository(origin, &p.repository)
    {
        return Ok(ignored(
            id,
            "push",
            &format!(
                "`{}` is not the checkout's origin `{origin}`",
                p.repository.full_name
            ),
        ));
    }
    if p.deleted {
        return Ok(ignored(id, "push", "the branch was deleted"));
    }
    let is_sha =
        |s: &str| (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_sha(&p.after) {
        return Err(Reply::error(400, "`after` is not a commit id"));
    }
    let pending = PendingSync {
        commit: p.after.to_ascii_lowercase(),
        git_ref: p.git_ref,
        before: p.before,
        repository: p.repository.full_name,
        delivery: id.to_string(),
        received_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    let commit = pending.commit.clone();
    if let Err(e) = proxy.pending.store(pending).await {
        tracing::error!(delivery = id, "{e}");
        return Err(Reply::error(
            500,
            "cannot queue the sync; redeliver it later",
        ));
    }
    proxy.sync.wake();
    Ok(Reply::json(
        202,
        json!({ "delivery": id, "event": "push", "result": "sync queued", "commit": commit }),
    ))
}

/// Whether the push's repository is the one `origin` points at: the same URL, or an origin URL
/// ending in `owner/name` (`git@github.com:owner/name.git`, `https://host/owner/name`, a local
/// mirror's path).
fn same_repository(origin: &str, r: &Repository) -> bool {
    let norm = |u: &str| {
        u.trim()
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .to_ascii_lowercase()
    };
    let o = norm(origin);
    let urls = [&r.clone_url, &r.ssh_url, &r.git_url, &r.html_url];
    if urls
        .iter()
        .any(|u| u.as_deref().is_some_and(|u| norm(u) == o))
    {
        return true;
    }
    let name = r.full_name.to_ascii_lowercase();
    o.ends_with(&format!("/{name}")) || o.ends_with(&format!(":{name}")) || o == name
}

/// Ask systemd to reload the ingest unit (its agent syncs on SIGHUP).
async fn reload_ingest(proxy: &Proxy, unit: &str) {
    let r = match proxy.systemd().await {
        Ok(s) => {
            s.run_jobs(JobKind::Reload, &[unit.to_string()], |_| {}, |_| {})
                .await
        }
        Err(e) => Err(e),
    };
    match r {
        Ok(outcomes) => {
            for o in outcomes {
                match &o.result {
                    JobResult::Ran(r) if o.ok() => tracing::info!(unit, "reloaded: {r}"),
                    JobResult::Ran(r) => tracing::warn!(unit, "reload job ended `{r}`"),
                    JobResult::NotQueued(e) => tracing::warn!(unit, "cannot reload: {e}"),
                }
            }
        }
        Err(e) => {
            proxy.systemd_failed().await;
            tracing::warn!(unit, "cannot reload: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_right_key_and_body() {
        let sig = sign(b"s3cret", b"{\"zen\":\"x\"}");
        assert!(verify_signature(b"s3cret", Some(&sig), b"{\"zen\":\"x\"}"));
        assert!(!verify_signature(b"other", Some(&sig), b"{\"zen\":\"x\"}"));
        assert!(!verify_signature(b"s3cret", Some(&sig), b"{\"zen\":\"y\"}"));
        assert!(!verify_signature(b"s3cret", None, b""));
        assert!(!verify_signature(b"s3cret", Some("sha1=00"), b""));
        assert!(!verify_signature(b"s3cret", Some("sha256=zz"), b""));
    }

    #[test]
    fn repositories_match_by_url_or_name() {
        let r = Repository {
            full_name: "Acme/homelab".into(),
            clone_url: Some("https://github.com/Acme/homelab.git".into()),
            ssh_url: Some("git@github.com:Acme/homelab.git".into()),
            git_url: None,
            html_url: None,
        };
        assert!(same_repository("https://github.com/acme/homelab.git", &r));
        assert!(same_repository("git@github.com:Acme/homelab.git", &r));
        assert!(same_repository("/srv/mirrors/acme/homelab.git", &r));
        assert!(!same_repository("https://github.com/acme/other.git", &r));
        assert!(!same_repository(
            "https://github.com/evil/acme/homelab-x",
            &r
        ));
    }

    #[test]
    fn both_content_types_give_the_payload() {
        let json = |ct: Option<&str>, body: &[u8]| payload::<serde_json::Value>(ct, body, "ping");
        let v = json(Some("application/json"), br#"{"a":1}"#).unwrap();
        assert_eq!(v["a"], 1);
        let v = json(
            Some("application/x-www-form-urlencoded"),
            b"payload=%7B%22a%22%3A2%7D",
        )
        .unwrap();
        assert_eq!(v["a"], 2);
        assert_eq!(json(Some("text/plain"), b"").unwrap_err().status, 415);
        assert_eq!(json(None, b"{").unwrap_err().status, 400);
        // Valid JSON that is not a push is told apart from JSON that is not valid.
        let r = payload::<Push>(None, br#"{"a":1}"#, "push").unwrap_err();
        assert_eq!(r.status, 400);
        assert!(
            r.body["error"]
                .as_str()
                .unwrap()
                .starts_with("not a `push` payload"),
            "{r:?}"
        );
        let r = payload::<Push>(None, br#"{"ref":"#, "push").unwrap_err();
        assert!(
            r.body["error"]
                .as_str()
                .unwrap()
                .starts_with("payload is not valid JSON"),
            "{r:?}"
        );
    }
}
