-- Claim leases on inbox rows, so several receiver instances of one
-- subscriber share retries and batch runs without processing a row twice.
ALTER TABLE ey_inbox ADD COLUMN claimed_by TEXT;
ALTER TABLE ey_inbox ADD COLUMN claimed_until TEXT;
-- Retry and batch claims look rows up per subscriber and event type.
CREATE INDEX IF NOT EXISTS ey_inbox_claim_idx
    ON ey_inbox (subscriber, event_type, status, next_attempt_at);
-- Per-handler settings (the `sql` handler's statement) and the handler
-- timeout of an event type (NULL: the receiver's default).
ALTER TABLE ey_receive_config ADD COLUMN handler_config TEXT;
ALTER TABLE ey_receive_config ADD COLUMN handler_timeout_ms INTEGER;
