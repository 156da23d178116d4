-- 006: one database file, in WAL mode; the archive becomes a table of it.
--
-- Until 005 the archive was a second file, archive.db, attached to the same
-- connection, and both used a rollback journal so that an archive move
-- committed atomically across the two (a super-journal). That design made
-- readers wait for every commit and wrote every page twice. Now the archive
-- is the table `archive` of retention.db, with restricted access (only
-- admins read it, on demand: record.get with include_archived), which is
-- the logical separation intermediate archiving asks for; a move is one
-- ordinary transaction. The store merges an existing archive.db into it at
-- the first start (it must be attached, which SQL here cannot do), then
-- removes the file, and switches the database to WAL.

CREATE TABLE archive (
  id           INTEGER PRIMARY KEY,
  key          TEXT NOT NULL UNIQUE,
  category     TEXT NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('archived', 'anonymised')),
  dates        TEXT NOT NULL,
  next_phase   INTEGER NOT NULL,
  due          INTEGER,
  done         TEXT NOT NULL DEFAULT '[]',
  created_at   INTEGER NOT NULL,
  slot         INTEGER,                   -- key slot in <state_dir>/keys
  subject_ref  TEXT,                      -- HMAC of the subject (hex); NULL once anonymised
  sealed       BLOB                       -- {"subject", "fields"} sealed under the slot's key
);

CREATE INDEX archive_due ON archive (due, key) WHERE due IS NOT NULL;
CREATE INDEX archive_undue ON archive (key) WHERE due IS NULL;
CREATE INDEX archive_category ON archive (category);
CREATE INDEX archive_subject ON archive (substr(subject_ref, 1, 16)) WHERE subject_ref IS NOT NULL;

-- Records due per UTC day and category, kept by every transaction, so that
-- "how many are due now" (status.backlog) sums the days before today and
-- counts today's records alone, whatever the number of records stored.
-- Filled by the store at the first start after this migration.
CREATE TABLE due_counts (
  day       INTEGER NOT NULL,              -- floor(due / 86400)
  category  TEXT NOT NULL,
  n         INTEGER NOT NULL,
  PRIMARY KEY (day, category)
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('due_counts_pending', '1');
