"""Customer webhooks, the parts both sides share: secrets, signing, verification, URL safety,
and the payloads (see ``docs/webhooks.md``).

:mod:`dispatcher.webhooks.verify` is the public helper for receivers: standard library only,
so it can also be copied into a customer's project on its own.
"""
