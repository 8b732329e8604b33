"""Remedy Ledger stream processing: the pure decision core and the Faust shell around it."""
