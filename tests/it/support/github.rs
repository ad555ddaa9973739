//! A stand-in for GitHub's REST API as the ingest agent uses it, speaking GitHub's formats: the
//! repository issues list (pull requests included, with their `pull_request` key) and the
//! repository-wide issue comments list, both filtered by `since` (inclusive), sorted by `updated`,
//! paged with `page`/`per_page` and a `Link` header (`first`, `prev`, `next`, `last`); a weak
//! `ETag` per answer and `304 Not Modified` for a matching `If-None-Match` (not counted against the
//! rate limit); `X-RateLimit-*` headers on every answer. Faults can be queued for a given request:
//! a spent primary rate limit (403, `X-RateLimit-Remaining: 0`), a secondary rate limit (403 or
//! 429 with `Retry-After` and GitHub's message), a 422 `Validation Failed`, an HTML body, and an
//! item missing its `title`. `GET /_stats` reports the counts (for the benchmark).
//!
//! Shared by the ingest tests and `benches/ingest_bench.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::Digest;

/// The first time stamp of generated items: 2026-01-01T00:00:00Z.
pub const BASE: u64 = 1_767_225_600;
/// The primary rate limit per window.
pub const LIMIT: u64 = 5000;

/// Something to answer instead of the list, at a given request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 403, `X-RateLimit-Remaining: 0`, reset this many seconds from now.
    PrimaryRateLimit {
        /// Seconds until `X-RateLimit-Reset`.
        reset_in: u64,
    },
    /// 403 with GitHub's secondary-limit message and `Retry-After`.
    SecondaryRateLimit {
        /// `Retry-After` seconds.
        retry_after: u64,
    },
    /// 429 with `Retry-After`.
    TooManyRequests {
        /// `Retry-After` seconds.
        retry_after: u64,
    },
    /// 422 `Validation Failed`.
    Unprocessable,
    /// 200 with an HTML error page.
    NotJson,
    /// The page as usual, but its first item has no `title`.
    MissingTitle,
}

/// The repository the stand-in serves, and what it counted. Tests change it between runs.
#[derive(Default)]
pub struct Repo {
    /// Issues and pull requests, as GitHub's JSON.
    pub issues: Vec<Value>,
    /// Issue comments, as GitHub's JSON.
    pub comments: Vec<Value>,
    /// Faults by 1-based request number (every request to the stand-in counts).
    pub faults: VecDeque<(u64, Fault)>,
    /// A delay before each list answer (to let a test stop the agent mid-sync).
    pub delay: Duration,
    /// Requests received.
    pub calls: u64,
    /// Answers that were `304 Not Modified`.
    pub not_modified: u64,
    /// Requests that counted against the rate limit.
    pub used: u64,
    /// Every request's path and query, in order.
    pub log: Vec<String>,
    /// Every list request's `Authorization` header (empty when absent).
    pub auth: Vec<String>,
}

impl Repo {
    /// Queue `fault` for the `n`th request counted from now (1 = the next one).
    pub fn fault_in(&mut self, n: u64, fault: Fault) {
        self.faults.push_back((self.calls + n, fault));
    }
}

/// A time stamp `secs` seconds after [`BASE`], as GitHub writes it.
pub fn time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(BASE + secs)).to_string()
}

