"""Intake: a send request becomes stored messages and published chunk tasks (API and library)."""
