"""How every ``smsdispatch`` command prints: JSON for scripts, tables for people.

A command builds JSON-ready data and hands it to :func:`emit`; errors go through :func:`fail`
and long jobs report through :func:`progress`. The format is chosen once, here:

- ``--json`` / ``-o json`` (before or after the sub-command): JSON, exactly as the commands have
  always printed it, so scripts and tests keep working;
- ``-o human``: tables (and colours where the terminal has them; ``NO_COLOR`` turns them off);
- neither: tables when stdout is a terminal, JSON when it is a pipe or a file.

rich (tables, colours, the progress bar) is imported only when something is drawn for a person:
the JSON path and the long-running processes (``api``, ``worker``) never load it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, Protocol

from dispatcher.cli.exits import Exit

FORMATS = ("json", "human")
#: More columns than this and a list is shown as one key/value block per item.
WIDEST_TABLE = 7


def add_options(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """Add ``--json`` and ``-o/--output`` to ``parser`` (every sub-command gets them; on the
    top-level parser they default to automatic, on the sub-commands they keep what came first)."""
    default: Any = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("output")
    group.add_argument(
        "--json",
        dest="output",
        action="store_const",
        const="json",
        default=default,
        help="print JSON (the default when stdout is not a terminal)",
    )
    group.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default=default,
        help="json, or human (tables; the default on a terminal)",
    )


def wants_json(args: argparse.Namespace | None) -> bool:
    """Whether to print JSON: asked for, or stdout is not a terminal."""
    chosen = getattr(args, "output", None)
    if chosen is not None:
        return bool(chosen == "json")
    return not sys.stdout.isatty()


def emit(
    args: argparse.Namespace | None,
    data: Any,
    *,
    indent: int | None = None,
    ensure_ascii: bool = True,
) -> None:
    """Print a command's result: ``json.dumps(data, indent=…, ensure_ascii=…)`` for scripts,
    tables for a person (a dict as key/value rows, a list of dicts as a table)."""
    if wants_json(args):
        print(json.dumps(data, indent=indent, ensure_ascii=ensure_ascii))
        return
    from rich.console import Console

    console = Console(highlight=False)
    for part in _renderables(data, None):
        console.print(part)


def fail(
    args: argparse.Namespace | None,
    error: dict[str, Any] | str,
    code: int = Exit.FAILED,
) -> int:
    """Report an error on stderr (the JSON object, or one red line for a person); returns
    ``code`` so a command can ``return fail(args, …)``."""
    payload = {"error": error} if isinstance(error, str) else error
    if wants_json(args):
        print(json.dumps(payload), file=sys.stderr)
        return int(code)
    from rich.console import Console
    from rich.markup import escape

    message = str(payload.get("message") or payload.get("error"))
    extra = [f"{k}={v}" for k, v in payload.items() if k not in ("error", "message") and v]
    if payload.get("message") and payload.get("error"):
        extra.insert(0, str(payload["error"]))
    line = f"[bold red]error:[/] {escape(message)}"
    if extra:
        line += f" [dim]({escape(', '.join(extra))})[/]"
    Console(stderr=True, highlight=False).print(line)
    return int(code)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _is_table(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _renderables(data: Any, title: str | None) -> Iterator[Any]:
    from rich import box
    from rich.table import Table

    if _is_table(data):
        columns = list(dict.fromkeys(k for row in data for k in row))
        if len(columns) > WIDEST_TABLE:  # too wide for a terminal: one block per item
            for row in data:
                first = _cell(next(iter(row.values()), None))
                flat = {k: _cell(v) for k, v in row.items()}
                yield from _renderables(flat, first if title is None else f"{title}: {first}")
            return
        table = Table(*columns, title=title, box=box.SIMPLE_HEAD, title_justify="left")
        for row in data:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        yield table
    elif isinstance(data, dict):
        simple = {k: v for k, v in data.items() if not (_is_table(v) or isinstance(v, dict))}
        if simple:
            table = Table(show_header=False, box=None, title=title, title_justify="left")
            table.add_column(style="bold")
            table.add_column()
            for key, value in simple.items():
                table.add_row(str(key), _cell(value))
            yield table
        for key, value in data.items():
            if key not in simple:
                yield from _renderables(value, key if title is None else f"{title}.{key}")
    elif isinstance(data, list):
        yield "\n".join(_cell(v) for v in data) if data else "(none)"
    else:
        yield _cell(data)


class Progress(Protocol):
    """What a long job reports: units done so far (of the total) and counters to show."""

    def update(self, completed: int, **counts: int) -> None:
        """Report ``completed`` units done and the current ``counts`` (rows, accepted, …)."""


class _Lines:
    """Plain progress lines, one every ``interval`` seconds and one at the end: a log or a CI
    job gets a readable record instead of a carriage-return animation."""

    def __init__(
        self, stream: IO[str], total: int, label: str, rate_of: str | None, interval: float
    ) -> None:
        self.stream, self.total, self.label = stream, total, label
        self.rate_of, self.interval = rate_of, interval
        self.started = time.monotonic()
        self.last = self.started
        self.completed = 0
        self.counts: dict[str, int] = {}

    def update(self, completed: int, **counts: int) -> None:
        self.completed, self.counts = completed, counts
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line(now)

    def finish(self) -> None:
        self._line(time.monotonic())

    def _line(self, now: float) -> None:
        elapsed = now - self.started
        done = min(self.completed, self.total)
        pct = 100.0 * done / self.total if self.total else 100.0
        eta = elapsed * (self.total - done) / done if done else 0.0
        counted = self.counts.get(self.rate_of, done) if self.rate_of else done
        rate = counted / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.label}: {pct:5.1f}%"]
        parts += [f"{name} {n:,}" for name, n in self.counts.items()]
        parts += [f"{rate:,.0f} {self.rate_of or 'units'}/s", f"ETA {eta:,.0f} s"]
        self.stream.write("  ".join(parts) + "\n")
        self.stream.flush()


class _Bar:
    """rich's bar, with the counters beside it."""

    def __init__(self, bar: Any, task: Any, rate_of: str | None) -> None:
        self.bar, self.task, self.rate_of = bar, task, rate_of
        self.started = time.monotonic()

    def update(self, completed: int, **counts: int) -> None:
        elapsed = time.monotonic() - self.started
        text = "  ".join(f"{name} {n:,}" for name, n in counts.items())
        if self.rate_of and elapsed > 0:
            text += f"  {counts.get(self.rate_of, 0) / elapsed:,.0f} {self.rate_of}/s"
        self.bar.update(self.task, completed=completed, counts=text)


@contextmanager
def progress(
    total: int,
    label: str,
    *,
    stream: IO[str] | None = None,
    rate_of: str | None = None,
    interval: float = 5.0,
) -> Iterator[Progress]:
    """A progress reporter on ``stream`` (stderr by default): rich's bar on a terminal, a
    plain line every ``interval`` seconds (and a last one) otherwise. ``rate_of`` names the
    counter whose rate is shown (e.g. ``rows``)."""
    out = sys.stderr if stream is None else stream
    if not out.isatty():
        lines = _Lines(out, total, label, rate_of, interval)
        try:
            yield lines
        finally:
            lines.finish()
        return
    from rich.console import Console
    from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[counts]}"),
    )
    with RichProgress(*columns, console=Console(file=out)) as bar:
        yield _Bar(bar, bar.add_task(label, total=total, counts=""), rate_of)
