"""smsdispatch producer side: REST API, enqueue library, routing and the message log.

Nothing in this package imports :mod:`workers`; the workers import only the contract, the
message log (``dispatcher.store``), settings and logging set-up from here.
"""

__version__ = "0.1.0"
