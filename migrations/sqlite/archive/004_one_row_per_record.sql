-- archive.db 004: one row per record, as retention.db's 005 (see there).

CREATE TABLE records_v4 (
  id           INTEGER PRIMARY KEY,
  key          TEXT NOT NULL UNIQUE,
  category     TEXT NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('archived', 'anonymised')),
  dates        TEXT NOT NULL,
  next_phase   INTEGER NOT NULL,
  due          INTEGER,
  done         TEXT NOT NULL DEFAULT '[]',
  created_at   INTEGER NOT NULL,
  slot         INTEGER,
  subject_ref  TEXT,
  sealed       BLOB
);

INSERT INTO records_v4 (key, category, state, dates, next_phase, due, done, created_at, slot, subject_ref, sealed)
  SELECT r.key, r.category, r.state, r.dates, r.next_phase, r.due, r.done, r.created_at, d.slot, d.subject_ref, d.sealed
  FROM records r LEFT JOIN record_data d ON d.key = r.key
  ORDER BY r.created_at, r.key;

DROP TABLE records;
DROP TABLE record_data;
ALTER TABLE records_v4 RENAME TO records;

CREATE INDEX records_due ON records (due, key) WHERE due IS NOT NULL;
CREATE INDEX records_undue ON records (key) WHERE due IS NULL;
CREATE INDEX records_category ON records (category);
CREATE INDEX records_subject ON records (substr(subject_ref, 1, 16)) WHERE subject_ref IS NOT NULL;
