"""smsdispatch consumer side: Celery app and thin tasks around plain-Python sending logic.

Imports from :mod:`dispatcher` are limited to the contract, the message log (``store``),
settings and logging; never the API.
"""
