"""Remedy Ledger projections: decision events as ClickHouse rows, migrations, and finance queries."""
