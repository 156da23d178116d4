-- 001 (PostgreSQL): the schema of SQLite's 009, in two schemas: retentiond
-- (the active records, the audit log, holds, meta, the key slot bookkeeping,
-- the keys, the undo window, connector jobs and the kept counts) and
-- retentiond_archive (the archive: its own schema, so that its privileges
-- are its own). The migration runner creates schema retentiond and its
-- schema_version table before this runs.
--
-- Keys and categories compare as bytes (COLLATE "C"), like SQLite's BINARY:
-- every backend pages through keys in the same order. Times are unix
-- seconds (bigint); dates and done times JSON text, as in SQLite.

CREATE SCHEMA retentiond_archive;
REVOKE ALL ON SCHEMA retentiond_archive FROM PUBLIC;

CREATE TABLE retentiond.records (
  key          text COLLATE "C" PRIMARY KEY,
  category     text COLLATE "C" NOT NULL,
  state        text NOT NULL CHECK (state IN ('active', 'anonymised')),
  dates        text NOT NULL,
  next_phase   integer NOT NULL,
  due          bigint,
  done         text NOT NULL DEFAULT '[]',
  created_at   bigint NOT NULL,
  slot         bigint,
  subject_ref  text COLLATE "C",
  sealed       bytea
);
CREATE INDEX records_due ON retentiond.records (due, key) WHERE due IS NOT NULL;
CREATE INDEX records_undue ON retentiond.records (key) WHERE due IS NULL;
CREATE INDEX records_category ON retentiond.records (category, key);
CREATE INDEX records_subject ON retentiond.records (subject_ref) WHERE subject_ref IS NOT NULL;

CREATE TABLE retentiond_archive.records (
  key          text COLLATE "C" PRIMARY KEY,
  category     text COLLATE "C" NOT NULL,
  state        text NOT NULL CHECK (state IN ('archived', 'anonymised')),
  dates        text NOT NULL,
  next_phase   integer NOT NULL,
  due          bigint,
  done         text NOT NULL DEFAULT '[]',
  created_at   bigint NOT NULL,
  slot         bigint,
  subject_ref  text COLLATE "C",
  sealed       bytea
);
CREATE INDEX archive_due ON retentiond_archive.records (due, key) WHERE due IS NOT NULL;
CREATE INDEX archive_undue ON retentiond_archive.records (key) WHERE due IS NULL;
CREATE INDEX archive_category ON retentiond_archive.records (category, key);
CREATE INDEX archive_subject ON retentiond_archive.records (subject_ref) WHERE subject_ref IS NOT NULL;

CREATE TABLE retentiond.audit (
  seq          bigint PRIMARY KEY,
  at           bigint NOT NULL,
  action       text NOT NULL,
  key          text COLLATE "C",
  category     text COLLATE "C",
  phase        integer,
  subject_ref  text COLLATE "C",
  actor        text NOT NULL,
  reason       text,
  policy_hash  text NOT NULL,
  hash         text NOT NULL
);
CREATE INDEX audit_key ON retentiond.audit (key, seq) WHERE key IS NOT NULL;
CREATE INDEX audit_subject_ref ON retentiond.audit (subject_ref, seq) WHERE subject_ref IS NOT NULL;

CREATE TABLE retentiond.meta (
  name   text COLLATE "C" PRIMARY KEY,
  value  text NOT NULL
);
INSERT INTO retentiond.meta (name, value) VALUES ('next_key_slot', '0');

CREATE TABLE retentiond.holds (
  id             bigserial PRIMARY KEY,
  scope          text NOT NULL CHECK (scope IN ('subject', 'category', 'key')),
  slot           bigint NOT NULL,
  sealed_target  bytea NOT NULL,
  reason         text NOT NULL,
  placed_at      bigint NOT NULL,
  placed_by      text NOT NULL
);

CREATE TABLE retentiond.key_slot_lists (
  id      bigserial PRIMARY KEY,
  zeroed  boolean NOT NULL,
  slots   bytea NOT NULL                  -- 8-byte little-endian slot numbers
);

-- The one-time keys (lib/vault's KeyStore): one row per live slot; a
-- destroyed key's row is deleted.
CREATE TABLE retentiond.keys (
  slot  bigint PRIMARY KEY,
  key   bytea NOT NULL CHECK (length(key) = 32)
);

CREATE TABLE retentiond.record_counts (
  location  text NOT NULL CHECK (location IN ('active', 'archive')),
  category  text COLLATE "C" NOT NULL,
  state     text NOT NULL,
  n         bigint NOT NULL,
  PRIMARY KEY (location, category, state)
);

CREATE TABLE retentiond.due_counts (
  day       bigint NOT NULL,              -- floor(due / 86400)
  category  text COLLATE "C" NOT NULL,
  n         bigint NOT NULL,
  PRIMARY KEY (day, category)
);

CREATE TABLE retentiond.retired (
  key          text COLLATE "C" PRIMARY KEY,
  location     text NOT NULL CHECK (location IN ('active', 'archive')),
  category     text COLLATE "C" NOT NULL,
  state        text NOT NULL,
  dates        text NOT NULL,
  next_phase   integer NOT NULL,
  due          bigint,
  done         text NOT NULL,
  created_at   bigint NOT NULL,
  slot         bigint,
  subject_ref  text COLLATE "C",
  sealed       bytea,
  purged_at    bigint NOT NULL,
  destroy_at   bigint NOT NULL
);
CREATE INDEX retired_destroy ON retentiond.retired (destroy_at, key);

CREATE TABLE retentiond.connector_jobs (
  id            text COLLATE "C" PRIMARY KEY,
  connector     text COLLATE "C" NOT NULL,
  action        text NOT NULL CHECK (action IN ('archive', 'anonymise', 'purge', 'erase')),
  key           text COLLATE "C" NOT NULL,
  category      text COLLATE "C" NOT NULL,
  phase         integer,
  decided_at    bigint NOT NULL,
  audit_seq     bigint NOT NULL,
  subject_ref   text COLLATE "C",
  slot          bigint,
  sealed        bytea,
  state         text NOT NULL CHECK (state IN ('pending', 'in_flight', 'failed', 'done', 'discarded')),
  attempts      bigint NOT NULL DEFAULT 0,
  failures      bigint NOT NULL DEFAULT 0,
  next_at       bigint NOT NULL,
  last_error    text,
  finished_at   bigint
);
CREATE INDEX connector_jobs_ready ON retentiond.connector_jobs (connector, state, next_at, audit_seq)
  WHERE state IN ('pending', 'in_flight', 'failed');
CREATE INDEX connector_jobs_order ON retentiond.connector_jobs (connector, state, audit_seq)
  WHERE state IN ('pending', 'in_flight', 'failed');
CREATE INDEX connector_jobs_key ON retentiond.connector_jobs (key);

CREATE TABLE retentiond.connector_stats (
  connector     text COLLATE "C" PRIMARY KEY,
  pending       bigint NOT NULL DEFAULT 0,
  in_flight     bigint NOT NULL DEFAULT 0,
  failed        bigint NOT NULL DEFAULT 0,
  done          bigint NOT NULL DEFAULT 0,
  discarded     bigint NOT NULL DEFAULT 0,
  last_error    text,
  last_error_at bigint
);

-- Key slots, handed out in blocks of 1024 to each daemon (a slot is never
-- reused on PostgreSQL: no two daemons can ever take the same one).
CREATE SEQUENCE retentiond.key_slot_blocks INCREMENT BY 1024 MINVALUE 0 START WITH 0;
