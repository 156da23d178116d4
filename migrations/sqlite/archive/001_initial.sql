-- archive.db 001: records moved out of the active database by an archive
-- phase (intermediate archiving). Same split as retention.db: personal values
-- in record_data, written once; scheduling state in records.

CREATE TABLE records (
  key         TEXT PRIMARY KEY,
  category    TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('archived', 'anonymised')),
  dates       TEXT NOT NULL,
  next_phase  INTEGER NOT NULL,
  due         INTEGER,
  done        TEXT NOT NULL DEFAULT '[]',
  created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX records_due ON records (due) WHERE due IS NOT NULL;
CREATE INDEX records_undue ON records (key) WHERE due IS NULL;

CREATE TABLE record_data (
  key      TEXT PRIMARY KEY,
  subject  TEXT,
  fields   TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX record_data_subject ON record_data (subject) WHERE subject IS NOT NULL;
