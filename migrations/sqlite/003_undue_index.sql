-- 003: records with no due time (waiting for a date, or with nothing left to
-- do), reachable without a table scan for plan's "waiting" count.
CREATE INDEX records_undue ON records (key) WHERE due IS NULL;
