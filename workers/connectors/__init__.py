"""Carrier connectors: one module per carrier protocol, behind :class:`base.Connector`."""
