-- The decision ledger: one row per decision, keyed by decision_id.
-- ReplacingMergeTree collapses redelivered decisions at merge time; every read uses FINAL (or
-- the views below), so a decision counts once even before merges run.
-- non_replicated_deduplication_window makes a retried insert with the same
-- insert_deduplication_token a no-op on single servers and chDB.
CREATE TABLE IF NOT EXISTS {db}.decision_ledger
(
    decision_id      String,
    request_id       String,
    customer_id      String,
    order_id         Nullable(String),
    incident_id      Nullable(String),
    kind             LowCardinality(String),
    outcome          LowCardinality(String),
    requested_cents  Int64,
    granted_cents    Int64,
    currency         LowCardinality(String),
    reason_codes     Array(LowCardinality(String)),
    policy_version   LowCardinality(String),
    requested_by     String,
    requested_at     DateTime64(3, 'UTC'),
    decided_at       DateTime64(3, 'UTC'),
    inputs           Map(String, Int64),
    source_partition Int32,
    source_offset    Int64
)
ENGINE = ReplacingMergeTree
ORDER BY decision_id
SETTINGS non_replicated_deduplication_window = 10000;

-- Daily totals of granted remedies by kind (count and cents), computed from the deduplicated
-- ledger so that a redelivered decision can never be counted twice.
CREATE VIEW IF NOT EXISTS {db}.daily_granted_totals AS
SELECT
    toDate(decided_at) AS day,
    kind,
    count() AS granted_count,
    sum(granted_cents) AS granted_cents
FROM {db}.decision_ledger FINAL
WHERE outcome = 'GRANTED'
GROUP BY day, kind;

-- Decisions per day and outcome, for the share of requests granted, denied and escalated.
CREATE VIEW IF NOT EXISTS {db}.daily_outcome_counts AS
SELECT
    toDate(decided_at) AS day,
    outcome,
    count() AS decisions
FROM {db}.decision_ledger FINAL
GROUP BY day, outcome;
