//! The journal in PostgreSQL: the only importer of `tokio_postgres`. The schema is the embedded,
//! versioned migrations in `migrations/` (refinery), run on every connect; each page of a sync is
//! written with its cursor in one transaction, so a crash leaves either the whole page or none.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls, Statement};

use super::github::{Comment, Issue, Stream};
use super::{Failure, chain};
use crate::error::Error;

mod embedded {
    refinery::embed_migrations!("src/agent/ingest/migrations");
}

/// Where a stream resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The `updated_at` of the newest item committed (GitHub's `since` for the next request).
    pub since: Option<String>,
    /// The `ETag` of the first page requested at `etag_since`.
    pub etag: Option<String>,
    /// The cursor the ETag was given for; the ETag is only sent again for that same request.
    pub etag_since: Option<String>,
}

/// A connected, migrated database.
pub struct Db {
    client: Client,
    upsert_issue: Statement,
    upsert_comment: Statement,
    save_cursor: Statement,
    want_backfill: Statement,
}

/// Connection settings, checked at start.
pub struct Settings(Config);

/// `url` as connection settings, with the password from `PGPASSWORD` when the URL has none.
///
/// # Errors
/// [`Error::Agent`] when `url` is not a PostgreSQL connection URL or key=value string.
pub fn config(url: &str) -> Result<Settings, Error> {
    let mut config: Config = url.parse().map_err(|e| Error::Agent {
        agent: "ingest",
        message: format!("`--database-url` is not a PostgreSQL URL: {}", chain(&e)),
    })?;
    if config.get_password().is_none()
        && let Some(p) = std::env::var_os("PGPASSWORD")
    {
        config.password(p.as_encoded_bytes());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("labctl-ingest");
    }
    Ok(Settings(config))
}

/// The database as logs name it: hosts, port and database, never the password.
pub fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}:{port}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

impl Db {
    /// Connect and bring the schema up to date.
    ///
    /// # Errors
    /// The database is unreachable, refuses us, or a migration fails; the message names it.
    pub async fn connect(settings: &Settings) -> Result<Self, Failure> {
        let config = &settings.0;
        let name = describe(config);
        let fail = |what: &str, e: &dyn std::error::Error| {
            Failure::Database(format!("PostgreSQL `{name}`: {what}: {}", chain(e)))
        };
        let (mut client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| fail("cannot connect", &e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("PostgreSQL connection lost: {}", chain(&e));
            }
        });
        let report = embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(|e| fail("migrating the schema", &e))?;
        for m in report.applied_migrations() {
            tracing::info!("PostgreSQL `{name}`: applied migration {}", m);
        }
        let upsert_issue = client
            .prepare(
                "INSERT INTO journal_entries AS e
                   (repository, number, title, body, labels, state, author, url,
                    created_at, updated_at, closed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                    $9::text::timestamptz, $10::text::timestamptz, $11::text::timestamptz)
                 ON CONFLICT (repository, number) DO UPDATE SET
                   title = excluded.title, body = excluded.body, labels = excluded.labels,
                   state = excluded.state, author = excluded.author, url = excluded.url,
                   created_at = excluded.created_at, updated_at = excluded.updated_at,
                   closed_at = excluded.closed_at
                 WHERE excluded.updated_at >= e.updated_at
                 RETURNING (xmax = 0) AS inserted",
            )
            .await
            .map_err(|e| fail("preparing the entry upsert", &e))?;
        let upsert_comment = client
            .prepare(
                "INSERT INTO journal_comments AS c
                   (repository, id, number, body, author, url, created_at, updated_at)
                 SELECT $1::text, $2::bigint, $3::bigint, $4::text, $5::text, $6::text,
                    $7::text::timestamptz, $8::text::timestamptz
                 WHERE EXISTS (SELECT 1 FROM journal_entries
                               WHERE repository = $1::text AND number = $3::bigint)
                 ON CONFLICT (repository, id) DO UPDATE SET
                   number = excluded.number, body = excluded.body, author = excluded.author,
                   url = excluded.url, created_at = excluded.created_at,
                   updated_at = excluded.updated_at
                 WHERE excluded.updated_at >= c.updated_at",
            )
            .await
            .map_err(|e| fail("preparing the comment upsert", &e))?;
        let save_cursor = client
            .prepare(
                "INSERT INTO ingest_cursors (repository, label, stream, since, etag, etag_since)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (repository, label, stream) DO UPDATE SET
                   since = excluded.since, etag = excluded.etag, etag_since = excluded.etag_since",
            )
            .await
            .map_err(|e| fail("preparing the cursor update", &e))?;
        // An entry new to the journal whose comments the comments cursor may already have passed.
        let want_backfill = client
            .prepare(
                "INSERT INTO ingest_backfill (repository, number)
                 SELECT $1::text, $2::bigint
                 WHERE EXISTS (SELECT 1 FROM ingest_cursors
                               WHERE repository = $1::text AND label = $3::text
                                 AND stream = 'comments' AND since IS NOT NULL)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(|e| fail("preparing the backfill note", &e))?;
        Ok(Db {
            client,
            upsert_issue,
            upsert_comment,
            save_cursor,
            want_backfill,
        })
    }

    /// Whether the connection is gone (the server stopped or restarted); the agent reconnects.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Where `stream` resumes for `repository` and `label`.
    ///
    /// # Errors
    /// The query fails.
    pub async fn cursor(
        &self,
        repository: &str,
        label: &str,
        stream: Stream,
    ) -> Result<Cursor, Failure> {
        let row = self
            .client
            .query_opt(
                "SELECT since, etag, etag_since FROM ingest_cursors
                 WHERE repository = $1 AND label = $2 AND stream = $3",
                &[&repository, &label, &stream.name()],
            )
            .await
            .map_err(|e| db_failure("reading the cursor", &e))?;
        Ok(row.map_or_else(Cursor::default, |r| Cursor {
            since: r.get(0),
            etag: r.get(1),
            etag_since: r.get(2),
        }))
    }

