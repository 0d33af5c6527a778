"""Customer webhooks, the parts both sides share: secrets, signing, verification, URL safety,
and the payloads (see ``docs/webhooks.md``).

Signing uses :mod:`smsdispatch_client.webhooks`, the verifier that customers install with the
Python client, so what the server signs is what a receiver checks.
"""
