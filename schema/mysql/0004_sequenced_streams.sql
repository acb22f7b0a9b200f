-- Sequenced streams (issue 6).
-- The producer's counter per (producer, stream): the next seq to hand out
-- and the current epoch. Numbering locks this row inside the outbox
-- transaction, so concurrent publishers of one key commit in order.
CREATE TABLE IF NOT EXISTS ey_stream_counter (
    producer_id VARCHAR(191) NOT NULL,
    stream      VARCHAR(191) NOT NULL,
    epoch       BIGINT       NOT NULL DEFAULT 1,
    next_seq    BIGINT       NOT NULL DEFAULT 1,
    updated_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (producer_id, stream)
);
-- When the consumer's inspection pass runs for a sequenced receive row
-- (cron or `@every`); NULL: never.
ALTER TABLE ey_receive_config ADD COLUMN inspect_cron VARCHAR(191) NULL;
-- The inspection pass's checkpoint per (subscriber, event type).
CREATE TABLE IF NOT EXISTS ey_seq_checkpoint (
    subscriber    VARCHAR(191) NOT NULL,
    event_type    VARCHAR(191) NOT NULL,
    checkpoint_at DATETIME(6)  NOT NULL,
    updated_at    DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (subscriber, event_type)
);
-- Operator requests (`eventyard seq resync`) picked up by the running daemon.
CREATE TABLE IF NOT EXISTS ey_seq_resync (
    subscriber   VARCHAR(191) NOT NULL,
    producer_id  VARCHAR(191) NOT NULL,
    stream       VARCHAR(191) NOT NULL,
    requested_at DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (subscriber, producer_id, stream)
);
-- The inspection pass reads a type's recent outbox rows by time.
CREATE INDEX ey_outbox_type_created_idx ON ey_outbox (event_type, created_at);
