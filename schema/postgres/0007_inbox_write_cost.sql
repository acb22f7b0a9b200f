-- Cheaper writes to ey_inbox, which every received event crosses twice
-- (the store's insert, the `done` update).
--
-- Every new row version gets an entry in each index whose predicate it
-- matches (marking a row `done` changes its status, an indexed column, so it
-- is never a heap-only update). Before, both writes added five entries.
-- Now:
-- * claims and retries (always by subscriber and event type) use an index
--   of unfinished rows only;
-- * the rows an operator looks for by status (`retrying`, `dead`) have a
--   small index of their own;
-- * the retention purge uses a small index of `done` rows.
-- The store's insert and the `done` update each add three entries (primary
-- key, event id, and one of these).
DROP INDEX IF EXISTS ey_inbox_status_due_idx;
DROP INDEX IF EXISTS ey_inbox_type_status_idx;
DROP INDEX IF EXISTS ey_inbox_claim_idx;
-- (Predicates list the statuses rather than `status <> 'done'`: PostgreSQL
-- proves `status = 'received'` implies an IN list, not an inequality.)
CREATE INDEX ey_inbox_claim_idx ON ey_inbox (subscriber, event_type, status, next_attempt_at)
    WHERE status IN ('received', 'retrying', 'stored', 'dead');
CREATE INDEX IF NOT EXISTS ey_inbox_attention_idx ON ey_inbox (status, event_type, id)
    WHERE status IN ('retrying', 'dead');
CREATE INDEX IF NOT EXISTS ey_inbox_done_idx ON ey_inbox (processed_at)
    WHERE status = 'done';
