-- eventyard schema, MySQL 8 / MariaDB 10.6+. Never edit an applied migration: add a new file.

CREATE TABLE IF NOT EXISTS ey_send_config (
    event_type   VARCHAR(191) NOT NULL PRIMARY KEY,
    enabled      BOOLEAN      NOT NULL DEFAULT TRUE,
    send_mode    VARCHAR(32)  NOT NULL DEFAULT 'realtime',
    converter_id VARCHAR(191) NOT NULL DEFAULT 'xml',
    persist      BOOLEAN      NOT NULL DEFAULT TRUE,
    retry_count  INT          NOT NULL DEFAULT 3,
    batch_cron   VARCHAR(255) NULL,
    batch_size   INT          NOT NULL DEFAULT 500,
    compression  VARCHAR(16)  NOT NULL DEFAULT 'gzip',
    exchange     VARCHAR(255) NOT NULL DEFAULT 'eventyard',
    routing_key  VARCHAR(255) NULL,
    sequenced    BOOLEAN      NOT NULL DEFAULT FALSE,
    updated_at   DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    CONSTRAINT ey_send_config_mode_chk CHECK (send_mode IN ('realtime', 'batch', 'realtime_batch')),
    CONSTRAINT ey_send_config_retry_chk CHECK (retry_count >= 0),
    CONSTRAINT ey_send_config_size_chk CHECK (batch_size > 0),
    CONSTRAINT ey_send_config_compression_chk CHECK (compression IN ('gzip', 'deflate', 'none'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS ey_receive_config (
    event_type      VARCHAR(191) NOT NULL,
    subscriber      VARCHAR(191) NOT NULL,
    enabled         BOOLEAN      NOT NULL DEFAULT TRUE,
    exchange        VARCHAR(255) NOT NULL DEFAULT 'eventyard',
    binding_key     VARCHAR(255) NULL,
    process_mode    VARCHAR(32)  NOT NULL DEFAULT 'realtime',
    handler_id      VARCHAR(191) NULL,
    converter_id    VARCHAR(191) NOT NULL DEFAULT 'xml',
    converter_rules TEXT         NULL,
    workers         INT          NOT NULL DEFAULT 4,
    batch_cron      VARCHAR(255) NULL,
    max_attempts    INT          NOT NULL DEFAULT 5,
    backoff_ms      BIGINT       NOT NULL DEFAULT 1000,
    queue           VARCHAR(255) NULL,
    sequenced       BOOLEAN      NOT NULL DEFAULT FALSE,
    updated_at      DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (event_type, subscriber),
    CONSTRAINT ey_receive_config_mode_chk CHECK (process_mode IN ('realtime', 'batch', 'none')),
    CONSTRAINT ey_receive_config_workers_chk CHECK (workers > 0),
    CONSTRAINT ey_receive_config_attempts_chk CHECK (max_attempts > 0),
    CONSTRAINT ey_receive_config_backoff_chk CHECK (backoff_ms >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS ey_outbox (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id    VARCHAR(64)  NOT NULL,
    event_type  VARCHAR(191) NOT NULL,
    producer_id VARCHAR(191) NULL,
    stream      VARCHAR(191) NULL,
    epoch       BIGINT       NULL,
    seq         BIGINT       NULL,
    status      VARCHAR(16)  NOT NULL DEFAULT 'pending',
    attempts    INT          NOT NULL DEFAULT 0,
    last_error  TEXT         NULL,
    payload     LONGBLOB     NOT NULL,
    created_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    sent_at     DATETIME(6)  NULL,
    UNIQUE KEY ey_outbox_event_id_uq (event_id),
    KEY ey_outbox_pending_idx (event_type, status, id),
    KEY ey_outbox_status_created_idx (status, created_at),
    KEY ey_outbox_seq_idx (producer_id, stream, epoch, seq),
    CONSTRAINT ey_outbox_status_chk CHECK (status IN ('pending', 'sent', 'failed'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS ey_inbox (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id        VARCHAR(128) NOT NULL,
    event_type      VARCHAR(191) NOT NULL,
    subscriber      VARCHAR(191) NOT NULL,
    producer_id     VARCHAR(191) NULL,
    stream          VARCHAR(191) NULL,
    epoch           BIGINT       NULL,
    seq             BIGINT       NULL,
    status          VARCHAR(16)  NOT NULL DEFAULT 'received',
    attempts        INT          NOT NULL DEFAULT 0,
    result          TEXT         NULL,
    next_attempt_at DATETIME(6)  NULL,
    payload         LONGBLOB     NOT NULL,
    received_at     DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    processed_at    DATETIME(6)  NULL,
    UNIQUE KEY ey_inbox_subscriber_event_uq (subscriber, event_id),
    KEY ey_inbox_status_due_idx (status, next_attempt_at),
    KEY ey_inbox_type_status_idx (event_type, status, id),
    CONSTRAINT ey_inbox_status_chk CHECK (status IN ('received', 'done', 'retrying', 'dead', 'stored'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS ey_stream_state (
    subscriber  VARCHAR(191) NOT NULL,
    producer_id VARCHAR(191) NOT NULL,
    stream      VARCHAR(191) NOT NULL,
    epoch       BIGINT       NOT NULL DEFAULT 1,
    last_seq    BIGINT       NOT NULL DEFAULT 0,
    mode        VARCHAR(16)  NOT NULL DEFAULT 'synced',
    updated_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (subscriber, producer_id, stream),
    CONSTRAINT ey_stream_state_mode_chk CHECK (mode IN ('synced', 'hold', 'fetch', 'snapshot'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS ey_snapshot (
    producer_id VARCHAR(191) NOT NULL,
    stream      VARCHAR(191) NOT NULL,
    epoch       BIGINT       NOT NULL,
    seq         BIGINT       NOT NULL,
    state       LONGBLOB     NOT NULL,
    created_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (producer_id, stream)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS ey_component (
    kind          VARCHAR(32)  NOT NULL,
    component_id  VARCHAR(191) NOT NULL,
    instance_id   VARCHAR(191) NOT NULL,
    registered_at DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (kind, component_id, instance_id),
    CONSTRAINT ey_component_kind_chk CHECK (kind IN ('send_converter', 'receive_converter', 'handler'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS ey_config_version (
    id         INT         NOT NULL PRIMARY KEY,
    version    BIGINT      NOT NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    CONSTRAINT ey_config_version_one_chk CHECK (id = 1)
) ENGINE=InnoDB;
INSERT IGNORE INTO ey_config_version (id, version) VALUES (1, 1);

DROP TRIGGER IF EXISTS ey_send_config_ins;
CREATE TRIGGER ey_send_config_ins AFTER INSERT ON ey_send_config FOR EACH ROW
    UPDATE ey_config_version SET version = version + 1 WHERE id = 1;
DROP TRIGGER IF EXISTS ey_send_config_upd;
CREATE TRIGGER ey_send_config_upd AFTER UPDATE ON ey_send_config FOR EACH ROW
    UPDATE ey_config_version SET version = version + 1 WHERE id = 1;
DROP TRIGGER IF EXISTS ey_send_config_del;
CREATE TRIGGER ey_send_config_del AFTER DELETE ON ey_send_config FOR EACH ROW
    UPDATE ey_config_version SET version = version + 1 WHERE id = 1;
DROP TRIGGER IF EXISTS ey_receive_config_ins;
CREATE TRIGGER ey_receive_config_ins AFTER INSERT ON ey_receive_config FOR EACH ROW
    UPDATE ey_config_version SET version = version + 1 WHERE id = 1;
DROP TRIGGER IF EXISTS ey_receive_config_upd;
CREATE TRIGGER ey_receive_config_upd AFTER UPDATE ON ey_receive_config FOR EACH ROW
    UPDATE ey_config_version SET version = version + 1 WHERE id = 1;
DROP TRIGGER IF EXISTS ey_receive_config_del;
CREATE TRIGGER ey_receive_config_del AFTER DELETE ON ey_receive_config FOR EACH ROW
    UPDATE ey_config_version SET version = version + 1 WHERE id = 1;
