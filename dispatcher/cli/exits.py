"""The exit codes of every ``smsdispatch`` command, in one place (docs/clients.md lists them).

A script tells the failures apart without parsing messages: a usage error is a bug in the
script, an input error is the data's fault, a refusal is the API saying no (retrying the same
request will not help), an unreachable API is worth retrying later.
"""

from __future__ import annotations

from enum import IntEnum

from smsdispatch_client import SmsApiError, SmsError, SmsTransportError


class Exit(IntEnum):
    """What a command's exit status means."""

    OK = 0
    #: The command could not do what was asked (no account of that name, a name already taken).
    FAILED = 1
    #: The command line is wrong (argparse's own code: unknown option, missing argument).
    USAGE = 2
    # 3 is left out: it is uvicorn's (and so `smsdispatch api`'s) "could not start" code.
    #: The input is invalid: a file that cannot be read, a CSV without a message column, an
    #: invalid connections file, no credentials.
    INPUT = 4
    #: The API answered with a refusal (4xx: invalid sender, wrong keys, rate limited).
    API_REFUSED = 5
    #: The API could not be reached (connection refused, time-out) or kept failing (5xx after
    #: the client's retries): try again later.
    API_UNREACHABLE = 6


def for_client_error(exc: SmsError) -> Exit:
    """The exit code for an error raised by :mod:`smsdispatch_client`."""
    if isinstance(exc, SmsTransportError):
        return Exit.API_UNREACHABLE
    if isinstance(exc, SmsApiError):
        return Exit.API_UNREACHABLE if exc.status >= 500 else Exit.API_REFUSED
    return Exit.INPUT  # no credentials, a keys file that cannot be read
