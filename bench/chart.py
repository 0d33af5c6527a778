"""PNG charts of a scenario: msg/s over time per lane (carrier receive times), latency
percentiles, RSS over time. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

Series = tuple[Sequence[float], float]  # (carrier receive times, time zero of that run)


def rate_series(times: Sequence[float], t0: float, bin_s: float) -> tuple[list[float], list[float]]:
    """Messages per second in bins of ``bin_s`` seconds since ``t0``."""
    if not times:
        return [], []
    end = max(times)
    nbins = int((end - t0) / bin_s) + 1
    counts = [0] * max(1, nbins)
    for t in times:
        i = int((t - t0) / bin_s)
        if 0 <= i < nbins:
            counts[i] += 1
    return [i * bin_s for i in range(nbins)], [c / bin_s for c in counts]


def render(
    path: Path,
    title: str,
    series: Mapping[str, Series] | None = None,
    latency: Mapping[str, Mapping[str, float]] | None = None,
    hline: tuple[float, str] | None = None,
    rss: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    bin_s: float | None = None,
) -> Path:
    """Draw the panels that have data side by side; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in (series, latency, rss) if p]
    fig, axes = plt.subplots(
        1, max(1, len(panels)), figsize=(6.2 * max(1, len(panels)), 3.8), squeeze=False
    )
    ax_iter = iter(axes[0])
    if series:
        ax = next(ax_iter)
        for label, (times, t0) in series.items():
            span = (max(times) - t0) if times else 1.0
            b = bin_s or (0.25 if span < 30 else 1.0)
            xs, ys = rate_series(times, t0, b)
            ax.plot(xs, ys, label=label, linewidth=1.2, drawstyle="steps-post")
        if hline:
            ax.axhline(hline[0], color="red", linestyle="--", linewidth=0.9, label=hline[1])
        ax.set_xlabel("seconds since the first request")
        ax.set_ylabel("msg/s received by the carrier")
        ax.set_title("throughput per lane")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if latency:
        ax = next(ax_iter)
        keys = [k for k in ("p50", "p95", "p99", "max") if any(k in v for v in latency.values())]
        width = 0.8 / max(1, len(latency))
        for j, (label, figs) in enumerate(latency.items()):
            xs = [i + j * width for i in range(len(keys))]
            ys = [figs.get(k, 0.0) for k in keys]
            bars = ax.bar(xs, ys, width, label=label)
            ax.bar_label(
                bars, labels=[f"{y:.0f}" if y >= 10 else f"{y:.1f}" for y in ys], fontsize=7
            )
        ax.set_xticks([i + width * (len(latency) - 1) / 2 for i in range(len(keys))], keys)
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_title("latency percentiles")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    if rss:
        ax = next(ax_iter)
        for label, points in rss.items():
            ax.plot([p[0] for p in points], [p[1] for p in points], label=label, linewidth=1)
        if hline is None:
            ax.axhline(200, color="red", linestyle="--", linewidth=0.9, label="target 200 MB")
        ax.set_xlabel("seconds")
        ax.set_ylabel("RSS (MB)")
        ax.set_title("worker RSS per process")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
