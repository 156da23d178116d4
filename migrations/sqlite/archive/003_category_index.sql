-- archive.db 003: records by category, for the reload guard (recounting and
-- rescheduling the records of a changed category without a table scan).
CREATE INDEX records_category ON records (category);
