//! `labctl agent ingest`, the real binary, against a real PostgreSQL (support/postgres.rs,
//! one server for this binary, a database per test) and the project's GitHub stand-in
//! (support/github.rs), which speaks GitHub's list, `Link`, `ETag`/304 and rate-limit
//! formats.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::github::{self, Fault, GitHubStandIn, Repo, comment, issue};
use crate::support::postgres::server;
use crate::support::{Labctl, Output, free_port, otlp, signal, wait_for};

const REPO: &str = "octo/journal";
const LABEL: &str = "journal";

/// `n` numbered issues: most labelled `journal`, every 7th labelled `other` only, every 10th a
/// pull request (labelled too, to be skipped), every 5th closed. Updates are one second apart,
/// with every 4th sharing its predecessor's second (ties across page edges). Issues 1..=20 (and
/// the unlabelled #7) have two comments each.
fn repository(n: u64) -> Repo {
    let mut repo = Repo::default();
    let mut t = 10;
    for i in 1..=n {
        if i % 4 != 0 {
            t += 1;
        }
        let labels: &[&str] = if i % 7 == 0 {
            &["other"]
        } else {
            &[LABEL, "idea"]
        };
        let body = format!("Entry {i}: notes about the day. word{i}");
        let body = (i % 13 != 0).then_some(body.as_str());
        repo.issues.push(issue(
            REPO,
            i,
            &format!("Journal entry {i}"),
            body,
            labels,
            t,
            i % 5 == 0,
            i % 10 == 0,
        ));
    }
    for i in 1..=n.min(20) {
        repo.issues[i as usize - 1]["comments"] = 2.into();
        for k in 0..2 {
            let id = 9000 + i * 2 + k;
            repo.comments
                .push(comment(REPO, id, i, &format!("comment {k} on {i}"), 30 + i));
        }
    }
    repo
}

/// The issue numbers the agent should ingest from [`repository`].
fn wanted(n: u64) -> Vec<u64> {
    (1..=n).filter(|i| i % 7 != 0 && i % 10 != 0).collect()
}

/// `labctl agent ingest` of [`REPO`]'s [`LABEL`] issues from `gh` into `db`, every `interval`.
fn ingest(gh: &GitHubStandIn, db: &str, interval: &str) -> Labctl {
    Labctl::new().args([
        "agent",
        "ingest",
        "--repository",
        REPO,
        "--label",
        LABEL,
        "--interval",
        interval,
        "--database-url",
        db,
        "--github-api",
        &gh.url,
    ])
}

/// One `--once` run.
fn once(gh: &GitHubStandIn, db: &str) -> Output {
    once_with(gh, db, None)
}

fn once_with(gh: &GitHubStandIn, db: &str, token: Option<&str>) -> Output {
    let c = ingest(gh, db, "1h");
    let c = match token {
        Some(t) => c.env("GITHUB_TOKEN", t),
        None => c.env_remove("GITHUB_TOKEN"),
    };
    c.arg("--once").env("LABCTL_LOG", "info").run()
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(o.code == 0, "ingest failed: {}\n{}", o.code, o.stderr);
}

