-- A read-only finance role for a ClickHouse server (not needed with embedded chDB).
--
-- It can SELECT the Remedy Ledger projections (migrations 0001-0002 in projections/migrations/)
-- and nothing else: no INSERT/ALTER/DROP, no other database, no system tables beyond what every
-- user sees, no schema_migrations and no frozen 0001 decision_ledger. Views run with the
-- privileges of the reader (SQL SECURITY INVOKER, the default), so the two tables the views read
-- are granted too; they are projections themselves.
--
-- Apply as an administrator, after `remedy-ledger projections migrate`, replacing `remedy` if
-- REMEDY_CLICKHOUSE_DATABASE differs:
--   clickhouse-client --multiquery < deploy/clickhouse/finance_role.sql
-- Re-run it after a migration that adds a projection (grants name tables; GRANT is idempotent).
-- A rebuild keeps the grants: EXCHANGE TABLES swaps the data behind the same names.

CREATE ROLE IF NOT EXISTS remedy_finance;

-- readonly = 1: no writes and no changing settings, even if a grant is added by mistake later.
CREATE SETTINGS PROFILE IF NOT EXISTS remedy_finance_readonly SETTINGS readonly = 1 TO remedy_finance;

GRANT SELECT ON remedy.decisions_v2 TO remedy_finance;
GRANT SELECT ON remedy.postings_v2 TO remedy_finance;
GRANT SELECT ON remedy.current_decisions TO remedy_finance;
GRANT SELECT ON remedy.granted_totals TO remedy_finance;
GRANT SELECT ON remedy.credit_totals TO remedy_finance;
GRANT SELECT ON remedy.reshipment_totals TO remedy_finance;
GRANT SELECT ON remedy.customer_credit_balances TO remedy_finance;
GRANT SELECT ON remedy.account_balances_daily TO remedy_finance;
GRANT SELECT ON remedy.associate_grant_totals TO remedy_finance;
GRANT SELECT ON remedy.decision_reasons_daily TO remedy_finance;
GRANT SELECT ON remedy.daily_granted_totals TO remedy_finance;
GRANT SELECT ON remedy.daily_outcome_counts TO remedy_finance;
GRANT SELECT ON remedy.projection_rebuilds TO remedy_finance;

-- A person or tool then gets the role, for example:
--   CREATE USER IF NOT EXISTS finance_alice IDENTIFIED WITH sha256_password BY '...' DEFAULT ROLE remedy_finance;
--   GRANT remedy_finance TO finance_alice;
