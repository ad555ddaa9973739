//! What a sync writes: labelled issues and their comments, incrementally, without spending the
//! rate limit on an unchanged repository or replacing a newer row, waiting out rate limits.

use super::*;

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
