"""Messages in the log for tests of what happens to them next (reports, the callback inbox)."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

from dispatcher.accounts.account import create_account
from dispatcher.config import Settings
from dispatcher.intake.submit import SendRequest, prepare
from dispatcher.store.messages import write_submissions


def queued_messages(engine: Engine, n: int) -> list[str]:
    """Ids of ``n`` new bulk messages of a new account, committed as the API would (queued)."""
    account, _ = create_account(engine, f"r{time.monotonic_ns()}", sender_policy="open")
    numbers = [f"+4811122{i:04d}" for i in range(n)]
    prepared = prepare(
        SendRequest("ACME", "hi", numbers), account, Settings.from_env({}), time.time()
    )
    with engine.begin() as conn:
        write_submissions(conn, [prepared.submission], {"bulk": 500})
    return [m.id for m in prepared.submission.messages]


def set_status(engine: Engine, mid: str, status: str, carrier_id: str | None = None) -> None:
    """Put a message in ``status`` on the ``default`` connection with ``carrier_id``."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE messages SET status=:s, connection='default', "
                "carrier_message_id=:c WHERE id=:i"
            ),
            {"s": status, "c": carrier_id, "i": mid},
        )


def status_of(engine: Engine, mid: str) -> str:
    """A message's status in the log."""
    with engine.connect() as conn:
        return str(
            conn.execute(text("SELECT status FROM messages WHERE id=:i"), {"i": mid}).scalar_one()
        )
