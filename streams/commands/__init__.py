"""The commands people type, one module per user group."""
