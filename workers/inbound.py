"""Inbound messages on the dlr lane, in plain Python: parse each raw item with the connector,
find the account owning the number it was sent to, store it (or its part, joining long
messages), apply opt-out/opt-in keywords, and create the inbound webhook.

Every step is idempotent (see :mod:`dispatcher.store.inbound`): a redelivered task counts its
items as duplicates and changes nothing. Logs never contain message bodies or sender numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Engine

from dispatcher.store.inbound import InboundStore, NewInbound, NewPart, StoredInbound
from workers.connectors.base import CallbackError, InboundPart

log = structlog.get_logger(component="inbound")

Parse = Callable[[Mapping[str, Any]], InboundPart]
PHONE_MAX = 16  # inbound_messages.phone / number
_SEPARATORS = str.maketrans("", "", " -().\u00a0")


@dataclass
class InboundReport:
    """What one batch did. Each item lands in exactly one of ``stored``, ``duplicates``,
    ``parts_waiting``, ``joined``, ``unknown_number`` and ``unreadable``; ``opted_out`` and
    ``opted_in`` count the stored messages whose keyword changed the suppression list."""

    stored: int = 0  # single-part messages stored
    duplicates: int = 0  # carrier id seen before (redelivery, carrier retry)
    parts_waiting: int = 0  # parts stored whose message is not complete (or joined elsewhere)
    joined: int = 0  # long messages completed and stored by this batch
    opted_out: int = 0
    opted_in: int = 0
    unknown_number: int = 0  # sent to a number no account owns: not stored
    unreadable: int = 0  # the connector could not read it


def canonical_phone(raw: str) -> str:
    """The sender as E.164 when that is unambiguous: separators dropped, ``00`` read as ``+``,
    and 11-15 digits without a leading 0 (international without the ``+``) get a ``+``.
    Shorter digit strings may be national numbers and are kept as they are."""
    s = raw.strip().translate(_SEPARATORS)
    if s.startswith("00") and s[2:].isdigit():
        s = "+" + s[2:]
    elif s.isdigit() and 11 <= len(s) <= 15 and not s.startswith("0"):
        s = "+" + s
    return s


def _read(parse: Parse, raw: Any) -> InboundPart | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        part = parse(raw)
    except (ValueError, TypeError, KeyError) as exc:  # CallbackError is a ValueError
        # Our own messages name the problem, never the content; others might quote it.
        reason = str(exc)[:200] if isinstance(exc, CallbackError) else type(exc).__name__
        log.warning("inbound.unreadable", reason=reason)
        return None
    phone = canonical_phone(part.phone)
    if not phone or len(phone) > PHONE_MAX or len(part.number.strip()) > PHONE_MAX:
        log.warning("inbound.unreadable", reason="from/to too long")
        return None
    if part.ref is not None and len(part.ref) > 32:
        log.warning("inbound.unreadable", reason="ref too long")
        return None
    return InboundPart(
        part.carrier_message_id,
        phone,
        part.number.strip(),
        part.text,
        part.ref,
        part.seq,
        part.total,
        part.received_at,
    )


def _count_keyword(report: InboundReport, stored: StoredInbound) -> None:
    report.opted_out += stored.opted_out
    report.opted_in += stored.opted_in


def apply_inbound(
    engine_or_store: Engine | InboundStore,
    parse: Parse,
    connection: str,
    items: Sequence[Any],
    now: float,
    received_at: float | None = None,
) -> InboundReport:
    """Apply raw inbound items posted by ``connection``'s carrier.

    ``received_at`` is when our endpoint received them (the task payload's); without it the
    carrier's time, else ``now``. Database trouble raises
    :class:`~dispatcher.store.db.StoreUnavailable` (the task retries the whole batch; what was
    already applied then counts as duplicates).
    """
    store = (
        engine_or_store
        if isinstance(engine_or_store, InboundStore)
        else InboundStore(engine_or_store)
    )
    report = InboundReport()
    owners: dict[str, tuple[int, str] | None] = {}
    for raw in items:
        part = _read(parse, raw)
        if part is None:
            report.unreadable += 1
            continue
        if part.number not in owners:
            owners[part.number] = store.account_for(part.number)
        owner = owners[part.number]
        if owner is None:
            report.unknown_number += 1
            log.warning(
                "inbound.unknown_number",
                connection=connection,
                number=part.number,
                carrier_message_id=part.carrier_message_id,
            )
            continue
        account_id, number = owner
        at = received_at or part.received_at or now
        if part.ref is None or part.total <= 1:
            msg = NewInbound(
                account_id, connection, number, part.phone, part.text, 1,
                part.carrier_message_id, at,
            )  # fmt: skip
            stored = store.store_message(msg, now)
            if stored is None:
                report.duplicates += 1
                continue
            report.stored += 1
            _count_keyword(report, stored)
            continue
        new_part = NewPart(
            connection, part.carrier_message_id, part.phone, part.number, part.ref,
            part.seq, part.total, part.text, at,
        )  # fmt: skip
        fresh = store.add_part(new_part)
        joined = store.join(new_part, account_id, number, now)
        if joined is not None:
            report.joined += 1
            _count_keyword(report, joined)
        elif fresh:
            report.parts_waiting += 1
        else:
            report.duplicates += 1
    return report
