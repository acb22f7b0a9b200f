-- Cheaper `done` updates of ey_inbox, which every received event gets once.
--
-- Marking a row `done` changes its status, an indexed column, so it is not a
-- heap-only update: the new row version gets an entry in every index whose
-- predicate it matches. Finished rows are only ever looked up by the
-- retention purge, so the lookup indexes (claims, retries, status) now hold
-- unfinished rows only, and one small index serves the purge. A `done`
-- update then writes three index entries (primary key, event id, purge)
-- instead of five.
DROP INDEX IF EXISTS ey_inbox_status_due_idx;
CREATE INDEX ey_inbox_status_due_idx ON ey_inbox (status, next_attempt_at)
    WHERE status <> 'done';
DROP INDEX IF EXISTS ey_inbox_type_status_idx;
CREATE INDEX ey_inbox_type_status_idx ON ey_inbox (event_type, status, id)
    WHERE status <> 'done';
DROP INDEX IF EXISTS ey_inbox_claim_idx;
CREATE INDEX ey_inbox_claim_idx ON ey_inbox (subscriber, event_type, status, next_attempt_at)
    WHERE status <> 'done';
CREATE INDEX IF NOT EXISTS ey_inbox_done_idx ON ey_inbox (processed_at)
    WHERE status = 'done';
