-- archive.db 002: personal values sealed under one-time keys, as in
-- retention.db's migration 004 (which explains why). Key slots are allocated
-- by retention.db, in the same transactions.

ALTER TABLE record_data RENAME TO plaintext_record_data;
DROP INDEX record_data_subject;

CREATE TABLE record_data (
  key          TEXT PRIMARY KEY,
  slot         INTEGER NOT NULL,
  subject_ref  TEXT,
  sealed       BLOB NOT NULL
) WITHOUT ROWID;

CREATE INDEX record_data_subject_ref ON record_data (subject_ref) WHERE subject_ref IS NOT NULL;
