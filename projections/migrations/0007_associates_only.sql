-- Associates only (issue 10): "customer" asks for herself and "system" is the service, so neither
-- is an associate. 0004's view counted the customer's own requests under associate "customer".
CREATE OR REPLACE VIEW {db}.associate_grant_totals AS
SELECT 'requested' AS role, requested_by AS associate_id, kind, currency, count() AS granted_count,
       sum(granted_cents) AS granted_cents
FROM {db}.current_decisions
WHERE outcome = 'GRANTED' AND requested_by NOT IN ('system', 'customer')
GROUP BY associate_id, kind, currency
UNION ALL
SELECT 'decided' AS role, decided_by AS associate_id, kind, currency, count() AS granted_count,
       sum(granted_cents) AS granted_cents
FROM {db}.current_decisions
WHERE outcome = 'GRANTED' AND decided_by != 'policy'
GROUP BY associate_id, kind, currency;