fn user(login: &str) -> Value {
    json!({
        "login": login, "id": 1, "node_id": "MDQ6VXNlcjE=",
        "avatar_url": format!("https://github.com/images/{login}.gif"),
        "url": format!("https://api.github.com/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "type": "User", "site_admin": false
    })
}

/// An issue of `repository` as GitHub's list returns it.
#[allow(clippy::too_many_arguments)]
pub fn issue(
    repository: &str,
    number: u64,
    title: &str,
    body: Option<&str>,
    labels: &[&str],
    updated: u64,
    closed: bool,
    pull_request: bool,
) -> Value {
    let api = format!("https://api.github.com/repos/{repository}/issues/{number}");
    let labels: Vec<Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({
                "id": 208045946 + i as u64, "node_id": "MDU6TGFiZWwyMDgwNDU5NDY=",
                "url": format!("https://api.github.com/repos/{repository}/labels/{l}"),
                "name": l, "description": "", "color": "f29513", "default": false
            })
        })
        .collect();
    let mut v = json!({
        "id": 1_000_000 + number, "node_id": "MDU6SXNzdWUx",
        "url": api,
        "repository_url": format!("https://api.github.com/repos/{repository}"),
        "labels_url": format!("{api}/labels{{/name}}"),
        "comments_url": format!("{api}/comments"),
        "events_url": format!("{api}/events"),
        "html_url": format!("https://github.com/{repository}/issues/{number}"),
        "number": number,
        "state": if closed { "closed" } else { "open" },
        "state_reason": if closed { Value::from("completed") } else { Value::Null },
        "title": title,
        "body": body,
        "user": user("octocat"),
        "labels": labels,
        "assignee": null, "assignees": [], "milestone": null, "locked": false,
        "active_lock_reason": null,
        "comments": 0,
        "closed_at": if closed { Value::from(time(updated)) } else { Value::Null },
        "created_at": time(0),
        "updated_at": time(updated),
        "closed_by": null,
        "author_association": "OWNER",
        "timeline_url": format!("{api}/timeline"),
        "performed_via_github_app": null
    });
    if pull_request {
        v["pull_request"] = json!({
            "url": format!("https://api.github.com/repos/{repository}/pulls/{number}"),
            "html_url": format!("https://github.com/{repository}/pull/{number}"),
            "diff_url": format!("https://github.com/{repository}/pull/{number}.diff"),
            "patch_url": format!("https://github.com/{repository}/pull/{number}.patch"),
            "merged_at": null
        });
    }
    v
}

/// An issue comment as GitHub's list returns it.
pub fn comment(repository: &str, id: u64, number: u64, body: &str, updated: u64) -> Value {
    json!({
        "id": id, "node_id": "MDEyOklzc3VlQ29tbWVudDE=",
        "url": format!("https://api.github.com/repos/{repository}/issues/comments/{id}"),
        "html_url": format!("https://github.com/{repository}/issues/{number}#issuecomment-{id}"),
        "body": body,
        "user": user("hubot"),
        "created_at": time(0),
        "updated_at": time(updated),
        "issue_url": format!("https://api.github.com/repos/{repository}/issues/{number}"),
        "author_association": "COLLABORATOR",
        "performed_via_github_app": null
    })
}

/// A running stand-in on a loopback port, serving until the process ends.
pub struct GitHubStandIn {
    /// The API root to pass as `--github-api`.
    pub url: String,
    /// What it serves and counts.
    pub repo: Arc<Mutex<Repo>>,
}

impl GitHubStandIn {
    /// Serve `repo` on a free loopback port, on a thread of its own.
    pub fn start(repo: Repo) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let repo = Arc::new(Mutex::new(repo));
        let state = repo.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, router(state)).await.unwrap();
            });
        });
        GitHubStandIn { url, repo }
    }

    /// Lock the repository to read or change it.
    pub fn repo(&self) -> std::sync::MutexGuard<'_, Repo> {
        self.repo.lock().unwrap()
    }
}

fn router(state: Arc<Mutex<Repo>>) -> axum::Router {
    axum::Router::new()
        .route("/repos/{owner}/{repo}/issues", get(issues))
        .route("/repos/{owner}/{repo}/issues/comments", get(comments))
        .route(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            get(issue_comments),
        )
        .route("/_stats", get(stats))
        .with_state(state)
}

type Shared = State<Arc<Mutex<Repo>>>;
type Params = Query<HashMap<String, String>>;

async fn issues(s: Shared, p: Path<(String, String)>, q: Params, h: HeaderMap) -> Response {
    list(s, p, q, h, true).await
}

async fn comments(s: Shared, p: Path<(String, String)>, q: Params, h: HeaderMap) -> Response {
    list(s, p, q, h, false).await
}

