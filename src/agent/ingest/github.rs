//! GitHub's REST API as the ingest reads it: one repository's issues and issue comments, a page at
//! a time, with conditional requests and rate limits waited out. The agent's only HTTP client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{self, HeaderMap};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Failure, chain};
use crate::error::Error;

/// Items per page: GitHub's maximum, the fewest requests per sync.
pub const PER_PAGE: u32 = 100;

/// A secondary rate limit without `Retry-After`: GitHub asks for at least a minute, then longer
/// after each further refusal.
const SECONDARY_WAIT: Duration = Duration::from_secs(60);

/// The two lists a sync reads, each with its own cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `GET /repos/{owner}/{repo}/issues` (pull requests come back too and are skipped).
    Issues,
    /// `GET /repos/{owner}/{repo}/issues/comments`, repository-wide.
    Comments,
}

impl Stream {
    /// The stream's name in the cursor table and the log.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Issues => "issues",
            Stream::Comments => "comments",
        }
    }
}

/// An issue, as a journal entry needs it.
#[derive(Debug, Clone)]
pub struct Issue {
    /// The issue's number in its repository.
    pub number: i64,
    /// Title.
    pub title: String,
    /// Markdown body (empty when GitHub says `null`).
    pub body: String,
    /// Label names.
    pub labels: Vec<String>,
    /// `open` or `closed`.
    pub state: String,
    /// The author's login (absent for deleted users).
    pub author: Option<String>,
    /// The issue's page on GitHub.
    pub url: String,
    /// RFC 3339 time stamps, as GitHub writes them.
    pub created_at: String,
    /// Last update; the cursor moves along these.
    pub updated_at: String,
    /// When it was closed, if it is.
    pub closed_at: Option<String>,
    /// How many comments it has.
    pub comments: i64,
}

/// An issue comment.
#[derive(Debug, Clone)]
pub struct Comment {
    /// The comment's id (unique in the repository).
    pub id: i64,
    /// The number of the issue it belongs to.
    pub number: i64,
    /// Markdown body.
    pub body: String,
    /// The author's login.
    pub author: Option<String>,
    /// The comment's place on GitHub.
    pub url: String,
    /// RFC 3339 time stamps.
    pub created_at: String,
    /// Last update; the cursor moves along these.
    pub updated_at: String,
}

/// Something with an update time the cursor can move along.
pub trait Updated {
    /// The RFC 3339 update time.
    fn updated_at(&self) -> &str;
}

impl Updated for Issue {
    fn updated_at(&self) -> &str {
        &self.updated_at
    }
}

impl Updated for Comment {
    fn updated_at(&self) -> &str {
        &self.updated_at
    }
}

/// One answer to a list request.
#[derive(Debug)]
pub enum Fetched<T> {
    /// 304: nothing changed since the ETag was given (costs no rate limit).
    NotModified,
    /// A page of items.
    Page {
        /// The items, pull requests already dropped.
        items: Vec<T>,
        /// The `Link: rel="next"` URL, when there are more pages.
        next: Option<String>,
        /// The page's `ETag`.
        etag: Option<String>,
        /// Pull requests dropped from the page.
        skipped: usize,
    },
}

/// A client for one repository's lists.
pub struct GitHub {
    http: reqwest::Client,
    api: String,
    repository: String,
    token: Option<String>,
    /// Requests sent so far, refused and 304 ones included.
    pub calls: u64,
    /// The last `X-RateLimit-Remaining` GitHub sent.
    pub remaining: Option<u64>,
    /// The primary limit is spent: no request before this moment.
    not_before: Option<SystemTime>,
    /// Secondary-limit refusals in a row without a `Retry-After`, for the growing wait.
    secondary: u32,
}

