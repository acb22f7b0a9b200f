-- Claim leases on outbox rows, so several daemon instances can share the
-- batch scheduler and the relay without sending a row twice.
ALTER TABLE ey_outbox ADD COLUMN IF NOT EXISTS claimed_by VARCHAR(191);
ALTER TABLE ey_outbox ADD COLUMN IF NOT EXISTS claimed_until TIMESTAMPTZ;
-- Rules for send converters that need them (delimited, fixed-width), same format as the receive side.
ALTER TABLE ey_send_config ADD COLUMN IF NOT EXISTS converter_rules TEXT;
