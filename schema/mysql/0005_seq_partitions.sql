-- Scale-out of sequenced streams by producer partitioning (issue 6).
-- How many partitions a sequenced receive row is split into: with more
-- than 1, messages are spread by producer id over `<queue>.p0` …
-- `<queue>.p<N-1>` through a consistent-hash exchange, and the instances of
-- the subscriber share the partitions through the leases below.
ALTER TABLE ey_receive_config ADD COLUMN partitions INT NOT NULL DEFAULT 1;
-- The live instances of a subscriber serving a partitioned event type: each
-- renews its row on every heartbeat; a row past `expires_at` is a dead
-- instance. The fair share of an instance is ceil(partitions / live rows).
CREATE TABLE IF NOT EXISTS ey_seq_member (
    subscriber  VARCHAR(191) NOT NULL,
    event_type  VARCHAR(191) NOT NULL,
    instance_id VARCHAR(191) NOT NULL,
    expires_at  DATETIME(6)  NOT NULL,
    updated_at  DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (subscriber, event_type, instance_id)
);
-- One row per partition (0 … partitions-1): who consumes it, until when.
-- `partition_no` = -1 is the lease of the inspection pass of the type.
CREATE TABLE IF NOT EXISTS ey_seq_partition_lease (
    subscriber   VARCHAR(191) NOT NULL,
    event_type   VARCHAR(191) NOT NULL,
    partition_no INT          NOT NULL,
    owner        VARCHAR(191) NULL,
    expires_at   DATETIME(6)  NULL,
    updated_at   DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (subscriber, event_type, partition_no)
);
