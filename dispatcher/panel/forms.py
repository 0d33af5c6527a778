"""The message search form: what people type, turned into a :class:`SearchFilter`.

Every problem is reported against the field it came from, and the form is shown again with the
values as typed; nothing here raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from dispatcher.contract import Lane, Status
from dispatcher.sms import InvalidPhoneNumber, normalize
from dispatcher.store.panel_queries import Cursor, SearchFilter

FIELDS = (
    "phone",
    "external_id",
    "message_id",
    "sender",
    "status",
    "direction",
    "lane",
    "date_from",
    "date_to",
)
DAY_S = 86400.0
_SEPARATORS = str.maketrans("", "", " \t-./()")


@dataclass
class SearchForm:
    """The form as typed (``values``), its problems per field, and the filter it means."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    filter: SearchFilter = field(default_factory=SearchFilter)
    after: Cursor | None = None

    @property
    def active(self) -> bool:
        """Whether any filter besides the direction is set."""
        return any(v for k, v in self.values.items() if k != "direction")


def phone_to_e164(raw: str, region: str | None) -> str:
    """A number as people type it, in E.164; ``ValueError`` with the reason otherwise.

    Besides what :func:`dispatcher.sms.normalize` accepts, an international number typed without
    its ``+`` (``48111222333``) is tried with one when the national reading fails.
    """
    try:
        return normalize(raw, region)
    except InvalidPhoneNumber as exc:
        compact = raw.strip().translate(_SEPARATORS)
        if compact.isdigit() and not compact.startswith("0"):
            try:
                return normalize("+" + compact, None)
            except InvalidPhoneNumber:
                pass
        raise ValueError(exc.message) from None


def _day(raw: str, name: str, errors: dict[str, str]) -> float | None:
    if not raw:
        return None
    try:
        d = date.fromisoformat(raw)
    except ValueError:
        errors[name] = "Use a date like 2026-11-26."
        return None
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def parse_search(params: Mapping[str, str], region: str | None) -> SearchForm:
    """Validate the query string of ``/panel/messages``."""
    values = {k: str(params.get(k, "")).strip()[:128] for k in FIELDS}
    form = SearchForm(values)
    errors = form.errors
    direction = values["direction"] or "out"
    if direction not in ("out", "in"):
        errors["direction"] = "Choose outgoing or incoming."
        direction = "out"
    values["direction"] = direction
    phones: tuple[str, ...] = ()
    if values["phone"]:
        try:
            phones = (phone_to_e164(values["phone"], region),)
        except ValueError as exc:
            hint = "" if region else " Add the country code, e.g. +48."
            errors["phone"] = f"Not a phone number we can read ({exc}).{hint}"
    statuses: tuple[str, ...] = ()
    if values["status"]:
        try:
            statuses = (Status(values["status"]),)
        except ValueError:
            errors["status"] = "Choose a status from the list."
    lane = values["lane"] or None
    if lane is not None and lane not in (Lane.PRIORITY, Lane.BULK):
        errors["lane"] = "Choose priority or bulk."
        lane = None
    date_from = _day(values["date_from"], "date_from", errors)
    date_to = _day(values["date_to"], "date_to", errors)
    if date_to is not None:
        date_to += DAY_S  # the "to" day is included
    if date_from is not None and date_to is not None and date_from >= date_to:
        errors["date_to"] = "The end date is before the start date."
    if direction == "in":
        for name in ("external_id", "sender", "status", "lane"):
            if values[name]:
                errors[name] = "Applies to outgoing messages only."
    form.filter = SearchFilter(
        direction=direction,
        phones=phones,
        external_id=values["external_id"] or None,
        message_id=values["message_id"] or None,
        sender=values["sender"] or None,
        statuses=statuses,
        lane=lane,
        date_from=date_from,
        date_to=date_to,
    )
    after = str(params.get("after", ""))
    if after:
        try:
            form.after = Cursor.decode(after)
        except ValueError:
            errors["after"] = "That page link is broken; showing the first page."
    return form
