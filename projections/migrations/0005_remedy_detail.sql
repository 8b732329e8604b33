-- Remedy detail (issue 10, RemedyDecided r6): what a decision covers and where it goes. items_json
-- is the decision's `items` as JSON ([{"sku":...,"quantity":...,"unit_price_cents":...}], NULL:
-- the whole order); shipping_address_id is the destination (the order's address unless the
-- request named one), NULL for kinds that ship nothing. Older decisions read as NULL.
ALTER TABLE {db}.decisions_v2
    ADD COLUMN IF NOT EXISTS items_json Nullable(String),
    ADD COLUMN IF NOT EXISTS shipping_address_id Nullable(String),
    ADD COLUMN IF NOT EXISTS shipping_speed Nullable(String),
    ADD COLUMN IF NOT EXISTS gift_message Nullable(String);
-- current_decisions (SELECT *) is recreated by 0006, after its columns too.
