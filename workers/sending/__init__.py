"""Sending a chunk: the plain-Python sender and what it leans on (progress in the log, tokens,
retries, circuit breakers, reconciling crashed claims)."""
