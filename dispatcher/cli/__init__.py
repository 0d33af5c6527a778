"""The ``smsdispatch`` command: one module per topic; :mod:`dispatcher.cli.main` is the entry."""
