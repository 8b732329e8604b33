-- Posting dates and closed periods (issue 10; projections/periods.py, docs/projections.md).
-- Every ledger line gets the time the ledger learned it (posted_at: the decision record's Kafka
-- timestamp on the decision topic), its posting date, and the LATE_POSTING mark when it was dated
-- inside a month already closed at its place in the log. Decisions projected before this
-- migration post on their event date.
ALTER TABLE {db}.decisions_v2
    ADD COLUMN IF NOT EXISTS posted_at DateTime64(3, 'UTC') DEFAULT decided_at,
    ADD COLUMN IF NOT EXISTS posting_date Date DEFAULT toDate(decided_at),
    ADD COLUMN IF NOT EXISTS posting_mark LowCardinality(String) DEFAULT '';

-- The months finance closed: one row per month (a PeriodClosed event, also kept on the
-- finance-periods topic), with the decision-topic offsets its figures end at, per partition.
CREATE TABLE IF NOT EXISTS {db}.closed_periods
(
    period           String,
    closed_by        String,
    closed_at        DateTime64(3, 'UTC'),
    decision_offsets Map(String, Int64)
)
ENGINE = ReplacingMergeTree
ORDER BY period;

-- 0002's view, recreated so that `SELECT *` includes the new columns (0005's and these).
CREATE OR REPLACE VIEW {db}.current_decisions AS
SELECT *
FROM {db}.decisions_v2 FINAL
WHERE decision_id NOT IN (
    SELECT assumeNotNull(supersedes_decision_id) FROM {db}.decisions_v2 FINAL
    WHERE supersedes_decision_id IS NOT NULL
);