impl GitHub {
    /// A client for `repository` (`owner/name`) at `api` (`https://api.github.com` or a GitHub
    /// Enterprise `/api/v3` root); `token` authenticates when given.
    ///
    /// # Errors
    /// [`Error::Agent`] when `api` is not an http(s) URL or the HTTP client cannot be built.
    pub fn new(api: &str, repository: &str, token: Option<String>) -> Result<Self, Error> {
        let refuse = |message: String| Error::Agent {
            agent: "ingest",
            message,
        };
        let parsed = Url::parse(api).map_err(|e| refuse(format!("`--github-api` `{api}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(refuse(format!(
                "`--github-api` `{api}`: not an http(s) URL"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("labctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| refuse(format!("cannot build the HTTP client: {}", chain(&e))))?;
        Ok(GitHub {
            http,
            api: api.trim_end_matches('/').to_string(),
            repository: repository.to_string(),
            token: token.filter(|t| !t.is_empty()),
            calls: 0,
            remaining: None,
            not_before: None,
            secondary: 0,
        })
    }

    /// The first page of `stream` updated at or after `since`, oldest first.
    pub fn list_url(&self, stream: Stream, label: &str, since: Option<&str>) -> String {
        let path = match stream {
            Stream::Issues => "issues",
            Stream::Comments => "issues/comments",
        };
        let mut url = Url::parse(&format!("{}/repos/{}/{path}", self.api, self.repository))
            .expect("the API root parsed as a URL in `new`");
        {
            let mut q = url.query_pairs_mut();
            if stream == Stream::Issues {
                q.append_pair("labels", label);
                q.append_pair("state", "all");
            }
            q.append_pair("sort", "updated");
            q.append_pair("direction", "asc");
            if let Some(since) = since {
                q.append_pair("since", since);
            }
            q.append_pair("per_page", &PER_PAGE.to_string());
        }
        url.into()
    }

    /// The first page of one issue's comments (oldest first).
    pub fn issue_comments_url(&self, number: i64) -> String {
        format!(
            "{}/repos/{}/issues/{number}/comments?per_page={PER_PAGE}",
            self.api, self.repository
        )
    }

    /// Fetch one page of issues; pull requests are dropped.
    ///
    /// # Errors
    /// A transport failure, an error status other than a rate limit, or a body that is not the
    /// list of issues GitHub documents; each names the request and the cause.
    pub async fn issues(
        &mut self,
        url: &str,
        etag: Option<&str>,
    ) -> Result<Fetched<Issue>, Failure> {
        let Some((headers, body)) = self.get(url, etag).await? else {
            return Ok(Fetched::NotModified);
        };
        issues_page(url, &headers, &body)
    }

    /// Fetch one page of issue comments.
    ///
    /// # Errors
    /// As [`GitHub::issues`].
    pub async fn comments(
        &mut self,
        url: &str,
        etag: Option<&str>,
    ) -> Result<Fetched<Comment>, Failure> {
        let Some((headers, body)) = self.get(url, etag).await? else {
            return Ok(Fetched::NotModified);
        };
        comments_page(url, &headers, &body)
    }

    /// GET `url`; `None` for a 304. Rate-limit refusals are waited out and retried here, so the
    /// caller only sees answers and real failures. Waits end early when the sync is dropped (the
    /// agent's shutdown drops it).
    async fn get(
        &mut self,
        url: &str,
        etag: Option<&str>,
    ) -> Result<Option<(HeaderMap, Vec<u8>)>, Failure> {
        loop {
            if let Some(at) = self.not_before.take()
                && let Ok(wait) = at.duration_since(SystemTime::now())
            {
                tracing::warn!(
                    "GitHub rate limit spent (X-RateLimit-Remaining: 0): waiting {} s for its reset",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
            }
            let mut req = self
                .http
                .get(url)
                .header(header::ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28");
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(e) = etag {
                req = req.header(header::IF_NONE_MATCH, e);
            }
            self.calls += 1;
            let resp = req
                .send()
                .await
                .map_err(|e| Failure::Failed(format!("`GET {url}`: {}", chain(&e))))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let remaining = header_u64(&headers, "x-ratelimit-remaining");
            if remaining.is_some() {
                self.remaining = remaining;
            }
            if status == StatusCode::NOT_MODIFIED {
                return Ok(None);
            }
            let body = resp.bytes().await.map_err(|e| {
                Failure::Failed(format!("`GET {url}`: reading the body: {}", chain(&e)))
            })?;
            let body = body.to_vec();
            if matches!(
                status,
                StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
            ) && let Some((wait, why)) = self.rate_limit_wait(&headers, &body)
            {
                tracing::warn!(
                    "`GET {url}` answered {status} ({why}): waiting {} s, then retrying",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if !status.is_success() {
                return Err(Failure::Failed(format!(
                    "`GET {url}` answered {status}: {}",
                    message_of(&body)
                )));
            }
            self.secondary = 0;
            if remaining == Some(0) {
                self.not_before = header_u64(&headers, "x-ratelimit-reset").map(epoch);
            }
            return Ok(Some((headers, body)));
        }
    }

    /// How long a 403/429 asks us to wait, following GitHub's rules: `Retry-After` first; then a
    /// spent primary limit (`X-RateLimit-Remaining: 0`) until `X-RateLimit-Reset`; then a secondary
    /// limit named in the body, a minute doubling with each refusal. `None`: not a rate limit (a
    /// 403 for missing permissions is a failure, not something to wait for).
    fn rate_limit_wait(&mut self, headers: &HeaderMap, body: &[u8]) -> Option<(Duration, String)> {
        if let Some(s) = header_u64(headers, "retry-after") {
            return Some((Duration::from_secs(s.max(1)), format!("Retry-After: {s}")));
        }
        if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
            let reset = header_u64(headers, "x-ratelimit-reset").unwrap_or(0);
            let wait = epoch(reset)
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .max(Duration::from_secs(1));
            return Some((
                wait,
                format!("rate limit spent until X-RateLimit-Reset {reset}"),
            ));
        }
        let message = message_of(body);
        if message.to_lowercase().contains("rate limit") {
            let wait = SECONDARY_WAIT * 2u32.saturating_pow(self.secondary.min(5));
            self.secondary += 1;
            return Some((wait, message));
        }
        None
    }
}

#[derive(Deserialize)]
struct RawIssue {
    number: i64,
    title: String,
    body: Option<String>,
    state: String,
    labels: Vec<RawLabel>,
    user: Option<RawUser>,
    html_url: String,
    created_at: String,
    updated_at: String,
    closed_at: Option<String>,
    #[serde(default)]
    comments: i64,
    #[serde(default)]
    pull_request: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawLabel {
    name: String,
}

#[derive(Deserialize)]
struct RawUser {
    login: String,
}

#[derive(Deserialize)]
struct RawComment {
    id: i64,
    issue_url: String,
    body: Option<String>,
    user: Option<RawUser>,
    html_url: String,
    created_at: String,
    updated_at: String,
}

/// One page of issues as GitHub answered `url` (its headers give the next page): the items,
/// pull requests dropped.
///
/// # Errors
/// A body that is not the list of issues GitHub documents, naming `url`, the item and field.
pub fn issues_page(url: &str, headers: &HeaderMap, body: &[u8]) -> Result<Fetched<Issue>, Failure> {
    let raw: Vec<RawIssue> = parse(url, body)?;
    let mut items = Vec::with_capacity(raw.len());
    let mut skipped = 0;
    for (i, r) in raw.into_iter().enumerate() {
        if r.pull_request.is_some() {
            skipped += 1;
            continue;
        }
        let at = |field: &str| format!("`GET {url}`: item {i} (issue #{}): `{field}`", r.number);
        check_time(&r.created_at, || at("created_at"))?;
        check_time(&r.updated_at, || at("updated_at"))?;
        if let Some(c) = &r.closed_at {
            check_time(c, || at("closed_at"))?;
        }
        items.push(Issue {
            number: r.number,
            title: r.title,
            body: r.body.unwrap_or_default(),
            labels: r.labels.into_iter().map(|l| l.name).collect(),
            state: r.state,
            author: r.user.map(|u| u.login),
            url: r.html_url,
            created_at: r.created_at,
            updated_at: r.updated_at,
            closed_at: r.closed_at,
            comments: r.comments,
        });
    }
    Ok(Fetched::Page {
        items,
        next: next_link(headers),
        etag: etag_of(headers),
        skipped,
    })
}

/// One page of issue comments as GitHub answered `url`.
///
/// # Errors
/// As [`issues_page`].
pub fn comments_page(
    url: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Fetched<Comment>, Failure> {
    let raw: Vec<RawComment> = parse(url, body)?;
    let mut items = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("`GET {url}`: item {i} (comment {}): `{field}`", r.id);
        check_time(&r.created_at, || at("created_at"))?;
        check_time(&r.updated_at, || at("updated_at"))?;
        // `.../repos/{owner}/{repo}/issues/{number}`: the number is the last segment.
        let number = r
            .issue_url
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                Failure::Failed(format!(
                    "{}: `{}` does not end in an issue number",
                    at("issue_url"),
                    r.issue_url
                ))
            })?;
        items.push(Comment {
            id: r.id,
            number,
            body: r.body.unwrap_or_default(),
            author: r.user.map(|u| u.login),
            url: r.html_url,
            created_at: r.created_at,
            updated_at: r.updated_at,
        });
    }
    Ok(Fetched::Page {
        items,
        next: next_link(headers),
        etag: etag_of(headers),
        skipped: 0,
    })
}

/// The body as a list of `T`, or a failure naming the request and where the body went wrong.
fn parse<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<Vec<T>, Failure> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        Failure::Failed(if inner.is_syntax() || inner.is_eof() {
            format!(
                "`GET {url}`: the body is not JSON ({inner}): {}",
                excerpt(body)
            )
        } else {
            format!("`GET {url}`: unexpected JSON at `{}`: {inner}", e.path())
        })
    })
}

fn check_time(value: &str, at: impl Fn() -> String) -> Result<(), Failure> {
    humantime::parse_rfc3339(value)
        .map(|_| ())
        .map_err(|e| Failure::Failed(format!("{}: `{value}` is not an RFC 3339 time: {e}", at())))
}

/// GitHub's error bodies are `{"message": "...", "documentation_url": "..."}`; anything else is
/// quoted as it came.
fn message_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    match serde_json::from_slice::<Message>(body) {
        Ok(m) => m.message,
        Err(_) => excerpt(body),
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(120) {
        Some((i, _)) => format!("{:?}…", &text[..i]),
        None if text.is_empty() => "(empty body)".into(),
        None => format!("{text:?}"),
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn etag_of(headers: &HeaderMap) -> Option<String> {
    Some(headers.get(header::ETAG)?.to_str().ok()?.to_string())
}

fn epoch(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The `rel="next"` target of a `Link` header (RFC 8288):
/// `<https://…?page=2>; rel="next", <https://…?page=5>; rel="last"`.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::LINK)?.to_str().ok()?;
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let params_end = rest[end..].find('<').map_or(rest.len(), |i| end + i);
        let is_next = rest[end + 1..params_end].split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_end_matches(',')
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_string());
        }
        rest = &rest[params_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(v: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert(header::LINK, v.parse().unwrap());
        next_link(&h)
    }

    #[test]
    fn next_link_is_found_among_others() {
        assert_eq!(
            link(
                r#"<https://api.github.com/repositories/1300192/issues?page=2>; rel="prev", <https://api.github.com/repositories/1300192/issues?page=4>; rel="next", <https://api.github.com/repositories/1300192/issues?page=515>; rel="last""#
            )
            .as_deref(),
            Some("https://api.github.com/repositories/1300192/issues?page=4")
        );
        assert_eq!(
            link(r#"<https://x/issues?labels=a%2Cb&page=2>; rel="next""#).as_deref(),
            Some("https://x/issues?labels=a%2Cb&page=2")
        );
        assert_eq!(link(r#"<https://x/issues?page=1>; rel="first""#), None);
    }

    #[test]
    fn bodies_that_are_not_issue_lists_are_named() {
        let Err(Failure::Failed(m)) = parse::<RawIssue>("u", b"<html>oops</html>") else {
            panic!()
        };
        assert!(m.contains("not JSON"), "{m}");
        let Err(Failure::Failed(m)) = parse::<RawIssue>("u", br#"[{"number": 1}]"#) else {
            panic!()
        };
        assert!(m.contains("`[0]`") && m.contains("missing field"), "{m}");
    }
}
