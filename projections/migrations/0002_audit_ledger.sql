-- The audit-grade ledger (issue 4): every RemedyDecided r2 field, double-entry postings, and the
-- finance projections as views over them. 0001's decision_ledger is frozen and no longer written.
--
-- decisions_v2 and postings_v2 are the live tables. `remedy-ledger projections rebuild` fills
-- fresh tables created with `CREATE TABLE ... AS` these two, then swaps them in with EXCHANGE
-- TABLES: fresh tables have fresh insert-deduplication logs (FIELD_NOTES: dedup hashes survive
-- ALTER DELETE, so re-sending tokens into the same table would silently drop the rows). Views
-- name the live tables, so they read the new data the moment the exchange happens.

-- The decision ledger: every decision ever made, one row per decision_id (redeliveries collapse
-- at merge time; every read uses FINAL), with its position on the decision topic.
CREATE TABLE IF NOT EXISTS {db}.decisions_v2
(
    decision_id            String,
    request_id             String,
    customer_id            String,
    order_id               Nullable(String),
    incident_id            Nullable(String),
    kind                   LowCardinality(String),
    outcome                LowCardinality(String),
    requested_cents        Int64,
    granted_cents          Int64,
    currency               LowCardinality(String),
    reason_codes           Array(LowCardinality(String)),
    policy_version         LowCardinality(String),
    requested_by           String,
    requested_at           DateTime64(3, 'UTC'),
    decided_at             DateTime64(3, 'UTC'),
    inputs                 Map(String, Int64),
    supersedes_decision_id Nullable(String),
    decided_by             String,
    origin                 LowCardinality(String),
    incident_kind          LowCardinality(String),
    trust_tier             Nullable(String),
    household_id           Nullable(String),
    note                   Nullable(String),
    source_partition       Int32,
    source_offset          Int64
)
ENGINE = ReplacingMergeTree
ORDER BY decision_id
SETTINGS non_replicated_deduplication_window = 10000;

-- Double-entry postings: debit > 0, credit < 0, integer cents; each decision's lines sum to zero.
-- Reversals of a superseded grant are their own lines (role = 'reversal'); nothing is updated.
CREATE TABLE IF NOT EXISTS {db}.postings_v2
(
    decision_id        String,
    line               UInt16,
    request_id         String,
    customer_id        String,
    kind               LowCardinality(String),
    account            LowCardinality(String),
    amount_cents       Int64,
    currency           LowCardinality(String),
    role               LowCardinality(String),
    source_decision_id String,
    decided_at         DateTime64(3, 'UTC'),
    source_partition   Int32,
    source_offset      Int64
)
ENGINE = ReplacingMergeTree
ORDER BY (decision_id, line)
SETTINGS non_replicated_deduplication_window = 10000;

-- Every rebuild: when, how much, how long, and whether any figure changed.
CREATE TABLE IF NOT EXISTS {db}.projection_rebuilds
(
    rebuild_id     String,
    started_at     DateTime64(3, 'UTC'),
    finished_at    DateTime64(3, 'UTC'),
    decisions      UInt64,
    postings       UInt64,
    caught_up_rows UInt64,
    changed_figures UInt32
)
ENGINE = MergeTree
ORDER BY started_at;

-- Decisions decided before this migration keep counting until the next rebuild (which also
-- writes their postings; `remedy-ledger verify` reports the missing postings until then).
INSERT INTO {db}.decisions_v2
SELECT decision_id, request_id, customer_id, order_id, incident_id, kind, outcome, requested_cents,
       granted_cents, currency, reason_codes, policy_version, requested_by, requested_at, decided_at,
       inputs, NULL, 'policy', 'UNKNOWN', '', NULL, NULL, NULL, source_partition, source_offset
FROM {db}.decision_ledger FINAL;

-- The current decision of each request: every decision that no later decision supersedes.
CREATE VIEW IF NOT EXISTS {db}.current_decisions AS
SELECT *
FROM {db}.decisions_v2 FINAL
WHERE decision_id NOT IN (
    SELECT assumeNotNull(supersedes_decision_id) FROM {db}.decisions_v2 FINAL
    WHERE supersedes_decision_id IS NOT NULL
);

-- Granted remedies (count and cents) by day, customer, kind, incident kind, origin and policy version.
CREATE VIEW IF NOT EXISTS {db}.granted_totals AS
SELECT toDate(decided_at) AS day, customer_id, kind, incident_kind, origin, policy_version,
       count() AS granted_count, sum(granted_cents) AS granted_cents
FROM {db}.current_decisions
WHERE outcome = 'GRANTED'
GROUP BY day, customer_id, kind, incident_kind, origin, policy_version;

-- Granted credits only, same grain as granted_totals.
CREATE VIEW IF NOT EXISTS {db}.credit_totals AS
SELECT * FROM {db}.granted_totals WHERE kind = 'CREDIT';

-- Granted reshipments only, same grain as granted_totals.
CREATE VIEW IF NOT EXISTS {db}.reshipment_totals AS
SELECT * FROM {db}.granted_totals WHERE kind = 'RESHIP';

-- Outstanding credit per customer: credits granted minus credits reversed (from the postings).
CREATE VIEW IF NOT EXISTS {db}.customer_credit_balances AS
SELECT customer_id, currency, -sum(amount_cents) AS balance_cents
FROM {db}.postings_v2 FINAL
WHERE account = 'customer_credit_balance'
GROUP BY customer_id, currency;

-- Balance of every ledger account, per day of the decision that posted it.
CREATE VIEW IF NOT EXISTS {db}.account_balances_daily AS
SELECT toDate(decided_at) AS day, account, currency, sum(amount_cents) AS amount_cents, count() AS lines
FROM {db}.postings_v2 FINAL
GROUP BY day, account, currency;

-- Current grants per associate: who asked for them ('requested') and who decided them ('decided').
CREATE VIEW IF NOT EXISTS {db}.associate_grant_totals AS
SELECT 'requested' AS role, requested_by AS associate_id, kind, count() AS granted_count,
       sum(granted_cents) AS granted_cents
FROM {db}.current_decisions
WHERE outcome = 'GRANTED' AND requested_by != 'system'
GROUP BY associate_id, kind
UNION ALL
SELECT 'decided' AS role, decided_by AS associate_id, kind, count() AS granted_count,
       sum(granted_cents) AS granted_cents
FROM {db}.current_decisions
WHERE outcome = 'GRANTED' AND decided_by != 'policy'
GROUP BY associate_id, kind;

-- Current decisions per day, outcome and reason code.
CREATE VIEW IF NOT EXISTS {db}.decision_reasons_daily AS
SELECT toDate(decided_at) AS day, outcome, arrayJoin(reason_codes) AS reason, count() AS decisions
FROM {db}.current_decisions
GROUP BY day, outcome, reason;

-- 0001's views, now over the current decisions of the new ledger.
CREATE OR REPLACE VIEW {db}.daily_granted_totals AS
SELECT toDate(decided_at) AS day, kind, count() AS granted_count, sum(granted_cents) AS granted_cents
FROM {db}.current_decisions
WHERE outcome = 'GRANTED'
GROUP BY day, kind;

CREATE OR REPLACE VIEW {db}.daily_outcome_counts AS
SELECT toDate(decided_at) AS day, outcome, count() AS decisions
FROM {db}.current_decisions
GROUP BY day, outcome;
