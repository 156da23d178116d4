-- 005: one row per record, in a rowid table; key slots kept in lists.
--
-- Measured (issue 5): a record split over two WITHOUT ROWID tables keyed by
-- its text key, plus an index over the 64-character subject HMAC, made every
-- insert and every delete touch several random b-tree pages, each one
-- journalled in full: ingest and purge ran at a fraction of a plain table's
-- rate. Now a record is one row of a rowid table: new records are appended
-- (ids grow), the sealed values sit in the same row, the key is a unique
-- index, and the subject index holds the first 16 hex digits (64 bits) of the
-- HMAC only; lookups compare the full value too.
--
-- A record migrated from a database older than 004 has no sealed row yet
-- (its values are still in plaintext_record_data): slot and sealed stay NULL
-- until the store seals them at start-up, before anything reads them.

CREATE TABLE records_v5 (
  id           INTEGER PRIMARY KEY,
  key          TEXT NOT NULL UNIQUE,
  category     TEXT NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('active', 'anonymised')),
  dates        TEXT NOT NULL,
  next_phase   INTEGER NOT NULL,
  due          INTEGER,
  done         TEXT NOT NULL DEFAULT '[]',
  created_at   INTEGER NOT NULL,
  slot         INTEGER,                   -- key slot in <state_dir>/keys
  subject_ref  TEXT,                      -- HMAC of the subject (hex); NULL once anonymised
  sealed       BLOB                       -- {"subject", "fields"} sealed under the slot's key
);

INSERT INTO records_v5 (key, category, state, dates, next_phase, due, done, created_at, slot, subject_ref, sealed)
  SELECT r.key, r.category, r.state, r.dates, r.next_phase, r.due, r.done, r.created_at, d.slot, d.subject_ref, d.sealed
  FROM records r LEFT JOIN record_data d ON d.key = r.key
  ORDER BY r.created_at, r.key;

DROP TABLE records;
DROP TABLE record_data;
ALTER TABLE records_v5 RENAME TO records;

CREATE INDEX records_due ON records (due, key) WHERE due IS NOT NULL;
CREATE INDEX records_undue ON records (key) WHERE due IS NULL;
CREATE INDEX records_category ON records (category);
CREATE INDEX records_subject ON records (substr(subject_ref, 1, 16)) WHERE subject_ref IS NOT NULL;

-- The audit log's subject index, shortened the same way.
DROP INDEX audit_subject_ref;
CREATE INDEX audit_subject_ref ON audit (substr(subject_ref, 1, 16)) WHERE subject_ref IS NOT NULL;

-- Key slots: one row per list of slots (all the slots one transaction
-- released), not one row per slot. zeroed = 0: released by a committed
-- transaction, not yet known to be zeroed (start-up zeroes them); 1: zeroed,
-- free for reuse. The next unused slot is kept in meta (next_key_slot).
CREATE TABLE key_slot_lists (
  id      INTEGER PRIMARY KEY,
  zeroed  INTEGER NOT NULL CHECK (zeroed IN (0, 1)),
  slots   BLOB NOT NULL                   -- 8-byte little-endian slot numbers
);
-- The old per-slot tables are converted by the store at start-up (it packs
-- the slot numbers, which SQL cannot), then dropped.
ALTER TABLE key_slots_to_zero RENAME TO old_key_slots_to_zero;
ALTER TABLE key_slots_free RENAME TO old_key_slots_free;

-- Record counts by database and state, kept up to date by every transaction
-- (status reads them: counting rows would scan the table). Filled by the
-- store at the first start after this migration, when archive.db is
-- attached.
CREATE TABLE record_counts (
  location  TEXT NOT NULL CHECK (location IN ('active', 'archive')),
  state     TEXT NOT NULL,
  n         INTEGER NOT NULL,
  PRIMARY KEY (location, state)
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('record_counts_pending', '1');
