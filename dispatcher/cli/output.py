"""How every ``smsdispatch`` command prints: JSON for scripts, tables for people.

A command builds JSON-ready data and hands it to :func:`emit`; errors go through :func:`fail`
and long jobs report through :func:`progress`. The format is chosen once, here:

- ``--json`` / ``-o json`` (before or after the sub-command): JSON, exactly as the commands have
  always printed it, so scripts and tests keep working;
- ``-o human``: tables (and colours where the terminal has them; ``NO_COLOR`` turns them off);
- neither: tables when stdout is a terminal, JSON when it is a pipe or a file.

Tables are plain aligned columns (no library: a few lines); colours only on a terminal and never
with ``NO_COLOR``. The progress bar is tqdm's, imported only when one is drawn.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, Protocol

from dispatcher.cli.exits import Exit

FORMATS = ("json", "human")
DEST = "output_format"  # not "output": a command may have an --output FILE of its own


def add_options(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """Add ``--json`` and ``-o/--output`` to ``parser`` (every sub-command gets them; on the
    top-level parser they default to automatic, on the sub-commands they keep what came first)."""
    default: Any = None if top else argparse.SUPPRESS
    taken = parser._option_string_actions  # a command's own -o/--output/--json wins
    group = parser.add_argument_group("output")
    if "--json" not in taken:
        group.add_argument(
            "--json",
            dest=DEST,
            action="store_const",
            const="json",
            default=default,
            help="print JSON (the default when stdout is not a terminal)",
        )
    names = [n for n in ("-o", "--output") if n not in taken]
    if names:
        group.add_argument(
            *names,
            dest=DEST,
            choices=FORMATS,
            default=default,
            help="json, or human (tables; the default on a terminal)",
        )


def wants_json(args: argparse.Namespace | None) -> bool:
    """Whether to print JSON: asked for, or stdout is not a terminal."""
    chosen = getattr(args, DEST, None)
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
    style = _Style(sys.stdout)
    width = shutil.get_terminal_size().columns
    print("\n\n".join(_blocks(data, None, style, width)))


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
    style = _Style(sys.stderr)
    message = str(payload.get("message") or payload.get("error"))
    extra = [f"{k}={v}" for k, v in payload.items() if k not in ("error", "message") and v]
    if payload.get("message") and payload.get("error"):
        extra.insert(0, str(payload["error"]))
    line = f"{style('error:', RED)} {message}"
    if extra:
        line += " " + style(f"({', '.join(extra)})", DIM)
    print(line, file=sys.stderr)
    return int(code)


BOLD, DIM, RED, CYAN = "1", "2", "1;31", "36"


class _Style:
    """ANSI styles when ``stream`` is a terminal that wants them (not ``NO_COLOR``, not a
    ``dumb`` terminal), else none."""

    def __init__(self, stream: IO[str]) -> None:
        self.on = (
            stream.isatty()
            and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM", "") != "dumb"
        )

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on else text


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


def _key_values(rows: dict[str, str], title: str | None, style: _Style) -> str:
    pad = max(len(k) for k in rows)
    lines = [style(title, CYAN)] if title else []
    lines += [f"{style(k.ljust(pad), BOLD)}  {v}" for k, v in rows.items()]
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]], title: str | None, style: _Style, width: int) -> str | None:
    """Aligned columns, or ``None`` when they do not fit in ``width``."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    if sum(widths) + 2 * (len(widths) - 1) > width:
        return None
    lines = [style(title, CYAN)] if title else []
    lines.append(style("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), BOLD))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _blocks(data: Any, title: str | None, style: _Style, width: int) -> Iterator[str]:
    if _is_table(data):
        table = _table(data, title, style, width)
        if table is not None:
            yield table
            return
        for row in data:  # too wide for the terminal: one key/value block per item
            first = _cell(next(iter(row.values()), None))
            name = first if title is None else f"{title}: {first}"
            yield _key_values({str(k): _cell(v) for k, v in row.items()}, name, style)
    elif isinstance(data, dict):
        simple = {k: v for k, v in data.items() if not (_is_table(v) or isinstance(v, dict))}
        if simple:
            yield _key_values({str(k): _cell(v) for k, v in simple.items()}, title, style)
        for key, value in data.items():
            if key not in simple:
                yield from _blocks(value, key if title is None else f"{title}.{key}", style, width)
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
    """tqdm's bar, with the counters beside it."""

    def __init__(self, bar: Any, rate_of: str | None) -> None:
        self.bar, self.rate_of = bar, rate_of
        self.started = time.monotonic()

    def update(self, completed: int, **counts: int) -> None:
        elapsed = time.monotonic() - self.started
        text = "  ".join(f"{name} {n:,}" for name, n in counts.items())
        if self.rate_of and elapsed > 0:
            text += f"  {counts.get(self.rate_of, 0) / elapsed:,.0f} {self.rate_of}/s"
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.update(completed - self.bar.n)


@contextmanager
def progress(
    total: int,
    label: str,
    *,
    stream: IO[str] | None = None,
    rate_of: str | None = None,
    interval: float = 5.0,
) -> Iterator[Progress]:
    """A progress reporter on ``stream`` (stderr by default): tqdm's bar on a terminal, a
    plain line every ``interval`` seconds (and a last one) otherwise. ``rate_of`` names the
    counter whose rate is shown (e.g. ``rows``)."""
    out = sys.stderr if stream is None else stream
    if not out.isatty():
        lines = _Lines(out, total, label, rate_of, interval)
        yield lines
        lines.finish()  # the last line, when the job finished (an error says enough itself)
        return
    from tqdm import tqdm

    with tqdm(
        total=total,
        desc=label,
        file=out,
        unit="B",
        unit_scale=True,
        dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| ETA {remaining}{postfix}",
    ) as bar:
        yield _Bar(bar, rate_of)
