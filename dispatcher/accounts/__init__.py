"""Accounts: API key pairs, sender-name checks and per-account API limits."""
