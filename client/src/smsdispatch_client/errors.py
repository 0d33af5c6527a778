"""One exception tree: everything the client raises on purpose is an :class:`SmsError`.

``SmsError``
 ├─ ``SmsApiError``: the API answered with an error (``status``, catalogue ``code``, ``parameter``)
 ├─ ``SmsTransportError``: no answer on any attempt (``code="unreachable"``)
 ├─ ``CredentialsError``: no usable keys in the environment or the keys file
 └─ ``WebhookVerificationError``: a webhook that is not from the server, altered or too old

Programming mistakes (an unknown send option, a naive datetime) stay ``TypeError``/``ValueError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smsdispatch_client.models import RecipientError


class SmsError(Exception):
    """Base of the client's errors: ``code`` names the error; ``status`` is the HTTP status of
    the answer (0 when there was none) and ``parameter`` the field at fault, when known."""

    status: int = 0
    parameter: str | None = None

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SmsApiError(SmsError):
    """The API refused the request (or kept failing): ``status``, ``code``, ``parameter``,
    ``value``, ``request_id`` (the answer's ``meta.uniqId``) and every element of ``errors``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        parameter: str | None = None,
        value: Any = None,
        request_id: str | None = None,
        errors: list[RecipientError] | None = None,
    ) -> None:
        super().__init__(code, message)
        self.status = status
        self.parameter = parameter
        self.value = value
        self.request_id = request_id
        self.errors = errors or []

    def __str__(self) -> str:
        where = f" ({self.parameter})" if self.parameter else ""
        return f"{self.status} {self.code}: {self.message}{where}"


class SmsTransportError(SmsError):
    """The server could not be reached (connection refused, timeouts) on every attempt."""

    def __init__(self, message: str) -> None:
        super().__init__("unreachable", message)


class CredentialsError(SmsError):
    """No credentials in the environment, or a keys file that cannot be read."""

    def __init__(self, message: str) -> None:
        super().__init__("no_credentials", message)
