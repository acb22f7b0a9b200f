-- Claim leases on outbox rows, so several daemon instances can share the
-- batch scheduler and the relay without sending a row twice.
ALTER TABLE ey_outbox ADD COLUMN claimed_by VARCHAR(191) NULL;
ALTER TABLE ey_outbox ADD COLUMN claimed_until DATETIME(6) NULL;
-- Rules for send converters that need them (delimited, fixed-width), same format as the receive side.
ALTER TABLE ey_send_config ADD COLUMN converter_rules TEXT NULL;
