"""Short links and click tracking (``shortLink``, docs/short-links.md).

:mod:`.urls` finds the URLs a text may have shortened, :mod:`.shorten` rewrites a text per
recipient, :mod:`.clients` classifies who clicked, :mod:`.redirect` is the redirect service and
:mod:`.clicks` writes its clicks in batches.
"""
