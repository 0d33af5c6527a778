"""Server-rendered SVG charts for the panel: stacked bars, lines and horizontal bars.

Plain SVG markup with ``fill``/``stroke`` attributes (no inline style, no script, no external
font or asset), so the pages keep their strict Content-Security-Policy and the screenshots
read the same as the browser. Every label is escaped. Colours are the panel's status tones.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

COLOURS = {
    "delivered": "#16a34a",
    "in progress": "#6366f1",
    "failed": "#dc2626",
    "cancelled": "#9ca3af",
    "priority": "#7c3aed",
    "bulk": "#0ea5e9",
    "p50": "#16a34a",
    "p90": "#d97706",
    "p99": "#dc2626",
    "past the carrier": "#6366f1",
    "final": "#16a34a",
}
INK = "#1c2230"
MUTED = "#5a6272"
GRID = "#e3e6ec"
W, H = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 40


def nice_max(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        top = step * magnitude
        if top >= value:
            return float(top)
    return float(10 * magnitude)


def _fmt(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _frame(title: str, y_max: float, y_label: str, percent: bool = False) -> list[str]:
    plot_h = H - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
        f'class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i in range(5):
        y = TOP + plot_h - plot_h * i / 4
        value = y_max * i / 4
        label = f"{value * 100:.0f}%" if percent else _fmt(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{MUTED}">{label}</text>'
        )
    parts.append(
        f'<text x="12" y="{TOP + plot_h / 2:.0f}" font-size="11" fill="{MUTED}" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.0f})" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    return parts


def _x_labels(labels: Sequence[str], every: int) -> list[str]:
    plot_w = W - LEFT - RIGHT
    n = max(1, len(labels))
    out = []
    for i, label in enumerate(labels):
        if i % every == 0:
            x = LEFT + plot_w * (i + 0.5) / n
            out.append(
                f'<text x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" font-size="11" '
                f'fill="{MUTED}">{escape(label)}</text>'
            )
    return out


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    x = LEFT
    for name in names:
        out.append(
            f'<rect x="{x}" y="{H - 14}" width="10" height="10" rx="2" '
            f'fill="{COLOURS.get(name, MUTED)}"/><text x="{x + 14}" y="{H - 5}" font-size="11" '
            f'fill="{INK}">{escape(name)}</text>'
        )
        x += 20 + 7 * len(name) + 14
    return out


def stacked_bars(
    title: str, labels: Sequence[str], series: dict[str, Sequence[int]], y_label: str = "messages"
) -> Markup:
    """One bar per label, its segments the series (in order, bottom up)."""
    n = len(labels)
    totals = [sum(s[i] for s in series.values()) for i in range(n)]
    y_max = nice_max(max(totals, default=0))
    parts = _frame(title, y_max, y_label)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / max(1, n)
    bar = max(1.0, slot * 0.72)
    for i in range(n):
        x = LEFT + slot * i + (slot - bar) / 2
        base = float(TOP + plot_h)
        for name, values in series.items():
            h = plot_h * values[i] / y_max
            if h <= 0:
                continue
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS.get(name, MUTED)}"><title>{escape(labels[i])}: '
                f"{values[i]} {escape(name)}</title></rect>"
            )
    parts += _x_labels(labels, max(1, n // 8))
    parts += _legend(list(series))
    parts.append("</svg>")
    return Markup("".join(parts))


def lines(
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    y_label: str,
    percent: bool = False,
    y_max: float | None = None,
) -> Markup:
    """One polyline per series; ``None`` values leave a gap."""
    n = len(labels)
    values = [v for s in series.values() for v in s if v is not None]
    top = y_max if y_max is not None else nice_max(max(values, default=0))
    parts = _frame(title, top, y_label, percent)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    for name, points in series.items():
        colour = COLOURS.get(name, INK)
        run: list[str] = []
        for i, v in enumerate(points):
            if v is None:
                if len(run) > 1:
                    parts.append(_polyline(run, colour))
                run = []
                continue
            x = LEFT + plot_w * (i + 0.5) / max(1, n)
            y = TOP + plot_h - plot_h * min(v, top) / top
            run.append(f"{x:.1f},{y:.1f}")
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
        if len(run) > 1:
            parts.append(_polyline(run, colour))
    parts += _x_labels(labels, max(1, n // 8))
    parts += _legend(list(series))
    parts.append("</svg>")
    return Markup("".join(parts))


def _polyline(points: list[str], colour: str) -> str:
    return (
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
        f'stroke-width="2" stroke-linejoin="round"/>'
    )


def hbars(title: str, items: Sequence[tuple[str, int]], colour: str = "#dc2626") -> Markup:
    """Horizontal bars, one per ``(label, count)``, longest first as given."""
    row = 26
    height = max(1, len(items)) * row + 16
    label_w = 170
    width = W - label_w - 60
    top = nice_max(max((n for _, n in items), default=0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" role="img" '
        f'class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, n) in enumerate(items):
        y = 8 + i * row
        w = width * n / top
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12" '
            f'fill="{INK}">{escape(label[:28])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="16" rx="3" '
            f'fill="{colour}"/><text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12" '
            f'fill="{MUTED}">{n}</text>'
        )
    if not items:
        parts.append(
            f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="12" fill="{MUTED}">'
            "nothing in this period</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
