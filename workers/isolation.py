"""Applying rows of the callback inbox so that one that fails never blocks the others.

Workers apply inbox rows in batches (a task's rows, plus rows never tried that it takes
along). A batch that fails because of its data, not because the database is away, is applied
again one row at a time, and a row that still fails one item at a time
(:func:`dispatcher.store.dead_letters.split`): every good item is applied, the failing one is
counted against its own row, retried after a back-off and, after ``max_failures`` tries, set
aside as a dead letter (:mod:`dispatcher.store.dead_letters`). Infrastructure errors (database
down) propagate: the task's rows come back when their lease ends, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, TypeVar

import structlog
from sqlalchemy import Engine

from dispatcher.store import dead_letters
from dispatcher.store.db import run, transient

log = structlog.get_logger(component="inbox")
T = TypeVar("T")

# apply(ids, take_fresh) applies rows ``ids`` in its own transaction(s), raising on failure.
Apply = Callable[[Sequence[int], bool], list[T]]


@dataclass
class Isolated(Generic[T]):
    """What the rows did: the apply results, and the failures counted."""

    results: list[T] = field(default_factory=list)
    isolated: bool = False  # the batch failed and was applied row by row
    failed: int = 0  # rows whose failure was counted (tried again later)
    dead: int = 0  # rows set aside as dead letters


def apply_isolated(
    engine: Engine,
    kind: str,
    ids: Sequence[int],
    apply: Apply[T],
    now: float,
    max_failures: int,
    take_fresh: int = 0,
) -> Isolated[T]:
    """Apply ``ids`` (and up to ``take_fresh`` rows never tried) so that a failing row is
    found, counted and set aside, and every other row is applied."""
    out: Isolated[T] = Isolated()
    try:
        out.results.extend(apply(ids, take_fresh > 0))
        return out
    except Exception as exc:  # data errors are isolated below; infrastructure re-raised
        if transient(exc):
            raise
        log.warning(
            "inbox.batch_failed", kind=kind, rows=len(ids), error=dead_letters.describe(exc)
        )
    out.isolated = True
    # The rows it took along failed with it: one of them may be the cause. Apply them too.
    along = (
        run(
            engine,
            partial(dead_letters.fresh_ids, kind=kind, exclude=ids, limit=take_fresh),
            write=True,
        )
        if take_fresh
        else []
    )
    for row_id in [*ids, *along]:
        if _try(apply, [row_id], out) is None:
            continue
        for part in run(engine, partial(dead_letters.split, row_id=row_id), write=True):
            error = _try(apply, [part], out)
            if error is None:
                continue
            dead = run(
                engine,
                partial(
                    dead_letters.record_failure,
                    row_id=part,
                    error=error,
                    now=now,
                    max_failures=max_failures,
                ),
                write=True,
            )
            out.failed += 1
            out.dead += int(dead)
            log.warning(
                "inbox.dead_letter" if dead else "inbox.row_failed",
                kind=kind,
                row=part,
                error=error,
            )
    return out


def _try(apply: Apply[T], ids: list[int], out: Isolated[T]) -> str | None:
    """Apply ``ids`` alone: ``None`` when it worked, else the error's kind. Infrastructure
    errors propagate."""
    try:
        out.results.extend(apply(ids, False))
        return None
    except Exception as exc:  # classified as for the batch
        if transient(exc):
            raise
        return dead_letters.describe(exc)
