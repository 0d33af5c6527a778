"""deliver_sm into the existing report and inbound paths, committed before it is answered.

Receipts and MO parts become items of the carrier callback inbox in the generic form the dlr
lane already reads (``{"id", "stat", "err", "done_at"}`` and ``{"id", "from", "to", "text",
"udh"}``, :mod:`workers.connectors.callbacks`), exactly as if the carrier had posted them to
``/carrier/{connection}/…``: same row, same wake-up task, same lease after which the
scheduler publishes a row whose wake-up was lost. :meth:`Deliveries.handle` returns only after
the commit, so the session answers ``deliver_sm_resp`` only then; a failed commit raises and
the session answers a temporary error, so the SMSC delivers again.

Concurrent deliveries share one transaction (those arriving while a commit runs go in the
next one), like the HTTP callback endpoint. Duplicates change nothing downstream: a report
for a message already final is ignored by the report path, and an MO part's id is a digest of
what the SMSC sent (:func:`workers.smpp.receipts.inbound_from`).

Receipts come per part of a long message; the message's carrier id is its first part's. A
receipt for another part is mapped to the first part's id when it says the part failed (the
message failed), and dropped when it says delivered (the first part's receipt says that).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from dispatcher.contract import CallbackKind, Status
from workers.connectors.base import CallbackError
from workers.smpp import pdu as p
from workers.smpp.constants import ESME_ROK, ESME_RX_P_APPN
from workers.smpp.receipts import inbound_from, is_receipt, report_from

log = structlog.get_logger(component="smpp")

Commit = Callable[[str, str, list[dict[str, Any]]], None]
"""``(kind, connection, items)``: store the items durably (sync, runs in a thread)."""
PartLookup = Callable[[list[str]], Awaitable[dict[str, str]]]
"""Message ids → the first part's id of each that is another part of a long message (first
parts and unknown ids are left out): one look-up for a batch of receipts."""


@dataclass
class _Batch:
    items: list[dict[str, Any]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)  # receipts: the status each reports


class Deliveries:
    """The deliver_sm handler of one connection's binds."""

    def __init__(
        self,
        connection: str,
        commit: Commit,
        first_parts: PartLookup,
        on_item: Callable[[str], None] | None = None,
    ) -> None:
        self.connection = connection
        self.commit = commit
        self.first_parts = first_parts
        self.on_item = on_item  # metrics: called with "receipt" or "inbound"
        self._pending: dict[str, _Batch] = {}
        self._running: set[str] = set()

    async def handle(self, pdu: p.DeliverSm) -> int:
        """Commit one deliver_sm; the status for its deliver_sm_resp."""
        try:
            kind, item, status = self._item(pdu)
        except CallbackError as exc:
            # Unreadable: a temporary error would only make the SMSC send it again forever.
            log.warning("smpp.deliver_unreadable", connection=self.connection, reason=str(exc))
            return ESME_RX_P_APPN
        await self._store(kind, item, status)
        if self.on_item is not None:
            self.on_item("receipt" if kind == CallbackKind.REPORT else "inbound")
        return ESME_ROK

    def _item(self, pdu: p.DeliverSm) -> tuple[str, dict[str, Any], str]:
        if is_receipt(pdu):
            r = report_from(pdu)
            message_id = r.carrier_message_id or ""
            item: dict[str, Any] = {"id": message_id, "stat": r.carrier_status, "err": r.error_code}
            if r.done_at is not None:
                item["done_at"] = r.done_at
            return CallbackKind.REPORT, item, r.status
        part = inbound_from(pdu)
        inbound: dict[str, Any] = {
            "id": part.carrier_message_id,
            "from": part.phone,
            "to": part.number,
            "text": part.text.replace("\x00", ""),
            "received_at": part.received_at,
        }
        if part.total > 1:
            inbound["udh"] = {"ref": part.ref, "total": part.total, "seq": part.seq}
        return CallbackKind.INBOUND, inbound, ""

    async def _store(self, kind: str, item: dict[str, Any], status: str) -> None:
        batch = self._pending.setdefault(kind, _Batch())
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch.items.append(item)
        batch.waiters.append(fut)
        batch.statuses.append(status)
        if kind not in self._running:
            self._running.add(kind)
            asyncio.get_running_loop().create_task(self._drain(kind))
        await fut

    async def _drain(self, kind: str) -> None:
        try:
            while self._pending.get(kind) and self._pending[kind].waiters:
                batch = self._pending.pop(kind)
                error: BaseException | None = None
                started = time.monotonic()
                try:
                    items = batch.items
                    if kind == CallbackKind.REPORT:
                        items = await self._first_parts(batch)
                    if items:
                        await asyncio.to_thread(self.commit, kind, self.connection, items)
                except Exception as exc:  # answered as a temporary error: the SMSC retries
                    log.warning(
                        "smpp.deliver_commit_failed",
                        connection=self.connection,
                        error=type(exc).__name__,
                    )
                    error = exc
                for w in batch.waiters:
                    if not w.done():
                        if error is None:
                            w.set_result(None)
                        else:
                            w.set_exception(error)
                log.debug(
                    "smpp.deliveries_committed",
                    connection=self.connection,
                    kind=kind,
                    items=len(batch.items),
                    ms=round((time.monotonic() - started) * 1000, 1),
                )
        finally:
            self._running.discard(kind)

    async def _first_parts(self, batch: _Batch) -> list[dict[str, Any]]:
        """The batch's receipts named by their message's id (the first part's), in one
        look-up; a delivered receipt of another part is dropped (the first part's tells it)."""
        firsts = await self.first_parts([i["id"] for i in batch.items])
        if not firsts:
            return batch.items
        items: list[dict[str, Any]] = []
        for item, status in zip(batch.items, batch.statuses, strict=True):
            first = firsts.get(item["id"])
            if first is not None:
                if status in ("", Status.DELIVERED):
                    continue
                item = {**item, "id": first}
            items.append(item)
        return items
