//! `labctl agent ingest`: GitHub issues with a label become journal entries in PostgreSQL.
//!
//! A sync reads two lists oldest-update first, the labelled issues and the repository's issue
//! comments (kept only for journal entries), each from its own cursor: the `updated_at` of the
//! newest item committed. Every page is written with the cursor after it in one transaction
//! ([`db`]), so a crash at any point resumes from the last whole page and ends with the same rows.
//!
//! Pages are asked for as "updated since the cursor" rather than by walking page numbers to the
//! end: an item updated during a sync moves to the end of the list and would shift the next page
//! past an item not yet read. GitHub's `since` includes the cursor's own second, so the newest
//! item of a page comes back on the next one; the upsert makes that harmless. Only when a whole
//! page shares one time stamp (the cursor cannot move) is the `Link: rel="next"` page followed.
//!
//! A sync runs at start, every `--interval`, and on SIGHUP (the proxy sends one when an `issues`
//! webhook arrives); `--once` runs one and exits 0 or 1. A failed sync (GitHub answering an error
//! or a body that is not the list it documents, the database down) is logged with what failed and
//! retried with a growing delay; rate limits are waited out inside the sync.
//!
//! An issue labelled after it was commented on joins the journal once the comments cursor has
//! passed those comments: its insert notes it for a backfill (in the page's transaction), and the
//! end of the sync reads its comments from the issue's own list.

mod db;
pub(crate) mod github;

use std::time::{Duration, Instant, SystemTime};

use tracing::Instrument;

use super::runtime::{Shutdown, backoff};
use crate::cli::IngestArgs;
use crate::error::Error;
use crate::metric::{Kind, Point};
use db::{Cursor, Db};
use github::{Fetched, GitHub, Stream, Updated};

/// Why a sync did not finish.
#[derive(Debug)]
pub enum Failure {
    /// GitHub failed or answered something unusable; the message names the request and cause.
    Failed(String),
    /// The database failed; the connection is dropped and made again on the next try.
    Database(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Failed(m) | Failure::Database(m) => f.write_str(m),
        }
    }
}

pub(crate) use crate::error::chain;

/// Run the ingest until `shutdown` (or, with `--once`, for one sync).
///
/// # Errors
/// Bad settings (`--repository`, `--database-url`, `--github-api`) at start; with `--once`, a
/// failed sync.
pub async fn run(config: IngestArgs, shutdown: Shutdown) -> Result<(), Error> {
    let mut ingest = Ingest::new(&config)?;
    shutdown.ready();
    if config.once {
        return match ingest.sync("once", &shutdown).await {
            Ok(()) => Ok(()),
            Err(f) => Err(Error::Agent {
                agent: "ingest",
                message: format!("sync failed: {f}"),
            }),
        };
    }
    let mut reload = shutdown.clone();
    let mut failures = 0u32;
    let mut trigger = "start";
    loop {
        let wait = match ingest.sync(trigger, &shutdown).await {
            Ok(()) => {
                failures = 0;
                config.interval
            }
            Err(f) => {
                // Sooner than the next regular sync, but never in a tight loop.
                let wait = backoff(failures, config.interval);
                failures += 1;
                tracing::error!(
                    "sync failed (attempt {failures}), retrying in {} s: {f}",
                    wait.as_secs_f32()
                );
                wait
            }
        };
        if shutdown.is_cancelled() {
            return Ok(());
        }
        trigger = tokio::select! {
            _ = tokio::time::sleep(wait) => if failures > 0 { "retry" } else { "interval" },
            _ = reload.reloaded() => "SIGHUP",
            _ = shutdown.cancelled() => return Ok(()),
        };
    }
}

/// The agent's state between syncs.
struct Ingest {
    repository: String,
    label: String,
    github: GitHub,
    database: db::Settings,
    db: Option<Db>,
    totals: Totals,
}

/// Cumulative counts for the metrics.
#[derive(Default)]
struct Totals {
    entries: u64,
    comments: u64,
    syncs_ok: u64,
    syncs_failed: u64,
}

/// What one sync did.
#[derive(Default)]
struct Done {
    entries: u64,
    comments: u64,
    pull_requests: usize,
    unchanged: usize,
}