/// A long-running agent whose log goes to a file.
struct Agent {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(gh: &GitHubStandIn, db: &str, interval: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let child = ingest(gh, db, interval)
            .env_remove("GITHUB_TOKEN")
            .env("LABCTL_LOG", "info")
            .log_to(&log)
            .spawn();
        Agent {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }

    /// Wait until `cond` holds on the log.
    fn wait_log(&self, what: &str, cond: impl Fn(&str) -> bool) {
        wait_for(format_args!("{what}:\n{self}"), WAIT, || cond(&self.log()));
    }

    /// SIGTERM, then the exit status (within `STOP_DEADLINE`-ish bounds).
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(25));
        (status, self.log())
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("agent did not exit within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Its log, as it is when shown.
impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.log())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a test waits for the agent.
const WAIT: Duration = Duration::from_secs(60);

/// Rows in `table`; 0 while the agent has not created it yet.
fn count(db: &str, table: &str) -> usize {
    let exists = server().psql(db, &format!("SELECT to_regclass('{table}') IS NOT NULL"));
    if exists.trim() != "t" {
        return 0;
    }
    server()
        .psql(db, &format!("SELECT count(*) FROM {table}"))
        .trim()
        .parse()
        .unwrap()
}

fn numbers(db: &str) -> Vec<u64> {
    server()
        .psql(db, "SELECT number FROM journal_entries ORDER BY number")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Everything the agent wrote, as text, for comparing two databases.
fn dump(db: &str) -> String {
    let s = server();
    [
        "SELECT repository, number, title, body, labels, state, author, url, created_at, \
         updated_at, closed_at, search FROM journal_entries ORDER BY number",
        "SELECT repository, id, number, body, author, url, created_at, updated_at \
         FROM journal_comments ORDER BY id",
        "SELECT repository, label, stream, since FROM ingest_cursors ORDER BY stream",
    ]
    .iter()
    .map(|q| s.psql(db, q))
    .collect::<Vec<_>>()
    .join("\n--\n")
}

fn stats(gh: &GitHubStandIn) -> (u64, u64, u64) {
    let r = gh.repo();
    (r.calls, r.not_modified, r.used)
}

#[test]
fn labelled_issues_and_their_comments_become_searchable_entries() {
    let pg = server();
    let db = pg.database("ingest_basic");
    let gh = GitHubStandIn::start(repository(250));
    let out = once_with(&gh, &db, Some("ghp_test"));
    assert_ok(&out);

    assert_eq!(numbers("ingest_basic"), wanted(250));
    assert!(
        gh.repo().auth.iter().all(|a| a == "Bearer ghp_test"),
        "{:?}",
        gh.repo().auth
    );
    assert!(
        !out.stderr.contains("ghp_test"),
        "the token is never logged"
    );
    // Pull requests (every 10th) came back from GitHub and were skipped.
    assert!(
        out.stderr.contains("pull requests skipped"),
        "{}",
        out.stderr
    );
    // Paged: 250 items need at least three requests of 100 on the issues list.
    let issue_calls = gh
        .repo()
        .log
        .iter()
        .filter(|l| l.starts_with(&format!("/repos/{REPO}/issues?")))
        .count();
    assert!(issue_calls >= 3, "{:?}", gh.repo().log);
    assert!(
        gh.repo().log.iter().all(|l| !l.contains("/issues?")
            || (l.contains("direction=asc")
                && l.contains("sort=updated")
                && l.contains("per_page=100"))),
        "{:?}",
        gh.repo().log
    );

    // Fields as GitHub gave them; a null body is empty; closed issues keep their close time.
    let row = pg.psql(
        "ingest_basic",
        "SELECT title, body, labels, state, author, url, created_at, updated_at, closed_at \
         FROM journal_entries WHERE number = 15",
    );
    assert_eq!(
        row.trim(),
        format!(
            "Journal entry 15|Entry 15: notes about the day. word15|{{journal,idea}}|closed|octocat|https://github.com/{REPO}/issues/15|2026-01-01 00:00:00+00|2026-01-01 00:00:22+00|2026-01-01 00:00:22+00"
        )
    );
    assert_eq!(
        pg.psql(
            "ingest_basic",
            "SELECT body FROM journal_entries WHERE number = 13"
        )
        .trim(),
        ""
    );

    // Comments only of journal entries: 1..=20 minus #7 (unlabelled), #10 and #20 (PRs), #14
    // (unlabelled).
    let commented: Vec<u64> = (1..=20).filter(|i| wanted(20).contains(i)).collect();
    assert_eq!(
        count("ingest_basic", "journal_comments"),
        commented.len() * 2
    );
    assert_eq!(
        pg.psql(
            "ingest_basic",
            "SELECT number, body, author FROM journal_comments WHERE id = 9006"
        )
        .trim(),
        "3|comment 0 on 3|hubot"
    );

    // Full-text search over the generated tsvector, through its GIN index.
    assert_eq!(
        pg.psql(
            "ingest_basic",
            "SELECT number FROM journal_entries \
             WHERE search @@ websearch_to_tsquery('english', 'word123 notes')"
        )
        .trim(),
        "123"
    );
    assert!(
        pg.psql(
            "ingest_basic",
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'journal_entries_search'"
        )
        .contains("USING gin (search)")
    );
}

#[test]
fn an_unchanged_repository_costs_no_rate_limit() {
    let pg = server();
    let db = pg.database("ingest_etag");
    let gh = GitHubStandIn::start(repository(150));
    assert_ok(&once(&gh, &db));
    // The second sync asks from the final cursor and keeps that answer's ETag.
    assert_ok(&once(&gh, &db));
    let (calls, not_modified, used) = stats(&gh);
    let out = once(&gh, &db);
    assert_ok(&out);
    let (calls2, not_modified2, used2) = stats(&gh);
    assert_eq!(
        calls2 - calls,
        2,
        "one request per list: {:?}",
        gh.repo().log
    );
    assert_eq!(not_modified2 - not_modified, 2, "both lists answered 304");
    assert_eq!(used2, used, "304s cost no rate limit");
    assert!(
        out.stderr.contains("2 lists unchanged (304)"),
        "{}",
        out.stderr
    );

    // A change shows up again.
    gh.repo().issues.push(issue(
        REPO,
        151,
        "Late entry",
        Some("fresh"),
        &[LABEL],
        5000,
        false,
        false,
    ));
    assert_ok(&once(&gh, &db));
    assert!(numbers("ingest_etag").contains(&151));
}

#[test]
fn an_issue_labelled_after_its_comments_gets_them_too() {
    let pg = server();
    let db = pg.database("ingest_late");
    let gh = GitHubStandIn::start(repository(30));
    assert_ok(&once(&gh, &db));
    let has_7 = "SELECT count(*) FROM journal_comments WHERE number = 7";
    assert_eq!(pg.psql("ingest_late", has_7).trim(), "0");
    // #7 gets the label now; its two comments are older than the comments cursor.
    {
        let mut r = gh.repo();
        let mut late = issue(REPO, 7, "Labelled late", None, &[LABEL], 800, false, false);
        late["comments"] = 2.into();
        r.issues[6] = late;
    }
    assert_ok(&once(&gh, &db));
    assert_eq!(pg.psql("ingest_late", has_7).trim(), "2");
    assert!(
        gh.repo()
            .log
            .iter()
            .any(|l| l == &format!("/repos/{REPO}/issues/7/comments"))
    );
    // Done once: the next sync does not fetch them again.
    let before = gh.repo().log.len();
    assert_ok(&once(&gh, &db));
    assert!(
        !gh.repo().log[before..]
            .iter()
            .any(|l| l.contains("/issues/7/"))
    );
    assert_eq!(count("ingest_late", "ingest_backfill"), 0);
}

#[test]
fn an_older_copy_never_replaces_a_newer_row() {
    let pg = server();
    let db = pg.database("ingest_older");
    let gh = GitHubStandIn::start(repository(30));
    assert_ok(&once(&gh, &db));
    // A newer version of #1 is already in the table (as if written by a later sync), and the
    // cursor is lost: the next sync reads everything again.
    pg.psql(
        "ingest_older",
        "UPDATE journal_entries SET title = 'newer', updated_at = updated_at + interval '1 day' \
         WHERE number = 1; DELETE FROM ingest_cursors",
    );
    // Meanwhile #2 really changed on GitHub.
    {
        let mut r = gh.repo();
        r.issues[1] = issue(
            REPO,
            2,
            "Renamed",
            Some("changed"),
            &[LABEL],
            900,
            false,
            false,
        );
    }
    assert_ok(&once(&gh, &db));
    let titles = pg.psql(
        "ingest_older",
        "SELECT number || ':' || title FROM journal_entries WHERE number IN (1, 2) ORDER BY number",
    );
    assert_eq!(titles.trim(), "1:newer\n2:Renamed");
}

#[test]
fn rate_limits_are_waited_out_not_failed() {
    let pg = server();
    let db = pg.database("ingest_limits");
    let gh = GitHubStandIn::start(repository(150));
    {
        let mut r = gh.repo();
        r.fault_in(1, Fault::SecondaryRateLimit { retry_after: 1 });
        r.fault_in(2, Fault::PrimaryRateLimit { reset_in: 2 });
        r.fault_in(4, Fault::TooManyRequests { retry_after: 1 });
    }
    let out = once(&gh, &db);
    assert_ok(&out);
    let log = out.stderr.clone();
    assert!(log.contains("403 Forbidden (Retry-After: 1)"), "{log}");
    assert!(
        log.contains("403 Forbidden (rate limit spent until X-RateLimit-Reset"),
        "{log}"
    );
    assert!(
        log.contains("429 Too Many Requests (Retry-After: 1)"),
        "{log}"
    );
    assert_eq!(numbers("ingest_limits"), wanted(150));
}

/// A bad answer on the second page: `--once` fails naming it and keeps exactly the first page.
fn bad_page(db_name: &str, fault: Fault, expect: &[&str]) {
    let pg = server();
    let db = pg.database(db_name);
    let gh = GitHubStandIn::start(repository(250));
    gh.repo().fault_in(2, fault);
    let out = once(&gh, &db);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let log = out.stderr.clone();
    for e in expect {
        assert!(log.contains(e), "expected {e:?} in:\n{log}");
    }
    // Exactly the first page's entries, and the cursor right after them.
    let first_page: Vec<u64> = {
        let r = gh.repo();
        let mut labelled: Vec<&serde_json::Value> = r
            .issues
            .iter()
            .filter(|v| {
                v["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l["name"] == LABEL)
            })
            .collect();
        labelled.sort_by_key(|v| {
            (
                v["updated_at"].as_str().unwrap().to_string(),
                v["number"].as_u64(),
            )
        });
        let page = &labelled[..100];
        let mut n: Vec<u64> = page
            .iter()
            .filter(|v| v.get("pull_request").is_none())
            .map(|v| v["number"].as_u64().unwrap())
            .collect();
        n.sort();
        n
    };
    assert_eq!(numbers(db_name), first_page);
    assert_eq!(count(db_name, "journal_comments"), 0);
    let cursor = pg.psql(
        db_name,
        "SELECT since = (SELECT to_char(max(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM journal_entries) \
         FROM ingest_cursors WHERE stream = 'issues'",
    );
    assert_eq!(cursor.trim(), "t");
}

#[test]
fn a_422_is_named_and_nothing_half_written() {
    bad_page(
        "ingest_422",
        Fault::Unprocessable,
        &[
            "422 Unprocessable Entity: Validation Failed",
            "/repos/octo/journal/issues?",
        ],
    );
}

#[test]
fn a_body_that_is_not_json_is_named_and_nothing_half_written() {
    bad_page(
        "ingest_html",
        Fault::NotJson,
        &["the body is not JSON", "Unicorn!"],
    );
}

#[test]
fn a_missing_field_is_named_and_nothing_half_written() {
    bad_page(
        "ingest_missing",
        Fault::MissingTitle,
        &["unexpected JSON at `[0]`", "missing field `title`"],
    );
}

#[test]
fn a_failed_sync_is_retried_with_backoff_and_sighup_syncs_again() {
    let pg = server();
    let db = pg.database("ingest_retry");
    let gh = GitHubStandIn::start(repository(120));
    gh.repo().fault_in(1, Fault::Unprocessable);
    let agent = Agent::start(&gh, &db, "1h");
    agent.wait_log("the retry", |l| l.contains("retrying in 1 s"));
    agent.wait_log("a completed sync", |l| l.contains("sync done"));
    assert_eq!(numbers("ingest_retry"), wanted(120));

    // SIGHUP (what the proxy sends on an `issues` webhook) syncs at once, not after the hour.
    gh.repo().issues.push(issue(
        REPO,
        500,
        "Webhook entry",
        Some("via SIGHUP"),
        &[LABEL],
        7000,
        false,
        false,
    ));
    agent.signal("HUP");
    wait_for(format_args!("the SIGHUP sync:\n{agent}"), WAIT, || {
        numbers("ingest_retry").contains(&500)
    });
    let (status, log) = agent.stop();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains("trigger=\"SIGHUP\"") || log.contains("trigger=SIGHUP"),
        "{log}"
    );
}

/// A TCP relay to PostgreSQL that a test can start late: a database that is down, then up.
fn relay(listen: u16, to: u16) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", listen)).unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = std::net::TcpStream::connect(("127.0.0.1", to)).unwrap();
            for (mut a, mut b) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
}

#[test]
fn a_dead_database_at_start_is_waited_for_and_sigterm_mid_sync_exits_cleanly() {
    let pg = server();
    pg.database("ingest_dead");
    let port = free_port();
    let db = format!("postgres://labctl@127.0.0.1:{port}/ingest_dead");
    let mut repo = repository(1000);
    repo.delay = Duration::from_millis(150);
    let gh = GitHubStandIn::start(repo);
    let agent = Agent::start(&gh, &db, "1h");
    agent.wait_log("two failed connects", |l| {
        l.matches("cannot connect").count() >= 2
    });
    assert!(
        agent
            .log()
            .contains(&format!("127.0.0.1:{port}/ingest_dead"))
    );
    assert!(!agent.log().contains("sync done"));

    relay(port, pg.port);
    wait_for(format_args!("the first pages:\n{agent}"), WAIT, || {
        count("ingest_dead", "journal_entries") > 0
    });
    let (status, log) = agent.stop();
    assert!(
        status.success(),
        "SIGTERM mid-sync must exit 0: {status}\n{log}"
    );
    assert!(log.contains("sync stopped by shutdown"), "{log}");
    let written = count("ingest_dead", "journal_entries");
    assert!(
        written < wanted(1000).len(),
        "the stop landed after the sync: {log}"
    );
    // Whole pages only: every entry up to the cursor is there, nothing after it.
    let gap = pg.psql(
        "ingest_dead",
        "SELECT count(*) FROM journal_entries e, ingest_cursors c \
         WHERE c.stream = 'issues' AND e.updated_at > c.since::timestamptz",
    );
    assert_eq!(gap.trim(), "0");
    let expected_prefix = pg.psql("ingest_dead", "SELECT max(number) FROM journal_entries");
    let max: u64 = expected_prefix.trim().parse().unwrap();
    let prefix: Vec<u64> = wanted(1000).into_iter().filter(|n| *n <= max).collect();
    assert_eq!(numbers("ingest_dead"), prefix);
}

#[test]
fn kill_9_mid_sync_then_restart_ends_with_the_rows_of_an_uninterrupted_sync() {
    let pg = server();
    let reference = pg.database("ingest_reference");
    let crashed = pg.database("ingest_crashed");
    let gh = GitHubStandIn::start(repository(1200));
    assert_ok(&once(&gh, &reference));

    gh.repo().delay = Duration::from_millis(150);
    let agent = Agent::start(&gh, &crashed, "1h");
    wait_for(format_args!("a few pages:\n{agent}"), WAIT, || {
        count("ingest_crashed", "journal_entries") >= 250
    });
    agent.signal("KILL");
    let mut agent = agent;
    let status = agent.wait_exit(Duration::from_secs(10));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let partial = count("ingest_crashed", "journal_entries");
    assert!(
        partial < wanted(1200).len(),
        "the kill landed after the sync"
    );

    gh.repo().delay = Duration::ZERO;
    assert_ok(&once(&gh, &crashed));
    assert_eq!(dump("ingest_crashed"), dump("ingest_reference"));
}

#[test]
fn once_fails_naming_an_unreachable_database() {
    let gh = GitHubStandIn::start(repository(5));
    let port = free_port();
    let out = once(&gh, &format!("postgres://labctl@127.0.0.1:{port}/journal"));
    assert_eq!(out.code, 1);
    let log = out.stderr.clone();
    assert!(
        log.contains(&format!(
            "PostgreSQL `postgres://127.0.0.1:{port}/journal`: cannot connect"
        )),
        "{log}"
    );
    assert_eq!(
        gh.repo().calls,
        0,
        "no GitHub request before the database is there"
    );
}

#[test]
fn bad_settings_fail_at_start() {
    let gh = GitHubStandIn::start(Repo::default());
    let out = Labctl::new()
        .args(["agent", "ingest", "--repository", "nodash", "--label", "x"])
        .args([
            "--interval",
            "1m",
            "--database-url",
            "postgres://x@127.0.0.1/x",
        ])
        .args(["--github-api", &gh.url, "--once"])
        .run();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("`--repository` `nodash` is not `owner/name`"),
        "{}",
        out.stderr
    );
}

