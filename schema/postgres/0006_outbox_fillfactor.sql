-- Leave half of each outbox page free, so that claiming a row (claimed_by,
-- claimed_until: no index covers them) is a heap-only (HOT) update: a new
-- row version on the same page and no new index entries. Without room on
-- the page every claim adds an entry to each of the table's indexes.
-- Applies to pages written from now on; `VACUUM FULL ey_outbox` rewrites
-- the existing ones.
ALTER TABLE ey_outbox SET (fillfactor = 50);
