"""Usage: messages, parts and amounts per account, UTC day, destination country and connection.

One ``GROUP BY`` over the log's ``(account_id, created_at)`` index, by a short prefix of the
number (``+`` and four digits: enough to tell a country, +1's area codes included); the
prefixes are then folded into countries here, a few hundred look-ups instead of one per
message. ``amount`` is what was charged, ``refunded`` what came back, ``carrier_cost`` what
the carrier bills for the parts it took at the connection's configured cost (docs/prices.md).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from sqlalchemy import Connection, and_, func, select, text

from dispatcher.billing.money import by_numeric, format_minor
from dispatcher.store.schema import messages

DAY_S = 86_400
PREFIX_CHARS = 5


@lru_cache(maxsize=4096)
def country_of(prefix: str) -> str:
    """The ISO country of a number starting with ``prefix`` (``+4850``), or ``ZZ``."""
    digits = prefix.lstrip("+")
    for n in (1, 2, 3):
        code = int(digits[:n]) if digits[:n].isdigit() else 0
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
        if not regions:
            continue
        if len(regions) == 1:
            return regions[0] if regions[0] != "001" else "ZZ"
        # A shared calling code: a made-up number of the right length tells the region.
        try:
            sample = phonenumbers.parse("+" + (digits + "2000000000")[:11])
            return phonenumbers.region_code_for_number(sample) or regions[0]
        except phonenumbers.NumberParseException:
            return regions[0]
    return "ZZ"


@dataclass(frozen=True)
class UsageRow:
    """One line of the usage report."""

    account: str
    day: str  # YYYY-MM-DD, UTC
    country: str
    connection: str  # "" for messages no connection took
    currency: int
    messages: int
    parts: int
    amount: int  # minor units charged (or priced, for an account without a balance)
    refunded: int  # minor units given back
    carrier_cost: int | None = None  # parts × the connection's configured cost, same currency

    @property
    def margin(self) -> int | None:
        """What is left of the net amount after the carrier's cost (None: cost unknown)."""
        if self.carrier_cost is None:
            return None
        return self.amount - self.refunded - self.carrier_cost


def usage(
    conn: Connection,
    date_from: float,
    date_to: float,
    account_id: int | None = None,
    costs: Mapping[str, tuple[int, int]] | None = None,
) -> list[UsageRow]:
    """Usage of messages created in ``[date_from, date_to)``, of one account or of all.

    ``costs``: connection name → (cost per part, currency), from the connections file; rows of
    a connection with a cost in the row's currency get ``carrier_cost`` (and a margin)."""
    where = "m.created_at >= :f AND m.created_at < :t"
    params: dict[str, object] = {"f": date_from, "t": date_to}
    if account_id is not None:
        where += " AND m.account_id = :a"
        params["a"] = account_id
    day = (
        "CAST(FLOOR(m.created_at / 86400) AS BIGINT)"
        if conn.dialect.name == "postgresql"
        else "CAST(m.created_at / 86400 AS INTEGER)"
    )
    rows = conn.execute(
        text(
            f"SELECT a.name, {day} AS day, substr(m.phone, 1, {PREFIX_CHARS}) AS prefix, "
            "COALESCE(m.connection, '') AS connection, m.currency, count(*), sum(m.parts), "
            "sum(m.price), sum(CASE WHEN m.refunded_at IS NOT NULL THEN m.price ELSE 0 END), "
            "sum(CASE WHEN m.sent_at IS NOT NULL THEN m.parts ELSE 0 END) "
            f"FROM messages m JOIN accounts a ON a.id = m.account_id WHERE {where} "
            "GROUP BY a.name, day, prefix, connection, m.currency"
        ),
        params,
    )
    folded: dict[tuple[str, int, str, str, int], list[int]] = {}
    for name, d, prefix, connection, cur, n, parts, amount, refunded, carried in rows:
        key = (str(name), int(d), country_of(str(prefix)), str(connection), int(cur))
        acc = folded.setdefault(key, [0, 0, 0, 0, 0])
        acc[0] += int(n)
        acc[1] += int(parts or 0)
        acc[2] += int(amount or 0)
        acc[3] += int(refunded or 0)
        acc[4] += int(carried or 0)
    out = []
    for key, (n, parts, amount, refunded, carried) in sorted(folded.items()):
        name, d, country, connection, cur = key
        # The carrier bills the parts it took (sent_at set), in its own currency.
        cost = (costs or {}).get(connection)
        carrier = cost[0] * carried if cost is not None and cost[1] == cur else None
        out.append(
            UsageRow(
                name, _iso_day(d), country, connection, cur, n, parts, amount, refunded, carrier
            )
        )
    return out


def _iso_day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * DAY_S))


CSV_HEADER = (
    "account",
    "day",
    "country",
    "connection",
    "messages",
    "parts",
    "amount",
    "refunded",
    "net",
    "carrier_cost",
    "margin",
    "currency",
)


def _cell(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def usage_csv(rows: Iterable[UsageRow]) -> str:
    """The report as CSV, amounts in major units with the ISO currency code."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in rows:
        cur = by_numeric(r.currency)
        w.writerow(
            (
                _cell(r.account),
                r.day,
                r.country,
                r.connection,
                r.messages,
                r.parts,
                format_minor(r.amount, r.currency),
                format_minor(r.refunded, r.currency),
                format_minor(r.amount - r.refunded, r.currency),
                "" if r.carrier_cost is None else format_minor(r.carrier_cost, r.currency),
                "" if r.margin is None else format_minor(r.margin, r.currency),
                cur.alpha if cur else "",
            )
        )
    return buf.getvalue()


@dataclass(frozen=True)
class Cost:
    """What a set of messages cost: charged (or priced), refunded, in one currency."""

    amount: int
    refunded: int
    currency: int

    @property
    def net(self) -> int:
        """Charged less refunded."""
        return self.amount - self.refunded


def campaign_cost(conn: Connection, account_id: int, campaign: str) -> Cost:
    """The cost of a panel campaign (the requests sent with one ``Smsdispatch-Campaign``)."""
    row = conn.execute(
        text(
            "SELECT COALESCE(sum(m.price), 0), "
            "COALESCE(sum(CASE WHEN m.refunded_at IS NOT NULL THEN m.price ELSE 0 END), 0), "
            "COALESCE(max(m.currency), 0) FROM messages m JOIN submissions s "
            "ON s.id = m.submission_id WHERE s.account_id = :a AND s.campaign = :c "
            "AND m.account_id = :a"
        ),
        {"a": account_id, "c": campaign},
    ).one()
    return Cost(int(row[0]), int(row[1]), int(row[2]))


def messages_created(conn: Connection, account_id: int, since: float, until: float) -> int:
    """How many messages the account stored in ``[since, until)`` (its daily cap's count)."""
    m = messages.c
    return int(
        conn.execute(
            select(func.count())
            .select_from(messages)
            .where(and_(m.account_id == account_id, m.created_at >= since, m.created_at < until))
        ).scalar_one()
    )
