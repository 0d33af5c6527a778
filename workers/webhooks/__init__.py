"""Customer webhooks on their own lane: claim, sign, POST, classify, record (plain Python in
``deliver.py``; aiohttp only in ``http.py``; per-process resources in ``runtime.py``)."""
