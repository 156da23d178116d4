-- The undo window ([daemon] purge_grace): a purge moves the record here, out
-- of every read of records, its sealed values and key slot kept until
-- destroy_at; record.restore moves it back where it was, the scheduler
-- destroys the others at destroy_at (row deleted, key zeroed). One row per
-- key; the columns are the records table's, plus where it was and when.
CREATE TABLE retired (
  key          TEXT PRIMARY KEY,
  location     TEXT NOT NULL CHECK (location IN ('active', 'archive')),
  category     TEXT NOT NULL,
  state        TEXT NOT NULL,
  dates        TEXT NOT NULL,
  next_phase   INTEGER NOT NULL,
  due          INTEGER,
  done         TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  slot         INTEGER,
  subject_ref  TEXT,
  sealed       BLOB,
  purged_at    INTEGER NOT NULL,
  destroy_at   INTEGER NOT NULL
) WITHOUT ROWID;
-- What is due for destruction is a range of this index, never a scan.
CREATE INDEX retired_destroy ON retired (destroy_at, key);
