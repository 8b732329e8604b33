-- Money in its currency (issue 10): every view that sums cents groups by currency too, so no
-- figure ever adds two currencies. 0002's views summed granted_cents across currencies; they are
-- replaced here with `currency` as a grouping column (same names, one more column).

-- Granted remedies (count and cents) by day, customer, kind, incident kind, origin, policy version and currency.
CREATE OR REPLACE VIEW {db}.granted_totals AS
SELECT toDate(decided_at) AS day, customer_id, kind, incident_kind, origin, policy_version, currency,
       count() AS granted_count, sum(granted_cents) AS granted_cents
FROM {db}.current_decisions
WHERE outcome = 'GRANTED'
GROUP BY day, customer_id, kind, incident_kind, origin, policy_version, currency;

-- Granted credits only, same grain as granted_totals (recreated so the column list includes currency).
CREATE OR REPLACE VIEW {db}.credit_totals AS
SELECT * FROM {db}.granted_totals WHERE kind = 'CREDIT';

-- Granted reshipments only, same grain as granted_totals.
CREATE OR REPLACE VIEW {db}.reshipment_totals AS
SELECT * FROM {db}.granted_totals WHERE kind = 'RESHIP';

-- Current grants per associate and currency: who asked for them ('requested') and who decided them ('decided').
CREATE OR REPLACE VIEW {db}.associate_grant_totals AS
SELECT 'requested' AS role, requested_by AS associate_id, kind, currency, count() AS granted_count,
       sum(granted_cents) AS granted_cents
FROM {db}.current_decisions
WHERE outcome = 'GRANTED' AND requested_by != 'system'
GROUP BY associate_id, kind, currency
UNION ALL
SELECT 'decided' AS role, decided_by AS associate_id, kind, currency, count() AS granted_count,
       sum(granted_cents) AS granted_cents
FROM {db}.current_decisions
WHERE outcome = 'GRANTED' AND decided_by != 'policy'
GROUP BY associate_id, kind, currency;

-- 0001's name: granted count and cents per day, kind and currency.
CREATE OR REPLACE VIEW {db}.daily_granted_totals AS
SELECT toDate(decided_at) AS day, kind, currency, count() AS granted_count, sum(granted_cents) AS granted_cents
FROM {db}.current_decisions
WHERE outcome = 'GRANTED'
GROUP BY day, kind, currency;