/// What docs/agents.md promises for the ingest's telemetry reaches an OTLP collector (the
/// project's receiver, over gRPC): the metrics with their units, kinds and attributes, with values
/// matching what was written and what the GitHub stand-in served, and one trace for the sync.
#[test]
fn a_sync_reports_its_metrics_and_its_trace_over_otlp() {
    let pg = server();
    let db = pg.database("ingest_otlp");
    let gh = GitHubStandIn::start(repository(250));
    let rx = otlp::Receiver::start();
    let out = ingest(&gh, &db, "1h")
        .args(["--once", "--otlp-endpoint", &rx.grpc_endpoint()])
        .env_remove("GITHUB_TOKEN")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("LABCTL_LOG", "info")
        .run();
    assert_ok(&out);
    // `--once` exits after the sync; the exporter's last flush on the way out delivered them.
    let metrics = rx.wait_for_metrics(Duration::from_secs(10), |m| {
        m.iter().any(|m| m.name == "labctl.ingest.syncs")
    });
    let get = |name: &str| {
        metrics
            .iter()
            .rev()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no `{name}` in {metrics:#?}"))
    };
    let only = |name: &str| {
        let m = get(name);
        assert_eq!(m.points.len(), 1, "{m:#?}");
        m.points[0].1
    };
    let counter = |name: &str, unit: &str| {
        let m = get(name);
        assert_eq!(
            (m.kind, m.monotonic, m.unit.as_str()),
            ("sum", true, unit),
            "{name}"
        );
    };
    counter("labctl.ingest.entries.upserted", "{entry}");
    counter("labctl.ingest.comments.upserted", "{comment}");
    counter("labctl.ingest.api.calls", "{request}");
    counter("labctl.ingest.syncs", "{sync}");
    // Rows written, as the log's summary says: every row once, and again the few the cursor
    // re-reads at a page's edge (a tie in `updated_at`), at most one per list request after the
    // first.
    let (calls, _, used) = stats(&gh);
    let written = |what: &str| -> usize {
        let log = out.stderr.clone();
        let line = log
            .lines()
            .find(|l| l.contains("sync done"))
            .unwrap_or_else(|| panic!("no summary in {log}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == what).unwrap();
        words[at - 1].parse().unwrap()
    };
    for (metric, table, what) in [
        (
            "labctl.ingest.entries.upserted",
            "journal_entries",
            "entries",
        ),
        (
            "labctl.ingest.comments.upserted",
            "journal_comments",
            "comments",
        ),
    ] {
        let value = only(metric) as usize;
        let rows = count("ingest_otlp", table);
        assert_eq!(value, written(what), "{metric}");
        assert!(
            rows <= value && value < rows + calls as usize,
            "{metric}: {value} for {rows} rows"
        );
    }
    assert_eq!(only("labctl.ingest.api.calls") as u64, calls);
    let remaining = get("labctl.ingest.ratelimit.remaining");
    assert_eq!(
        (remaining.kind, remaining.unit.as_str()),
        ("gauge", "{request}")
    );
    assert_eq!(
        only("labctl.ingest.ratelimit.remaining") as u64,
        github::LIMIT - used
    );
    let syncs: BTreeMap<String, f64> = get("labctl.ingest.syncs")
        .points
        .iter()
        .map(|(a, v)| (a["result"].clone(), *v))
        .collect();
    assert_eq!(
        syncs,
        BTreeMap::from([("error".to_string(), 0.0), ("ok".to_string(), 1.0)])
    );
    let duration = get("labctl.ingest.sync.duration");
    assert_eq!((duration.kind, duration.unit.as_str()), ("gauge", "s"));
    assert_eq!(duration.points.len(), 1);
    let (attrs, secs) = &duration.points[0];
    assert_eq!(attrs.get("result").map(String::as_str), Some("ok"));
    assert!(*secs > 0.0 && *secs < 60.0, "{secs}");
    assert_eq!(duration.resource["service.name"], "labctl-ingest");
    assert_eq!(duration.via, "grpc");

    // One trace per sync: a root `ingest sync` span naming the repository, label and trigger.
    let spans = rx.wait_for_spans(Duration::from_secs(10), |s| {
        s.iter().any(|s| s.name == "ingest sync")
    });
    let syncs: Vec<_> = spans.iter().filter(|s| s.name == "ingest sync").collect();
    assert_eq!(syncs.len(), 1, "{spans:#?}");
    let sync = syncs[0];
    assert_eq!(sync.parent_span_id, "", "a root span");
    assert_eq!(
        (
            sync.attr("repository"),
            sync.attr("label"),
            sync.attr("trigger")
        ),
        (Some(REPO), Some(LABEL), Some("once"))
    );
    assert_eq!(sync.resource["service.name"], "labctl-ingest");
}
