-- Claim leases on outbox rows, so several daemon instances can share the
-- batch scheduler and the relay without sending a row twice.
ALTER TABLE ey_outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE ey_outbox ADD COLUMN claimed_until TEXT;
-- Rules for send converters that need them (delimited, fixed-width), same format as the receive side.
ALTER TABLE ey_send_config ADD COLUMN converter_rules TEXT;
