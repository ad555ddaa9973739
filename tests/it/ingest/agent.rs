//! The long-running agent: retries with backoff, SIGHUP, a database that comes late, SIGTERM and
//! kill -9 in the middle of a sync.

use super::*;

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
