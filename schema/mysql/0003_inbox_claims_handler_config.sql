-- Claim leases on inbox rows, so several receiver instances of one
-- subscriber share retries and batch runs without processing a row twice.
ALTER TABLE ey_inbox ADD COLUMN claimed_by VARCHAR(191) NULL;
ALTER TABLE ey_inbox ADD COLUMN claimed_until DATETIME(6) NULL;
-- Retry and batch claims look rows up per subscriber and event type.
CREATE INDEX ey_inbox_claim_idx ON ey_inbox (subscriber, event_type, status, next_attempt_at);
-- Per-handler settings (the `sql` handler's statement) and the handler
-- timeout of an event type (NULL: the receiver's default).
ALTER TABLE ey_receive_config ADD COLUMN handler_config TEXT NULL;
ALTER TABLE ey_receive_config ADD COLUMN handler_timeout_ms BIGINT NULL;
