-- eventyard schema, PostgreSQL. Never edit an applied migration: add a new file.

CREATE TABLE IF NOT EXISTS ey_send_config (
    event_type   VARCHAR(191) PRIMARY KEY,
    enabled      BOOLEAN      NOT NULL DEFAULT TRUE,
    send_mode    VARCHAR(32)  NOT NULL DEFAULT 'realtime'
                 CHECK (send_mode IN ('realtime', 'batch', 'realtime_batch')),
    converter_id VARCHAR(191) NOT NULL DEFAULT 'xml',
    persist      BOOLEAN      NOT NULL DEFAULT TRUE,
    retry_count  INTEGER      NOT NULL DEFAULT 3 CHECK (retry_count >= 0),
    batch_cron   VARCHAR(255),
    batch_size   INTEGER      NOT NULL DEFAULT 500 CHECK (batch_size > 0),
    compression  VARCHAR(16)  NOT NULL DEFAULT 'gzip'
                 CHECK (compression IN ('gzip', 'deflate', 'none')),
    exchange     VARCHAR(255) NOT NULL DEFAULT 'eventyard',
    routing_key  VARCHAR(255),
    sequenced    BOOLEAN      NOT NULL DEFAULT FALSE,
    updated_at   TIMESTAMPTZ  NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ey_receive_config (
    event_type      VARCHAR(191) NOT NULL,
    subscriber      VARCHAR(191) NOT NULL,
    enabled         BOOLEAN      NOT NULL DEFAULT TRUE,
    exchange        VARCHAR(255) NOT NULL DEFAULT 'eventyard',
    binding_key     VARCHAR(255),
    process_mode    VARCHAR(32)  NOT NULL DEFAULT 'realtime'
                    CHECK (process_mode IN ('realtime', 'batch', 'none')),
    handler_id      VARCHAR(191),
    converter_id    VARCHAR(191) NOT NULL DEFAULT 'xml',
    converter_rules TEXT,
    workers         INTEGER      NOT NULL DEFAULT 4 CHECK (workers > 0),
    batch_cron      VARCHAR(255),
    max_attempts    INTEGER      NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    backoff_ms      BIGINT       NOT NULL DEFAULT 1000 CHECK (backoff_ms >= 0),
    queue           VARCHAR(255),
    sequenced       BOOLEAN      NOT NULL DEFAULT FALSE,
    updated_at      TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (event_type, subscriber)
);

CREATE TABLE IF NOT EXISTS ey_outbox (
    id          BIGSERIAL    PRIMARY KEY,
    event_id    VARCHAR(64)  NOT NULL UNIQUE,
    event_type  VARCHAR(191) NOT NULL,
    producer_id VARCHAR(191),
    stream      VARCHAR(191),
    epoch       BIGINT,
    seq         BIGINT,
    status      VARCHAR(16)  NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'failed')),
    attempts    INTEGER      NOT NULL DEFAULT 0,
    last_error  TEXT,
    payload     BYTEA        NOT NULL,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    sent_at     TIMESTAMPTZ
);
-- The batch scheduler and the relay read pending rows of one event type in order.
CREATE INDEX IF NOT EXISTS ey_outbox_pending_idx
    ON ey_outbox (event_type, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS ey_outbox_status_created_idx ON ey_outbox (status, created_at);
CREATE INDEX IF NOT EXISTS ey_outbox_seq_idx ON ey_outbox (producer_id, stream, epoch, seq);

CREATE TABLE IF NOT EXISTS ey_inbox (
    id              BIGSERIAL    PRIMARY KEY,
    event_id        VARCHAR(128) NOT NULL,
    event_type      VARCHAR(191) NOT NULL,
    subscriber      VARCHAR(191) NOT NULL,
    producer_id     VARCHAR(191),
    stream          VARCHAR(191),
    epoch           BIGINT,
    seq             BIGINT,
    status          VARCHAR(16)  NOT NULL DEFAULT 'received'
                    CHECK (status IN ('received', 'done', 'retrying', 'dead', 'stored')),
    attempts        INTEGER      NOT NULL DEFAULT 0,
    result          TEXT,
    next_attempt_at TIMESTAMPTZ,
    payload         BYTEA        NOT NULL,
    received_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
    processed_at    TIMESTAMPTZ,
    UNIQUE (subscriber, event_id)
);
-- Workers and the retry scheduler look rows up by status and due time.
CREATE INDEX IF NOT EXISTS ey_inbox_status_due_idx ON ey_inbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS ey_inbox_type_status_idx ON ey_inbox (event_type, status, id);

CREATE TABLE IF NOT EXISTS ey_stream_state (
    subscriber  VARCHAR(191) NOT NULL,
    producer_id VARCHAR(191) NOT NULL,
    stream      VARCHAR(191) NOT NULL,
    epoch       BIGINT       NOT NULL DEFAULT 1,
    last_seq    BIGINT       NOT NULL DEFAULT 0,
    mode        VARCHAR(16)  NOT NULL DEFAULT 'synced'
                CHECK (mode IN ('synced', 'hold', 'fetch', 'snapshot')),
    updated_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber, producer_id, stream)
);