impl Ingest {
    fn new(config: &IngestArgs) -> Result<Self, Error> {
        let usage = |m: String| Error::Agent {
            agent: "ingest",
            message: m,
        };
        let valid = config
            .repository
            .split_once('/')
            .is_some_and(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'));
        if !valid {
            return Err(usage(format!(
                "`--repository` `{}` is not `owner/name`",
                config.repository
            )));
        }
        let token = std::env::var("GITHUB_TOKEN").ok();
        let github = GitHub::new(&config.github_api, &config.repository, token)?;
        let database = db::config(&config.database_url)?;
        Ok(Ingest {
            repository: config.repository.clone(),
            label: config.label.clone(),
            github,
            database,
            db: None,
            totals: Totals::default(),
        })
    }

    /// One sync, in its own span; stops early (rolling back the page in flight) on shutdown.
    async fn sync(&mut self, trigger: &'static str, shutdown: &Shutdown) -> Result<(), Failure> {
        let span = tracing::info_span!(
            "ingest sync",
            repository = %self.repository,
            label = %self.label,
            trigger,
        );
        let started = Instant::now();
        let calls_before = self.github.calls;
        let result = tokio::select! {
            r = self.sync_inner().instrument(span.clone()) => Some(r),
            _ = shutdown.cancelled() => None,
        };
        let _enter = span.enter();
        let elapsed = started.elapsed();
        let calls = self.github.calls - calls_before;
        let result = match result {
            None => {
                // The page in flight was dropped with its transaction: PostgreSQL rolls it back.
                tracing::info!(
                    "sync stopped by shutdown after {calls} API calls; the page in flight is rolled back"
                );
                self.db = None;
                return Ok(());
            }
            Some(Ok(done)) => {
                self.totals.syncs_ok += 1;
                self.totals.entries += done.entries;
                self.totals.comments += done.comments;
                tracing::info!(
                    "sync done in {} ms: {} entries and {} comments written, {} pull requests skipped, {} lists unchanged (304), {calls} API calls, rate limit remaining {}",
                    elapsed.as_millis(),
                    done.entries,
                    done.comments,
                    done.pull_requests,
                    done.unchanged,
                    self.github
                        .remaining
                        .map_or_else(|| "unknown".to_string(), |r| r.to_string()),
                );
                Ok(())
            }
            Some(Err(f)) => {
                self.totals.syncs_failed += 1;
                if matches!(f, Failure::Database(_)) {
                    self.db = None;
                }
                Err(f)
            }
        };
        crate::telemetry::record(&self.points(elapsed, result.is_ok()));
        result
    }

    async fn sync_inner(&mut self) -> Result<Done, Failure> {
        if self.db.as_ref().is_none_or(Db::is_closed) {
            self.db = None;
            self.db = Some(Db::connect(&self.database).await?);
        }
        let mut done = Done::default();
        self.stream(Stream::Issues, &mut done).await?;
        self.stream(Stream::Comments, &mut done).await?;
        self.backfill(&mut done).await?;
        Ok(done)
    }

    /// Comments of entries that joined the journal after the comments cursor passed them (an
    /// issue labelled late): read per issue, committed with the strike from the list.
    async fn backfill(&mut self, done: &mut Done) -> Result<(), Failure> {
        let db = self
            .db
            .as_mut()
            .expect("connected at the start of the sync");
        for number in db.backfills(&self.repository).await? {
            let mut comments = Vec::new();
            let mut url = Some(self.github.issue_comments_url(number));
            while let Some(u) = url.take() {
                if let Fetched::Page { items, next, .. } = self.github.comments(&u, None).await? {
                    comments.extend(items);
                    url = next;
                }
            }
            let db = self
                .db
                .as_mut()
                .expect("connected at the start of the sync");
            done.comments += db
                .commit_backfill(&self.repository, number, &comments)
                .await?;
        }
        Ok(())
    }

    /// Read `stream` from its cursor to the end, committing page by page.
    async fn stream(&mut self, stream: Stream, done: &mut Done) -> Result<(), Failure> {
        let db = self
            .db
            .as_mut()
            .expect("connected at the start of the sync");
        let mut cursor = db.cursor(&self.repository, &self.label, stream).await?;
        let mut link: Option<String> = None;
        loop {
            let (url, from_cursor) = match link.take() {
                Some(next) => (next, false),
                None => (
                    self.github
                        .list_url(stream, &self.label, cursor.since.as_deref()),
                    true,
                ),
            };
            let etag = cursor
                .etag
                .as_deref()
                .filter(|_| from_cursor && cursor.etag_since == cursor.since);
            let db = self
                .db
                .as_mut()
                .expect("connected at the start of the sync");
            let (next, advanced) = match stream {
                Stream::Issues => match self.github.issues(&url, etag).await? {
                    Fetched::NotModified => {
                        done.unchanged += 1;
                        return Ok(());
                    }
                    Fetched::Page {
                        items,
                        next,
                        etag,
                        skipped,
                    } => {
                        done.pull_requests += skipped;
                        let after = advance(&cursor, &items, from_cursor, etag);
                        let advanced = after.since != cursor.since;
                        done.entries += db
                            .commit_issues(&self.repository, &self.label, &items, &after)
                            .await?;
                        cursor = after;
                        (next, advanced)
                    }
                },
                Stream::Comments => match self.github.comments(&url, etag).await? {
                    Fetched::NotModified => {
                        done.unchanged += 1;
                        return Ok(());
                    }
                    Fetched::Page {
                        items, next, etag, ..
                    } => {
                        let after = advance(&cursor, &items, from_cursor, etag);
                        let advanced = after.since != cursor.since;
                        done.comments += db
                            .commit_comments(&self.repository, &self.label, &items, &after)
                            .await?;
                        cursor = after;
                        (next, advanced)
                    }
                },
            };
            match next {
                None => return Ok(()),
                // The usual case: ask again from the new cursor (see the module's comment).
                Some(_) if advanced => {}
                Some(next) => link = Some(next),
            }
        }
    }

    fn points(&self, elapsed: Duration, ok: bool) -> Vec<Point> {
        let result = if ok { "ok" } else { "error" };
        let mut points = vec![
            Point::new(
                "labctl.ingest.entries.upserted",
                "{entry}",
                "Journal entries written (inserted or updated) since start",
                Kind::Counter,
                self.totals.entries as f64,
            ),
            Point::new(
                "labctl.ingest.comments.upserted",
                "{comment}",
                "Journal comments written (inserted or updated) since start",
                Kind::Counter,
                self.totals.comments as f64,
            ),
            Point::new(
                "labctl.ingest.api.calls",
                "{request}",
                "GitHub API requests sent since start, 304s and refusals included",
                Kind::Counter,
                self.github.calls as f64,
            ),
            Point::new(
                "labctl.ingest.sync.duration",
                "s",
                "Duration of the last sync",
                Kind::Gauge,
                elapsed.as_secs_f64(),
            )
            .with("result", result),
            Point::new(
                "labctl.ingest.syncs",
                "{sync}",
                "Syncs since start, by result",
                Kind::Counter,
                self.totals.syncs_ok as f64,
            )
            .with("result", "ok"),
            Point::new(
                "labctl.ingest.syncs",
                "{sync}",
                "Syncs since start, by result",
                Kind::Counter,
                self.totals.syncs_failed as f64,
            )
            .with("result", "error"),
        ];
        if let Some(r) = self.github.remaining {
            points.push(Point::new(
                "labctl.ingest.ratelimit.remaining",
                "{request}",
                "GitHub's X-RateLimit-Remaining after the last request",
                Kind::Gauge,
                r as f64,
            ));
        }
        points
    }
}

/// The cursor after committing `items`: the newest `updated_at` seen, and the page's ETag when
/// the page was the first one asked for at the old cursor.
fn advance<T: Updated>(
    cursor: &Cursor,
    items: &[T],
    from_cursor: bool,
    etag: Option<String>,
) -> Cursor {
    let time = |s: &str| humantime::parse_rfc3339(s).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut since = cursor.since.clone();
    for item in items {
        let newer = since
            .as_deref()
            .is_none_or(|s| time(item.updated_at()) > time(s));
        if newer {
            since = Some(item.updated_at().to_string());
        }
    }
    let (etag, etag_since) = if from_cursor {
        (etag, cursor.since.clone())
    } else {
        (cursor.etag.clone(), cursor.etag_since.clone())
    };
    Cursor {
        since,
        etag,
        etag_since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_what_a_sync_did() {
        let args = IngestArgs {
            repository: "o/n".into(),
            label: "journal".into(),
            interval: Duration::from_secs(60),
            database_url: "postgres://u@127.0.0.1:5432/db".into(),
            github_api: "http://127.0.0.1:1".into(),
            once: true,
        };
        let mut ingest = Ingest::new(&args).unwrap();
        ingest.totals.entries = 7;
        ingest.github.remaining = Some(4999);
        let points = ingest.points(Duration::from_millis(1500), true);
        let find = |name: &str| points.iter().find(|p| p.name == name).unwrap();
        assert_eq!(find("labctl.ingest.entries.upserted").value, 7.0);
        assert_eq!(find("labctl.ingest.entries.upserted").kind, Kind::Counter);
        assert_eq!(find("labctl.ingest.ratelimit.remaining").value, 4999.0);
        assert_eq!(find("labctl.ingest.ratelimit.remaining").kind, Kind::Gauge);
        let duration = find("labctl.ingest.sync.duration");
        assert_eq!((duration.unit, duration.value), ("s", 1.5));
        assert_eq!(duration.attributes, vec![("result", "ok".to_string())]);
        assert!(points.iter().any(|p| p.name == "labctl.ingest.api.calls"));
    }

    #[test]
    fn bad_settings_are_named() {
        let mut args = IngestArgs {
            repository: "o/n".into(),
            label: "journal".into(),
            interval: Duration::from_secs(60),
            database_url: "not a url".into(),
            github_api: "https://api.github.com".into(),
            once: false,
        };
        let e = Ingest::new(&args).err().unwrap().to_string();
        assert!(e.contains("`--database-url`"), "{e}");
        args.database_url = "postgres://u@h/db".into();
        args.github_api = "ftp://x".into();
        let e = Ingest::new(&args).err().unwrap().to_string();
        assert!(e.contains("`--github-api` `ftp://x`"), "{e}");
    }
}
