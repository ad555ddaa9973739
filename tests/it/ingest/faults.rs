//! Bad answers and bad settings: named, and nothing half written.

use super::*;

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