async fn issue_comments(
    State(state): Shared,
    Path((owner, name, number)): Path<(String, String, u64)>,
    Query(q): Params,
    headers: HeaderMap,
) -> Response {
    let path = format!("/repos/{owner}/{name}/issues/{number}/comments");
    {
        let mut r = state.lock().unwrap();
        r.calls += 1;
        r.log.push(path.clone());
    }
    page(
        &state,
        &path,
        &q,
        &headers,
        Some(number),
        false,
        now() + 3600,
    )
}

async fn stats(State(state): Shared) -> Response {
    let r = state.lock().unwrap();
    axum::Json(json!({"calls": r.calls, "not_modified": r.not_modified, "used": r.used}))
        .into_response()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rate_headers(h: &mut HeaderMap, remaining: u64, reset: u64) {
    let used = LIMIT - remaining;
    for (k, v) in [
        ("x-ratelimit-limit", LIMIT.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-ratelimit-used", used.to_string()),
        ("x-ratelimit-resource", "core".to_string()),
    ] {
        h.insert(k, HeaderValue::from_str(&v).unwrap());
    }
}

fn error(status: StatusCode, message: &str, doc: &str) -> Response {
    (
        status,
        axum::Json(json!({"message": message, "documentation_url": doc, "status": status.as_u16().to_string()})),
    )
        .into_response()
}

async fn list(
    State(state): Shared,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
    is_issues: bool,
) -> Response {
    let path = if is_issues {
        format!("/repos/{owner}/{name}/issues")
    } else {
        format!("/repos/{owner}/{name}/issues/comments")
    };
    let (n, delay, fault) = {
        let mut r = state.lock().unwrap();
        r.calls += 1;
        let n = r.calls;
        let mut query: Vec<_> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        query.sort();
        r.log.push(format!("{path}?{}", query.join("&")));
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        r.auth.push(auth);
        let fault = match r.faults.front() {
            Some((at, _)) if *at == n => r.faults.pop_front().map(|(_, f)| f),
            _ => None,
        };
        (n, r.delay, fault)
    };
    let _ = n;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let reset = now() + 3600;
    let mut fault_title = false;
    if let Some(f) = fault {
        let mut r = state.lock().unwrap();
        let remaining = LIMIT - r.used;
        let limit_doc = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";
        let secondary = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 1234:5678:9ABC:DEF0:12345678.";
        let mut resp = match f {
            Fault::PrimaryRateLimit { reset_in } => {
                let mut resp = error(
                    StatusCode::FORBIDDEN,
                    "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID 1234:5678:9ABC:DEF0:12345678.",
                    limit_doc,
                );
                rate_headers(resp.headers_mut(), 0, now() + reset_in);
                return resp;
            }
            Fault::SecondaryRateLimit { retry_after } => {
                let mut resp = error(StatusCode::FORBIDDEN, secondary, limit_doc);
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, retry_after.into());
                resp
            }
            Fault::TooManyRequests { retry_after } => {
                let mut resp = error(StatusCode::TOO_MANY_REQUESTS, secondary, limit_doc);
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, retry_after.into());
                resp
            }
            Fault::Unprocessable => {
                r.used += 1;
                let mut resp = (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    axum::Json(json!({
                        "message": "Validation Failed",
                        "errors": [{"resource": "Issue", "field": "since", "code": "invalid"}],
                        "documentation_url": "https://docs.github.com/rest/issues/issues#list-repository-issues",
                        "status": "422"
                    })),
                )
                    .into_response();
                rate_headers(resp.headers_mut(), LIMIT - r.used, reset);
                return resp;
            }
            Fault::NotJson => {
                r.used += 1;
                let mut resp = (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<!DOCTYPE html>\n<html><head><title>Unicorn! · GitHub</title></head><body>No server is currently available to service your request.</body></html>\n",
                )
                    .into_response();
                rate_headers(resp.headers_mut(), LIMIT - r.used, reset);
                return resp;
            }
            Fault::MissingTitle => {
                fault_title = true;
                drop(r);
                return page(
                    &state,
                    &path,
                    &q,
                    &headers,
                    list_of(is_issues),
                    fault_title,
                    reset,
                );
            }
        };
        rate_headers(resp.headers_mut(), remaining, reset);
        return resp;
    }
    page(
        &state,
        &path,
        &q,
        &headers,
        list_of(is_issues),
        fault_title,
        reset,
    )
}

