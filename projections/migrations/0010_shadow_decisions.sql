-- Decisions a shadow policy made (streams/runtime/shadow.py): beside the ledger, never in it.
-- Nothing reads this table into postings or totals; `policy shadow report` compares it with the
-- ledger's decisions of the same requests. ReplacingMergeTree by decision_id: a worker that
-- restarts a shadow makes the same decisions again, counted once with FINAL.
CREATE TABLE IF NOT EXISTS {db}.shadow_decisions
(
    decision_id      String,
    request_id       String,
    customer_id      String,
    kind             LowCardinality(String),
    outcome          LowCardinality(String),
    requested_cents  Int64,
    granted_cents    Int64,
    currency         LowCardinality(String),
    reason_codes     Array(LowCardinality(String)),
    policy_version   LowCardinality(String),
    requested_at     DateTime64(3, 'UTC'),
    decided_at       DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY decision_id;
