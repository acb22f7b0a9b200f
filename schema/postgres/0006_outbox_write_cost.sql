-- Cheaper writes to ey_outbox, which every event crosses two or three times
-- (insert, claim, `sent`).
--
-- Leave half of each page free, so that claiming a row (claimed_by,
-- claimed_until: no index covers them) is a heap-only (HOT) update: a new
-- row version on the same page and no new index entries. Without room on
-- the page every claim adds an entry to each of the table's indexes.
-- Applies to pages written from now on; `VACUUM FULL ey_outbox` rewrites
-- the existing ones.
ALTER TABLE ey_outbox SET (fillfactor = 50);

-- The sequence indexes only serve sequenced rows (resync fetches by
-- producer and stream, the inspection pass by type and time, both with
-- conditions that imply these predicates): unsequenced rows, most of the
-- traffic, no longer add entries to them on every insert and status change.
DROP INDEX IF EXISTS ey_outbox_seq_idx;
CREATE INDEX ey_outbox_seq_idx ON ey_outbox (producer_id, stream, epoch, seq)
    WHERE producer_id IS NOT NULL;
DROP INDEX IF EXISTS ey_outbox_type_created_idx;
CREATE INDEX ey_outbox_type_created_idx ON ey_outbox (event_type, created_at)
    WHERE seq IS NOT NULL;