/// `None`: the issues list; `Some(0)`: all comments; `Some(n)`: issue `n`'s comments.
fn list_of(is_issues: bool) -> Option<u64> {
    if is_issues { None } else { Some(0) }
}

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(String::as_str)
}

fn page(
    state: &Arc<Mutex<Repo>>,
    path: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    comments_of: Option<u64>,
    drop_title: bool,
    reset: u64,
) -> Response {
    let is_issues = comments_of.is_none();
    let mut r = state.lock().unwrap();
    let since = param(q, "since").map(|s| {
        humantime::parse_rfc3339_weak(s)
            .unwrap_or_else(|e| panic!("since={s}: {e}"))
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    });
    let updated = |v: &Value| {
        humantime::parse_rfc3339(v["updated_at"].as_str().unwrap())
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let source = if is_issues { &r.issues } else { &r.comments };
    let mut items: Vec<&Value> = source
        .iter()
        .filter(|v| since.is_none_or(|s| updated(v) >= s))
        .filter(|v| match comments_of {
            Some(n) if n > 0 => v["issue_url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/issues/{n}")),
            _ => true,
        })
        .filter(|v| {
            if !is_issues {
                return true;
            }
            let labels_ok = param(q, "labels").is_none_or(|want| {
                want.split(',').all(|w| {
                    v["labels"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|l| l["name"] == w)
                })
            });
            let state_ok = match param(q, "state").unwrap_or("open") {
                "all" => true,
                s => v["state"] == s,
            };
            labels_ok && state_ok
        })
        .collect();
    let key = if is_issues { "number" } else { "id" };
    if comments_of.is_some_and(|n| n > 0) {
        // One issue's comments come in ascending id order.
        items.sort_by_key(|v| v[key].as_u64().unwrap());
    } else {
        items.sort_by_cached_key(|v| (updated(v), v[key].as_u64().unwrap()));
    }
    if param(q, "direction") == Some("desc") {
        items.reverse();
    }
    let per_page: usize = param(q, "per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page_no: usize = param(q, "page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let mut chosen: Vec<Value> = items
        .iter()
        .skip((page_no - 1) * per_page)
        .take(per_page)
        .map(|v| (*v).clone())
        .collect();
    if drop_title && let Some(first) = chosen.first_mut() {
        first.as_object_mut().unwrap().remove("title");
    }
    let body = serde_json::to_vec(&chosen).unwrap();
    let digest = sha2::Sha256::digest(&body);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let etag = format!("W/\"{hex}\"");
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        r.not_modified += 1;
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        r.used += 1;
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).unwrap());
    rate_headers(h, LIMIT - r.used, reset);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let link_to = |p: usize| {
        let mut pairs: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        pairs.sort();
        pairs.push(("page".into(), p.to_string()));
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        format!("<http://{host}{path}?{}>", query.join("&"))
    };
    let mut links = Vec::new();
    if page_no > 1 {
        links.push(format!("{}; rel=\"prev\"", link_to(page_no - 1)));
    }
    if page_no < last {
        links.push(format!("{}; rel=\"next\"", link_to(page_no + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(last)));
    }
    if page_no > 1 {
        links.push(format!("{}; rel=\"first\"", link_to(1)));
    }
    if !links.is_empty() {
        h.insert(
            header::LINK,
            HeaderValue::from_str(&links.join(", ")).unwrap(),
        );
    }
    resp
}

/// Percent-encoding for query values (GitHub's links encode `:` and `,`).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