CREATE TABLE IF NOT EXISTS ey_snapshot (
    producer_id VARCHAR(191) NOT NULL,
    stream      VARCHAR(191) NOT NULL,
    epoch       BIGINT       NOT NULL,
    seq         BIGINT       NOT NULL,
    state       BYTEA        NOT NULL,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (producer_id, stream)
);

-- Converter and handler ids that running daemons have registered, so that
-- `eventyard config check` can tell an application's own id from a typo.
CREATE TABLE IF NOT EXISTS ey_component (
    kind          VARCHAR(32)  NOT NULL
                  CHECK (kind IN ('send_converter', 'receive_converter', 'handler')),
    component_id  VARCHAR(191) NOT NULL,
    instance_id   VARCHAR(191) NOT NULL,
    registered_at TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, component_id, instance_id)
);

-- One row; bumped by triggers on every change to a config table so that
-- daemons can poll one number (and, here, get a NOTIFY on channel ey_config).
CREATE TABLE IF NOT EXISTS ey_config_version (
    id         INTEGER     PRIMARY KEY CHECK (id = 1),
    version    BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO ey_config_version (id, version) VALUES (1, 1) ON CONFLICT (id) DO NOTHING;

CREATE OR REPLACE FUNCTION ey_touch_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION ey_bump_config_version() RETURNS trigger AS $$
DECLARE
    v BIGINT;
BEGIN
    UPDATE ey_config_version SET version = version + 1, updated_at = now()
        WHERE id = 1 RETURNING version INTO v;
    PERFORM pg_notify('ey_config', TG_TABLE_NAME || ':' || v);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS ey_send_config_touch ON ey_send_config;
CREATE TRIGGER ey_send_config_touch BEFORE UPDATE ON ey_send_config
    FOR EACH ROW EXECUTE FUNCTION ey_touch_updated_at();
DROP TRIGGER IF EXISTS ey_receive_config_touch ON ey_receive_config;
CREATE TRIGGER ey_receive_config_touch BEFORE UPDATE ON ey_receive_config
    FOR EACH ROW EXECUTE FUNCTION ey_touch_updated_at();
DROP TRIGGER IF EXISTS ey_send_config_version ON ey_send_config;
CREATE TRIGGER ey_send_config_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ey_send_config
    FOR EACH STATEMENT EXECUTE FUNCTION ey_bump_config_version();
DROP TRIGGER IF EXISTS ey_receive_config_version ON ey_receive_config;
CREATE TRIGGER ey_receive_config_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ey_receive_config
    FOR EACH STATEMENT EXECUTE FUNCTION ey_bump_config_version();
