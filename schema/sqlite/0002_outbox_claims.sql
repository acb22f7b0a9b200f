-- Claim leases on outbox rows, so several daemon instances can share the
-- batch scheduler and the relay without sending a row twice.
ALTER TABLE ey_outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE ey_outbox ADD COLUMN claimed_until TEXT;
