-- Claim leases on outbox rows, so several daemon instances can share the
-- batch scheduler and the relay without sending a row twice.
ALTER TABLE ey_outbox ADD COLUMN claimed_by VARCHAR(191) NULL;
ALTER TABLE ey_outbox ADD COLUMN claimed_until DATETIME(6) NULL;
