"""Prices, balances and the ledger's pure rules (docs/prices.md); the tables are in
:mod:`dispatcher.store.balances` and :mod:`dispatcher.store.prices`."""
