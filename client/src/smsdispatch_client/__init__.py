"""Python client of the smsdispatch SMS API: sync (:class:`SmsClient`) and asyncio
(:class:`AsyncSmsClient`), typed results, retries that never send twice, one exception tree.

    from smsdispatch_client import SmsClient

    with SmsClient("APP_KEY", "AUTHORIZATION", "http://127.0.0.1:8080") as sms:
        sent = sms.send_sms("+48111222333", "Your code is 123456", sender="ACME", priority=True)
        print(sent.ids, sms.get_status(sent.ids[0]))
        for message in sms.iter_messages(status="undelivered", sender="ACME"):
            print(message.phone_number, message.error_code)

Every error this package raises is an :class:`SmsError`: :class:`SmsApiError` (the API answered
with an error: ``status``, ``code``, ``parameter``), :class:`SmsTransportError` (no answer after
every retry), :class:`CredentialsError`, :class:`WebhookVerificationError`.

The version's ``MAJOR.MINOR`` is the REST API version the client speaks (:data:`API_VERSION`);
the last number counts releases of the client for that API.
"""

from smsdispatch_client.aio import AsyncSmsClient
from smsdispatch_client.credentials import DEFAULT_URL, credentials_from_env
from smsdispatch_client.errors import (
    CredentialsError,
    SmsApiError,
    SmsError,
    SmsTransportError,
)
from smsdispatch_client.models import Message, Page, RecipientError, SendResult
from smsdispatch_client.protocol import ListFilters
from smsdispatch_client.retry import RetryPolicy
from smsdispatch_client.sync import SmsClient
from smsdispatch_client.version import API_VERSION, __version__
from smsdispatch_client.webhooks import WebhookVerificationError
from smsdispatch_client.webhooks import verify as verify_webhook

__all__ = [
    "API_VERSION",
    "DEFAULT_URL",
    "AsyncSmsClient",
    "CredentialsError",
    "ListFilters",
    "Message",
    "Page",
    "RecipientError",
    "RetryPolicy",
    "SendResult",
    "SmsApiError",
    "SmsClient",
    "SmsError",
    "SmsTransportError",
    "WebhookVerificationError",
    "__version__",
    "credentials_from_env",
    "verify_webhook",
]
