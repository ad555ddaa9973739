-- Journal entries: one row per labelled GitHub issue, with full-text search over title and body.
CREATE TABLE journal_entries (
    repository  text        NOT NULL,
    number      bigint      NOT NULL,
    title       text        NOT NULL,
    body        text        NOT NULL DEFAULT '',
    labels      text[]      NOT NULL DEFAULT '{}',
    state       text        NOT NULL,
    author      text,
    url         text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    closed_at   timestamptz,
    search      tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(body, '')), 'B')
    ) STORED,
    PRIMARY KEY (repository, number)
);
CREATE INDEX journal_entries_search ON journal_entries USING gin (search);
CREATE INDEX journal_entries_updated ON journal_entries (repository, updated_at);

-- Comments of journal entries.
CREATE TABLE journal_comments (
    repository  text        NOT NULL,
    id          bigint      NOT NULL,
    number      bigint      NOT NULL,
    body        text        NOT NULL DEFAULT '',
    author      text,
    url         text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    search      tsvector GENERATED ALWAYS AS (to_tsvector('english', coalesce(body, ''))) STORED,
    PRIMARY KEY (repository, id),
    FOREIGN KEY (repository, number) REFERENCES journal_entries (repository, number)
);
CREATE INDEX journal_comments_search ON journal_comments USING gin (search);
CREATE INDEX journal_comments_entry ON journal_comments (repository, number);

-- Where each sync resumes: the last committed `updated_at` per stream (issues, comments) and the
-- ETag GitHub gave for the first page at that cursor. Committed with each page's rows.
CREATE TABLE ingest_cursors (
    repository  text NOT NULL,
    label       text NOT NULL,
    stream      text NOT NULL,
    since       text,
    etag        text,
    etag_since  text,
    PRIMARY KEY (repository, label, stream)
);
