-- 004: personal values sealed under one-time keys (crypto-erasure).
--
-- Writing personal rows once was not enough: SQLite's b-tree balancing copies
-- live cells between pages and leaves the old bytes in the unallocated space
-- of the page they left, where secure_delete never reaches them when the
-- record is later destroyed. So personal values (subject and fields of a
-- record, the target of a hold) are now stored only sealed (AES-256-GCM)
-- under a key used for that one row, kept in a slot of <state_dir>/keys.
-- Destroying the row zeroes its key slot; any stale copy of the sealed bytes
-- is then noise. The subject is findable through subject_ref, the same HMAC
-- the audit log uses.
--
-- The plaintext tables are renamed here and sealed, then dropped, by the
-- store at start-up (sealing needs the key file, which SQL cannot reach),
-- followed by one VACUUM.

ALTER TABLE record_data RENAME TO plaintext_record_data;
DROP INDEX record_data_subject;

CREATE TABLE record_data (
  key          TEXT PRIMARY KEY,
  slot         INTEGER NOT NULL,          -- key slot in <state_dir>/keys
  subject_ref  TEXT,                      -- HMAC of the subject; NULL once anonymised
  sealed       BLOB NOT NULL              -- {"subject", "fields"} sealed under the slot's key
) WITHOUT ROWID;

CREATE INDEX record_data_subject_ref ON record_data (subject_ref) WHERE subject_ref IS NOT NULL;

ALTER TABLE holds RENAME TO plaintext_holds;

CREATE TABLE holds (
  id             INTEGER PRIMARY KEY,
  scope          TEXT NOT NULL CHECK (scope IN ('subject', 'category', 'key')),
  slot           INTEGER NOT NULL,
  sealed_target  BLOB NOT NULL,
  reason         TEXT NOT NULL,
  placed_at      INTEGER NOT NULL,
  placed_by      TEXT NOT NULL
);

-- Key slots of both databases. A slot is in use (named by a row), waiting to
-- be zeroed (its row was destroyed by a committed transaction), or free
-- (zeroed, reusable). Slots never used are at or past next_key_slot.
CREATE TABLE key_slots_to_zero (slot INTEGER PRIMARY KEY);
CREATE TABLE key_slots_free (slot INTEGER PRIMARY KEY);
INSERT INTO meta (name, value) VALUES ('next_key_slot', '0');
