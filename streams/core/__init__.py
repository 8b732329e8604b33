"""The pure decision core: decisions, policy, scopes and inbound checks. No I/O imports."""
