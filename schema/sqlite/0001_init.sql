-- eventyard schema, SQLite. Never edit an applied migration: add a new file.
-- Timestamps are ISO-8601 UTC text, e.g. 2026-11-22T03:20:12.123+00:00.

CREATE TABLE IF NOT EXISTS ey_send_config (
    event_type   TEXT    NOT NULL PRIMARY KEY,
    enabled      BOOLEAN NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    send_mode    TEXT    NOT NULL DEFAULT 'realtime'
                 CHECK (send_mode IN ('realtime', 'batch', 'realtime_batch')),
    converter_id TEXT    NOT NULL DEFAULT 'xml',
    persist      BOOLEAN NOT NULL DEFAULT 1 CHECK (persist IN (0, 1)),
    retry_count  INTEGER NOT NULL DEFAULT 3 CHECK (retry_count >= 0),
    batch_cron   TEXT,
    batch_size   INTEGER NOT NULL DEFAULT 500 CHECK (batch_size > 0),
    compression  TEXT    NOT NULL DEFAULT 'gzip'
                 CHECK (compression IN ('gzip', 'deflate', 'none')),
    exchange     TEXT    NOT NULL DEFAULT 'eventyard',
    routing_key  TEXT,
    sequenced    BOOLEAN NOT NULL DEFAULT 0 CHECK (sequenced IN (0, 1)),
    updated_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE TABLE IF NOT EXISTS ey_receive_config (
    event_type      TEXT    NOT NULL,
    subscriber      TEXT    NOT NULL,
    enabled         BOOLEAN NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    exchange        TEXT    NOT NULL DEFAULT 'eventyard',
    binding_key     TEXT,
    process_mode    TEXT    NOT NULL DEFAULT 'realtime'
                    CHECK (process_mode IN ('realtime', 'batch', 'none')),
    handler_id      TEXT,
    converter_id    TEXT    NOT NULL DEFAULT 'xml',
    converter_rules TEXT,
    workers         INTEGER NOT NULL DEFAULT 4 CHECK (workers > 0),
    batch_cron      TEXT,
    max_attempts    INTEGER NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    backoff_ms      INTEGER NOT NULL DEFAULT 1000 CHECK (backoff_ms >= 0),
    queue           TEXT,
    sequenced       BOOLEAN NOT NULL DEFAULT 0 CHECK (sequenced IN (0, 1)),
    updated_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (event_type, subscriber)
);

CREATE TABLE IF NOT EXISTS ey_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL UNIQUE,
    event_type  TEXT    NOT NULL,
    producer_id TEXT,
    stream      TEXT,
    epoch       INTEGER,
    seq         INTEGER,
    status      TEXT    NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    payload     BLOB    NOT NULL,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    sent_at     TEXT
);
CREATE INDEX IF NOT EXISTS ey_outbox_pending_idx ON ey_outbox (event_type, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS ey_outbox_status_created_idx ON ey_outbox (status, created_at);
CREATE INDEX IF NOT EXISTS ey_outbox_seq_idx ON ey_outbox (producer_id, stream, epoch, seq);

CREATE TABLE IF NOT EXISTS ey_inbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    subscriber      TEXT    NOT NULL,
    producer_id     TEXT,
    stream          TEXT,
    epoch           INTEGER,
    seq             INTEGER,
    status          TEXT    NOT NULL DEFAULT 'received'
                    CHECK (status IN ('received', 'done', 'retrying', 'dead', 'stored')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    result          TEXT,
    next_attempt_at TEXT,
    payload         BLOB    NOT NULL,
    received_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    processed_at    TEXT,
    UNIQUE (subscriber, event_id)
);
CREATE INDEX IF NOT EXISTS ey_inbox_status_due_idx ON ey_inbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS ey_inbox_type_status_idx ON ey_inbox (event_type, status, id);

CREATE TABLE IF NOT EXISTS ey_stream_state (
    subscriber  TEXT    NOT NULL,
    producer_id TEXT    NOT NULL,
    stream      TEXT    NOT NULL,
    epoch       INTEGER NOT NULL DEFAULT 1,
    last_seq    INTEGER NOT NULL DEFAULT 0,
    mode        TEXT    NOT NULL DEFAULT 'synced'
                CHECK (mode IN ('synced', 'hold', 'fetch', 'snapshot')),
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (subscriber, producer_id, stream)
);

CREATE TABLE IF NOT EXISTS ey_snapshot (
    producer_id TEXT    NOT NULL,
    stream      TEXT    NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    state       BLOB    NOT NULL,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (producer_id, stream)
);

CREATE TABLE IF NOT EXISTS ey_component (
    kind          TEXT NOT NULL CHECK (kind IN ('send_converter', 'receive_converter', 'handler')),
    component_id  TEXT NOT NULL,
    instance_id   TEXT NOT NULL,
    registered_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (kind, component_id, instance_id)
);

CREATE TABLE IF NOT EXISTS ey_config_version (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    version    INTEGER NOT NULL,
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);
INSERT OR IGNORE INTO ey_config_version (id, version) VALUES (1, 1);

CREATE TRIGGER IF NOT EXISTS ey_send_config_touch AFTER UPDATE ON ey_send_config
    FOR EACH ROW WHEN NEW.updated_at = OLD.updated_at
BEGIN
    UPDATE ey_send_config SET updated_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')
        WHERE event_type = NEW.event_type;
END;
CREATE TRIGGER IF NOT EXISTS ey_receive_config_touch AFTER UPDATE ON ey_receive_config
    FOR EACH ROW WHEN NEW.updated_at = OLD.updated_at
BEGIN
    UPDATE ey_receive_config SET updated_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')
        WHERE event_type = NEW.event_type AND subscriber = NEW.subscriber;
END;
CREATE TRIGGER IF NOT EXISTS ey_send_config_ins AFTER INSERT ON ey_send_config
BEGIN UPDATE ey_config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS ey_send_config_upd AFTER UPDATE ON ey_send_config
BEGIN UPDATE ey_config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS ey_send_config_del AFTER DELETE ON ey_send_config
BEGIN UPDATE ey_config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS ey_receive_config_ins AFTER INSERT ON ey_receive_config
BEGIN UPDATE ey_config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS ey_receive_config_upd AFTER UPDATE ON ey_receive_config
BEGIN UPDATE ey_config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS ey_receive_config_del AFTER DELETE ON ey_receive_config
BEGIN UPDATE ey_config_version SET version = version + 1 WHERE id = 1; END;
