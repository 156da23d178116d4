-- 001: records, their personal data, the audit log, daemon metadata.
--
-- Personal values (subject, fields) live in record_data, whose rows are
-- written once and never updated in place: a replacement deletes the row and
-- inserts a new one. With secure_delete this leaves no stale copy of a value
-- behind in page free space. Scheduling state, which changes often, lives in
-- records and holds no field value or subject.

CREATE TABLE records (
  key         TEXT PRIMARY KEY,
  category    TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('active', 'anonymised')),
  dates       TEXT NOT NULL,            -- JSON object {name: unix seconds}
  next_phase  INTEGER NOT NULL,         -- index of the first phase not yet done
  due         INTEGER,                  -- unix seconds of that phase's at; NULL: waiting, none left, or never
  done        TEXT NOT NULL DEFAULT '[]', -- JSON array: unix seconds each completed phase ran
  created_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- "What is due" is a range scan of this index, never a table scan.
CREATE INDEX records_due ON records (due) WHERE due IS NOT NULL;
CREATE INDEX records_category ON records (category);

CREATE TABLE record_data (
  key      TEXT PRIMARY KEY,
  subject  TEXT,                        -- NULL once anonymised
  fields   TEXT NOT NULL                -- JSON object
) WITHOUT ROWID;

CREATE INDEX record_data_subject ON record_data (subject) WHERE subject IS NOT NULL;

CREATE TABLE audit (
  seq          INTEGER PRIMARY KEY,
  at           INTEGER NOT NULL,
  action       TEXT NOT NULL,
  key          TEXT,
  category     TEXT,
  phase        INTEGER,
  subject_ref  TEXT,
  actor        TEXT NOT NULL,
  reason       TEXT,
  policy_hash  TEXT NOT NULL,
  hash         TEXT NOT NULL
);

CREATE INDEX audit_key ON audit (key) WHERE key IS NOT NULL;
CREATE INDEX audit_subject_ref ON audit (subject_ref) WHERE subject_ref IS NOT NULL;

CREATE TABLE meta (
  name   TEXT PRIMARY KEY,
  value  TEXT NOT NULL
) WITHOUT ROWID;
