"""Why a webhook POST got no HTTP answer: aiohttp's errors are translated into these in
``http.py`` (the only module that knows aiohttp)."""

from __future__ import annotations

from workers.errors import DispatchError


class WebhookError(DispatchError):
    """A webhook request failed before any HTTP answer; ``code`` is ours (stable, short)."""

    code = "webhook_error"
    retryable = True

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookTimeout(WebhookError):
    """No answer within ``webhook_timeout_s`` (connect, send or read)."""

    code = "timeout"


class WebhookConnectError(WebhookError):
    """DNS failure, connection refused or reset, TLS failure, a broken answer."""

    code = "connect_error"


class WebhookRefused(WebhookError):
    """The URL is not allowed (scheme, credentials, or a private/metadata address): not called."""

    code = "url_refused"
    retryable = False
