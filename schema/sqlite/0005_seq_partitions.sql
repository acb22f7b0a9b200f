-- Scale-out of sequenced streams by producer partitioning (issue 6).
-- How many partitions a sequenced receive row is split into: with more
-- than 1, messages are spread by producer id over `<queue>.p0` …
-- `<queue>.p<N-1>` through a consistent-hash exchange, and the instances of
-- the subscriber share the partitions through the leases below.
ALTER TABLE ey_receive_config ADD COLUMN partitions INTEGER NOT NULL DEFAULT 1;
-- The live instances of a subscriber serving a partitioned event type: each
-- renews its row on every heartbeat; a row past `expires_at` is a dead
-- instance. The fair share of an instance is ceil(partitions / live rows).
CREATE TABLE IF NOT EXISTS ey_seq_member (
    subscriber  TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (subscriber, event_type, instance_id)
);
-- One row per partition (0 … partitions-1): who consumes it, until when.
-- `partition_no` = -1 is the lease of the inspection pass of the type.
CREATE TABLE IF NOT EXISTS ey_seq_partition_lease (
    subscriber   TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    partition_no INTEGER NOT NULL,
    owner        TEXT,
    expires_at   TEXT,
    updated_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (subscriber, event_type, partition_no)
);
