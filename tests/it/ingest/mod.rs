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

mod agent;
mod faults;
mod sync;
mod telemetry;

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
