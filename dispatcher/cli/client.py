"""Client commands of ``smsdispatch``: ``send``, ``status``, ``campaign upload``, ``campaign
pause|resume|cancel``, ``message cancel``, ``openapi``.

They talk to a running API over HTTP through the Python client (:mod:`smsdispatch_client`),
with the credentials from ``SMSDISPATCH_APP_KEY`` / ``SMSDISPATCH_AUTHORIZATION`` /
``SMSDISPATCH_URL`` or a keys file (``--keys``, the ``accounts create --write`` format;
``SMSDISPATCH_KEYS_FILE``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any
from urllib.parse import quote

from smsdispatch_client import SmsClient, SmsError, credentials_from_env

from dispatcher.cli.exits import Exit, for_client_error
from dispatcher.cli.output import emit, fail


def _client(args: argparse.Namespace, timeout: float = 10.0) -> SmsClient:
    app_key, auth, url = credentials_from_env(keys_file=args.keys)
    return SmsClient(app_key, auth, args.url or url, timeout=timeout)


def _fail(args: argparse.Namespace, exc: SmsError) -> int:
    out: dict[str, Any] = {"error": exc.code, "status": exc.status, "message": exc.message}
    if exc.parameter:
        out["parameter"] = exc.parameter
    return fail(args, out, for_client_error(exc))


def cmd_send(args: argparse.Namespace) -> int:
    """Send one text to the ``--to`` numbers; prints the message ids."""
    numbers = [n.strip() for item in args.to for n in item.split(",") if n.strip()]
    try:
        with _client(args) as client:
            result = client.send_sms(
                numbers,
                args.text,
                sender=args.sender,
                priority=args.priority or None,
                campaign=args.campaign,
                short_link=args.short_link or None,
            )
    except SmsError as exc:
        return _fail(args, exc)
    emit(
        args,
        {
            "ids": result.ids,
            "lane": result.messages[0].lane if result.messages else None,
            "rejected": [
                {"phone": e.value, "code": e.code, "reason": e.message} for e in result.errors
            ],
        },
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print a message's status."""
    try:
        with _client(args) as client:
            message = client.get_message(args.id)
    except SmsError as exc:
        return _fail(args, exc)
    emit(
        args,
        {
            "id": message.id,
            "status": message.status,
            "isFinal": message.is_final,
            "phoneNumber": message.phone_number,
            "error": message.error_code,
        },
    )
    return 0


def cmd_campaign_upload(args: argparse.Namespace) -> int:
    """Stream a CSV to the API in batches; rejected rows to a file; a summary on stdout."""
    from dispatcher.cli.csv_upload import upload_file

    name = args.name or os.path.splitext(os.path.basename(args.file))[0]
    rejected = args.rejected or os.path.splitext(args.file)[0] + ".rejected.csv"
    try:
        with _client(args) as client:
            report = upload_file(
                client,
                args.file,
                name,
                args.sender,
                args.text,
                rejected,
                args.batch,
                short_link=args.short_link,
            )
    except ValueError as exc:
        return fail(args, {"error": "invalid_csv", "message": str(exc)}, Exit.INPUT)
    except OSError as exc:  # the CSV (or the rejected-rows file) cannot be opened
        return fail(args, {"error": "unreadable_file", "message": str(exc)}, Exit.INPUT)
    except SmsError as exc:
        return _fail(args, exc)
    emit(args, {"campaign": name, **report.as_dict()})
    return 0


def cmd_campaign_control(args: argparse.Namespace) -> int:
    """Pause, resume or cancel a campaign (docs/campaigns.md); prints its state and counts."""
    path = f"/v2.1/campaigns/{quote(args.name, safe='')}/{args.campaign_command}"
    try:
        # A cancel of a large campaign moves every waiting message in one transaction.
        with _client(args, timeout=120.0) as client:
            answer = client.request("POST", path, body={})
    except SmsError as exc:
        return _fail(args, exc)
    emit(args, answer["data"][0])
    return 0


def cmd_message_cancel(args: argparse.Namespace) -> int:
    """Cancel one scheduled, queued, retrying or paused message."""
    try:
        with _client(args) as client:
            answer = client.request("POST", f"/v2.1/sms/{quote(args.id, safe='')}/cancel", body={})
    except SmsError as exc:
        return _fail(args, exc)
    emit(args, answer["data"][0])
    return 0


def cmd_openapi(_args: argparse.Namespace) -> int:
    """Print the OpenAPI document (``smsdispatch openapi > docs/openapi.json``)."""
    from dispatcher.api.openapi_export import render_openapi

    sys.stdout.write(render_openapi())
    return 0


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", metavar="FILE", help="keys file (accounts create --write format)")
    p.add_argument("--url", help="API base URL (default SMSDISPATCH_URL or :8080)")


def register(sub: Any) -> None:
    """Add the client subcommands to ``smsdispatch``'s parser."""
    s = sub.add_parser("send", help="send an SMS through the API")
    s.add_argument("--to", action="append", required=True, help="number(s); repeat or comma")
    s.add_argument("--text", required=True, help="the message")
    s.add_argument("--sender", default="Info", help="sender ID (default Info)")
    s.add_argument("--priority", action="store_true", help="use the priority lane (OTP)")
    s.add_argument("--campaign", help="campaign name (Smsdispatch-Campaign header)")
    s.add_argument(
        "--short-link", action="store_true", help="shorten and track the text's links (shortLink)"
    )
    _connection(s)
    s.set_defaults(func=cmd_send)

    st = sub.add_parser("status", help="show a message's status")
    st.add_argument("id")
    _connection(st)
    st.set_defaults(func=cmd_status)

    c = sub.add_parser("campaign", help="bulk campaigns")
    c_sub = c.add_subparsers(dest="campaign_command", required=True)
    u = c_sub.add_parser("upload", help="send a CSV (streamed, batched, resumable)")
    u.add_argument("file", help="CSV with a header; a phone column and a message column")
    u.add_argument("--name", help="campaign name (default: the file name)")
    u.add_argument("--text", help="template for every row, e.g. 'Hi {name}' (CSV columns)")
    u.add_argument("--sender", default="Info", help="sender ID (default Info)")
    u.add_argument("--rejected", metavar="FILE", help="rejected rows (default FILE.rejected.csv)")
    u.add_argument("--batch", type=int, default=10_000, help="recipients per request (≤ 10000)")
    u.add_argument(
        "--short-link",
        action="store_true",
        help="shorten and track every row's links (shortLink; click-through rate in the panel)",
    )
    _connection(u)
    u.set_defaults(func=cmd_campaign_upload)
    for action, words in (
        ("pause", "pause a campaign: its unsent messages wait (validity keeps running)"),
        ("resume", "resume a paused campaign"),
        ("cancel", "cancel a campaign: its unsent messages end cancelled (final)"),
    ):
        a = c_sub.add_parser(action, help=words)
        a.add_argument("name", help="the campaign's name (its Smsdispatch-Campaign header)")
        _connection(a)
        a.set_defaults(func=cmd_campaign_control)

    m = sub.add_parser("message", help="one message")
    m_sub = m.add_subparsers(dest="message_command", required=True)
    mc = m_sub.add_parser("cancel", help="cancel a message no worker has taken yet")
    mc.add_argument("id", help="the message id")
    _connection(mc)
    mc.set_defaults(func=cmd_message_cancel)

    sub.add_parser("openapi", help="print the OpenAPI document").set_defaults(func=cmd_openapi)
