-- Connectors (docs/connectors.md): the outbox. A job is committed with the
-- action it carries (and its audit entry), one per connector of the
-- record's category, and delivered at least once. Its subject is personal
-- data: sealed under a key slot of its own like a record's values
-- (associated data "job\n<id>"), and destroyed (slot zeroed, bytes nulled) once the job
-- is done or discarded.
--
-- next_at: for a pending job, when it may be delivered; for an in_flight
-- one, when its lease ends (then it may be delivered again). Finished jobs
-- (done, discarded) stay, without their subject, for record.explain; they
-- leave the delivery index.
CREATE TABLE connector_jobs (
  id            TEXT PRIMARY KEY,
  connector     TEXT NOT NULL,
  action        TEXT NOT NULL CHECK (action IN ('archive', 'anonymise', 'purge', 'erase')),
  key           TEXT NOT NULL,
  category      TEXT NOT NULL,
  phase         INTEGER,
  decided_at    INTEGER NOT NULL,
  audit_seq     INTEGER NOT NULL,
  subject_ref   TEXT,
  slot          INTEGER,
  sealed        BLOB,
  state         TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'failed', 'done', 'discarded')),
  attempts      INTEGER NOT NULL DEFAULT 0,
  failures      INTEGER NOT NULL DEFAULT 0,
  next_at       INTEGER NOT NULL,
  last_error    TEXT,
  finished_at   INTEGER
) WITHOUT ROWID;
-- What a connector may deliver now: a range of this index per state, in
-- (next_at, audit_seq) order; unfinished jobs only, so its size is the
-- backlog, not the history. The second gives them in decision order.
CREATE INDEX connector_jobs_ready ON connector_jobs (connector, state, next_at, audit_seq)
  WHERE state IN ('pending', 'in_flight', 'failed');
CREATE INDEX connector_jobs_order ON connector_jobs (connector, state, audit_seq)
  WHERE state IN ('pending', 'in_flight', 'failed');
CREATE INDEX connector_jobs_key ON connector_jobs (key);
-- Per connector, kept by every transaction that changes a job: the jobs in
-- each state counted without reading them, and the latest error.
CREATE TABLE connector_stats (
  connector     TEXT PRIMARY KEY,
  pending       INTEGER NOT NULL DEFAULT 0,
  in_flight     INTEGER NOT NULL DEFAULT 0,
  failed        INTEGER NOT NULL DEFAULT 0,
  done          INTEGER NOT NULL DEFAULT 0,
  discarded     INTEGER NOT NULL DEFAULT 0,
  last_error    TEXT,
  last_error_at INTEGER
) WITHOUT ROWID;
