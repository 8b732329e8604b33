-- Erased customers (docs/privacy.md): the pseudonym each erased customer is known by, never its id.
-- The projector and a rebuild read it for every batch, so a decision of an erased customer is
-- written pseudonymized whenever it arrives; `remedy-ledger privacy erase` adds a row, then
-- rewrites the customer's existing rows. `reason` is the operator's text: it must not name the customer.
CREATE TABLE IF NOT EXISTS {db}.erased_customers
(
    pseudonym  String,
    erased_at  DateTime64(3, 'UTC'),
    reason     String
)
ENGINE = ReplacingMergeTree
ORDER BY pseudonym;
