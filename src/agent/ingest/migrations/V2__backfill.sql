-- Journal entries that appeared after the comments cursor had passed their older comments (an
-- issue labelled late): their comments are fetched per issue, then the row is removed, in one
-- transaction.
CREATE TABLE ingest_backfill (
    repository  text   NOT NULL,
    number      bigint NOT NULL,
    PRIMARY KEY (repository, number)
);
