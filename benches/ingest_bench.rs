//! `labctl agent ingest --once` pulling 10,000 labelled issues (and their comments) from the
//! project's GitHub stand-in into a real PostgreSQL (both as the tests start them): wall time,
//! issues/s and the API calls and rate limit used, for a first sync into an empty database, the
//! sync after it, and a sync of an unchanged repository (304s). Run by `benches/ingest.sh`, which
//! builds the release binary first.
//!
//! Environment: `LABCTL_BIN` (the labctl binary), `ISSUES` (default 10000), `RUNS` (first-sync
//! repetitions, each into a fresh database; default 3), `LATENCY_MS` (delay per GitHub answer,
//! default 0).

// The tests' support module, for two of its parts: the GitHub stand-in and PostgreSQL as the
// tests start them. The rest of it is unused here.
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::github::{GitHubStandIn, Repo, comment, issue};
use support::postgres;

const REPO: &str = "bench/journal";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Row {
    what: String,
    wall: Duration,
    entries: u64,
    calls: u64,
    not_modified: u64,
    used: u64,
    /// labctl's own CPU time (user + system): unlike the wall time, not stretched by a busy machine.
    cpu: Duration,
}

/// CPU time (user + system) of the children waited for so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() {
    let labctl = std::env::var("LABCTL_BIN").expect("LABCTL_BIN: the labctl binary to measure");
    let n = env("ISSUES", 10_000);
    let runs = env("RUNS", 3).max(1);
    let mut repo = Repo {
        delay: Duration::from_millis(env("LATENCY_MS", 0)),
        ..Repo::default()
    };
    for i in 1..=n {
        let body = format!(
            "Day {i}. Worked on the homelab: rebuilt the ingest, read about PostgreSQL full-text \
             search, walked the dog. Ideas for tomorrow: benchmark number {i}."
        );
        repo.issues.push(issue(
            REPO,
            i,
            &format!("Journal {i}"),
            Some(&body),
            &["journal"],
            i,
            i % 3 == 0,
            false,
        ));
    }
    for i in 1..=n / 5 {
        repo.comments.push(comment(
            REPO,
            100_000 + i,
            i * 5,
            &format!("note on {}", i * 5),
            n + i,
        ));
    }
    let gh = GitHubStandIn::start(repo);
    let pg = postgres::server();

    let sync = |db: &str| -> (Duration, Duration, String) {
        let cpu = children_cpu();
        let start = Instant::now();
        let out = Command::new(&labctl)
            .args([
                "agent",
                "ingest",
                "--repository",
                REPO,
                "--label",
                "journal",
            ])
            .args([
                "--interval",
                "1h",
                "--database-url",
                db,
                "--github-api",
                &gh.url,
            ])
            .arg("--once")
            .env("LABCTL_LOG", "info")
            .env_remove("GITHUB_TOKEN")
            .output()
            .unwrap();
        let wall = start.elapsed();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "ingest failed:\n{log}");
        (wall, children_cpu() - cpu, log)
    };
    let counts = || {
        let r = gh.repo();
        (r.calls, r.not_modified, r.used)
    };
    let entries = |db: &str| -> u64 {
        pg.psql(db, "SELECT count(*) FROM journal_entries")
            .trim()
            .parse()
            .unwrap()
    };

    let mut rows = Vec::new();
    let mut last_db = String::new();
    for run in 1..=runs {
        let name = format!("ingest_bench_{run}");
        let db = pg.database(&name);
        let before = counts();
        let (wall, cpu, _) = sync(&db);
        let after = counts();
        rows.push(Row {
            what: format!("first sync, run {run}"),
            wall,
            entries: entries(&name),
            calls: after.0 - before.0,
            not_modified: after.1 - before.1,
            used: after.2 - before.2,
            cpu,
        });
        last_db = name;
    }
    let db = pg.url(&last_db);
    for what in ["next sync (from the final cursor)", "unchanged repository"] {
        let before = counts();
        let (wall, cpu, _) = sync(&db);
        let after = counts();
        rows.push(Row {
            what: what.into(),
            wall,
            entries: entries(&last_db),
            calls: after.0 - before.0,
            not_modified: after.1 - before.1,
            used: after.2 - before.2,
            cpu,
        });
    }

    println!(
        "ingest: {n} labelled issues + {} comments from the GitHub stand-in (per_page 100, {} ms per answer) into PostgreSQL 127.0.0.1:{}",
        n / 5,
        env("LATENCY_MS", 0),
        pg.port
    );
    println!();
    println!(
        "| {:<34} | {:>9} | {:>13} | {:>10} | {:>9} | {:>9} | {:>5} | {:>15} |",
        "sync",
        "wall ms",
        "labctl CPU ms",
        "issues/s",
        "entries",
        "API calls",
        "304s",
        "rate limit used"
    );
    println!(
        "|{:-<36}|{:->11}|{:->15}|{:->12}|{:->11}|{:->11}|{:->7}|{:->17}|",
        "", "", "", "", "", "", "", ""
    );
    for r in &rows {
        let per_s = if r.what.starts_with("first") {
            format!("{:.0}", r.entries as f64 / r.wall.as_secs_f64())
        } else {
            "-".into()
        };
        println!(
            "| {:<34} | {:>9} | {:>13} | {:>10} | {:>9} | {:>9} | {:>5} | {:>15} |",
            r.what,
            r.wall.as_millis(),
            r.cpu.as_millis(),
            per_s,
            r.entries,
            r.calls,
            r.not_modified,
            r.used
        );
    }
    let mut firsts: Vec<f64> = rows
        .iter()
        .filter(|r| r.what.starts_with("first"))
        .map(|r| r.entries as f64 / r.wall.as_secs_f64())
        .collect();
    firsts.sort_by(f64::total_cmp);
    let mut per_cpu: Vec<f64> = rows
        .iter()
        .filter(|r| r.what.starts_with("first"))
        .map(|r| r.entries as f64 / r.cpu.as_secs_f64())
        .collect();
    per_cpu.sort_by(f64::total_cmp);
    println!();
    println!(
        "labctl CPU ms: the agent's user + system time; the rest of the wall time is PostgreSQL, the GitHub stand-in and waiting for a core (load {}).",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .next()
            .unwrap_or("?")
    );
    println!(
        "median first sync: {:.0} issues/s, {:.0} issues per labctl CPU second; pages needed at 100 per page: {} issues + {} comments = {} (the cursor re-reads one item per page)",
        firsts[firsts.len() / 2],
        per_cpu[per_cpu.len() / 2],
        n.div_ceil(100),
        (n / 5).div_ceil(100),
        n.div_ceil(100) + (n / 5).div_ceil(100)
    );
}
