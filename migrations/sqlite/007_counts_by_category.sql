-- Record counts by category as well as by place and state: metrics export
-- records by category and state, and counting rows would scan the tables.
-- Refilled by the store at the next start (record_counts_pending), in the
-- same way as after 005.
DROP TABLE record_counts;
CREATE TABLE record_counts (
  location  TEXT NOT NULL CHECK (location IN ('active', 'archive')),
  category  TEXT NOT NULL,
  state     TEXT NOT NULL,
  n         INTEGER NOT NULL,
  PRIMARY KEY (location, category, state)
) WITHOUT ROWID;
INSERT OR REPLACE INTO meta (name, value) VALUES ('record_counts_pending', '1');
