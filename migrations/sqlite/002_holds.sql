-- 002: legal holds. A hold stops every phase and the erasure of the records
-- it covers until released. A released hold's row is deleted (its target may
-- be a raw subject); the audit log keeps the proof, with an HMAC only.

CREATE TABLE holds (
  id         INTEGER PRIMARY KEY,
  scope      TEXT NOT NULL CHECK (scope IN ('subject', 'category', 'key')),
  target     TEXT NOT NULL,
  reason     TEXT NOT NULL,
  placed_at  INTEGER NOT NULL,
  placed_by  TEXT NOT NULL
);