    /// Write a page of issues and the cursor after it in one transaction; the number of rows
    /// written (an older copy of a row never replaces a newer one).
    ///
    /// # Errors
    /// Any statement fails; nothing of the page is then kept.
    pub async fn commit_issues(
        &mut self,
        repository: &str,
        label: &str,
        issues: &[Issue],
        cursor: &Cursor,
    ) -> Result<u64, Failure> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_failure("starting a transaction", &e))?;
        let (txr, statement) = (&tx, &self.upsert_issue);
        let writes = issues.iter().map(|i| async move {
            txr.query_opt(
                statement,
                &[
                    &repository,
                    &i.number,
                    &i.title,
                    &i.body,
                    &i.labels,
                    &i.state,
                    &i.author,
                    &i.url,
                    &i.created_at,
                    &i.updated_at,
                    &i.closed_at,
                ],
            )
            .await
        });
        // Sent together: tokio-postgres pipelines them, one round trip for the page.
        let rows = futures_util::future::try_join_all(writes)
            .await
            .map_err(|e| db_failure("writing journal entries", &e))?;
        let mut written = 0;
        for (issue, row) in issues.iter().zip(rows) {
            let Some(row) = row else { continue };
            written += 1;
            let inserted: bool = row.get(0);
            if inserted && issue.comments > 0 {
                tx.execute(&self.want_backfill, &[&repository, &issue.number, &label])
                    .await
                    .map_err(|e| db_failure("noting a backfill", &e))?;
            }
        }
        save(
            &tx,
            &self.save_cursor,
            repository,
            label,
            Stream::Issues,
            cursor,
        )
        .await?;
        tx.commit()
            .await
            .map_err(|e| db_failure("committing journal entries", &e))?;
        Ok(written)
    }

    /// The journal entries whose comments are still to be fetched one by one.
    ///
    /// # Errors
    /// The query fails.
    pub async fn backfills(&self, repository: &str) -> Result<Vec<i64>, Failure> {
        let rows = self
            .client
            .query(
                "SELECT number FROM ingest_backfill WHERE repository = $1 ORDER BY number",
                &[&repository],
            )
            .await
            .map_err(|e| db_failure("reading the backfill list", &e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Write all comments of entry `number` and strike it from the backfill list, in one
    /// transaction; the number of rows written.
    ///
    /// # Errors
    /// Any statement fails; nothing is then kept.
    pub async fn commit_backfill(
        &mut self,
        repository: &str,
        number: i64,
        comments: &[Comment],
    ) -> Result<u64, Failure> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_failure("starting a transaction", &e))?;
        let mut written = 0;
        for c in comments {
            written += tx
                .execute(
                    &self.upsert_comment,
                    &[
                        &repository,
                        &c.id,
                        &c.number,
                        &c.body,
                        &c.author,
                        &c.url,
                        &c.created_at,
                        &c.updated_at,
                    ],
                )
                .await
                .map_err(|e| db_failure("writing backfilled comments", &e))?;
        }
        tx.execute(
            "DELETE FROM ingest_backfill WHERE repository = $1 AND number = $2",
            &[&repository, &number],
        )
        .await
        .map_err(|e| db_failure("striking a backfill", &e))?;
        tx.commit()
            .await
            .map_err(|e| db_failure("committing backfilled comments", &e))?;
        Ok(written)
    }

    /// Write a page of comments (those of journal entries only) and the cursor after it in one
    /// transaction; the number of rows written.
    ///
    /// # Errors
    /// Any statement fails; nothing of the page is then kept.
    pub async fn commit_comments(
        &mut self,
        repository: &str,
        label: &str,
        comments: &[Comment],
        cursor: &Cursor,
    ) -> Result<u64, Failure> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_failure("starting a transaction", &e))?;
        let (txr, statement) = (&tx, &self.upsert_comment);
        let writes = comments.iter().map(|c| async move {
            txr.execute(
                statement,
                &[
                    &repository,
                    &c.id,
                    &c.number,
                    &c.body,
                    &c.author,
                    &c.url,
                    &c.created_at,
                    &c.updated_at,
                ],
            )
            .await
        });
        let written: u64 = futures_util::future::try_join_all(writes)
            .await
            .map_err(|e| db_failure("writing journal comments", &e))?
            .into_iter()
            .sum();
        save(
            &tx,
            &self.save_cursor,
            repository,
            label,
            Stream::Comments,
            cursor,
        )
        .await?;
        tx.commit()
            .await
            .map_err(|e| db_failure("committing journal comments", &e))?;
        Ok(written)
    }
}

async fn save(
    tx: &tokio_postgres::Transaction<'_>,
    statement: &Statement,
    repository: &str,
    label: &str,
    stream: Stream,
    cursor: &Cursor,
) -> Result<(), Failure> {
    tx.execute(
        statement,
        &[
            &repository,
            &label,
            &stream.name(),
            &cursor.since,
            &cursor.etag,
            &cursor.etag_since,
        ],
    )
    .await
    .map(|_| ())
    .map_err(|e| db_failure("saving the cursor", &e))
}

fn db_failure(what: &str, e: &tokio_postgres::Error) -> Failure {
    Failure::Database(format!("PostgreSQL: {what}: {}", chain(e)))
}
