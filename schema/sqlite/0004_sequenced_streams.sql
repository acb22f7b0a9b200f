-- Sequenced streams (issue 6).
-- The producer's counter per (producer, stream): the next seq to hand out
-- and the current epoch. Numbering takes the write lock inside the outbox
-- transaction, so concurrent publishers of one key commit in order.
CREATE TABLE IF NOT EXISTS ey_stream_counter (
    producer_id TEXT    NOT NULL,
    stream      TEXT    NOT NULL,
    epoch       INTEGER NOT NULL DEFAULT 1,
    next_seq    INTEGER NOT NULL DEFAULT 1,
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (producer_id, stream)
);
-- When the consumer's inspection pass runs for a sequenced receive row
-- (cron or `@every`); NULL: never.
ALTER TABLE ey_receive_config ADD COLUMN inspect_cron TEXT;
-- The inspection pass's checkpoint per (subscriber, event type).
CREATE TABLE IF NOT EXISTS ey_seq_checkpoint (
    subscriber    TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    checkpoint_at TEXT NOT NULL,
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (subscriber, event_type)
);
-- Operator requests (`eventyard seq resync`) picked up by the running daemon.
CREATE TABLE IF NOT EXISTS ey_seq_resync (
    subscriber   TEXT NOT NULL,
    producer_id  TEXT NOT NULL,
    stream       TEXT NOT NULL,
    requested_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (subscriber, producer_id, stream)
);
-- The inspection pass reads a type's recent outbox rows by time.
CREATE INDEX IF NOT EXISTS ey_outbox_type_created_idx ON ey_outbox (event_type, created_at);
