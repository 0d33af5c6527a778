"""The long chaos run's Markdown log, ``chaos/results/runs/<start>-seed<seed>.md``."""

from __future__ import annotations

from typing import Any


def markdown_section(doc: dict[str, Any]) -> str:
    """One run's log: figures, faults with their exact times, violations."""
    f = doc["figures"]
    carrier = doc["carrier"]
    by_lane = doc["accepted_by_lane"]
    lines = [
        f"# Long run, {doc['started_at']} (seed {doc['seed']})",
        "",
        f"Result: **{'pass' if doc['ok'] else 'FAIL'}**. Command: "
        f"`make chaos` (`python -m chaos.run --seed {doc['seed']}` repeats the schedule).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| messages accepted (priority / bulk) | {f['accepted']} "
        f"({by_lane.get('priority', 0)} / {by_lane.get('bulk', 0)}) |",
        f"| final states | {f['statuses']} |",
        f"| lost | {len(doc['examples'].get('lost', []))} of {f['accepted']} "
        f"(violations: {doc['violations'].get('lost', 0)}) |",
        f"| duplicate submits at the carrier | {f['duplicate_submits']} |",
        f"| carrier submits / unique refs | {f['carrier_submits']} / {f['carrier_unique_refs']} |",
        f"| webhook deliveries / receipts / duplicates | {f['webhook_deliveries']} / "
        f"{f['webhook_receipts']} / {f['webhook_duplicates']} |",
        f"| pending with a retry scheduled | {f['pending_retry']} |",
        f"| API answers (incl. retried 503s) | {doc['api_answers']} |",
        f"| worker kills | {doc['kills']} |",
        f"| carrier faults injected | 500s {carrier['errors_injected']}, timeouts "
        f"{carrier['timeouts_injected']}, 429s {carrier['throttled']} |",
        f"| recovery (s) | {doc['recovery_s']} |",
        f"| drain after the load (s) | {doc['drain_s']} |",
        f"| violations | {doc['violations'] or 'none'} |",
        "",
        "Fault schedule (seconds from the start of the load):",
        "",
        "```",
    ]
    for e in doc["events"]:
        if not e["event"].startswith("kill."):
            lines.append(
                f"{e['t']:>8.2f}  {e['event']}  "
                + " ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "event"))
            )
    kills = [
        f"{e['t']:.1f}:{e['event'][5:]}:{e['lane']}"
        for e in doc["events"]
        if e["event"].startswith("kill.")
    ]
    lines += ["```", "", f"Worker kills (time:what:lane): {', '.join(kills)}", ""]
    if doc["examples"]:
        lines += ["Examples of violations:", "", "```", str(doc["examples"]), "```", ""]
    if f.get("evidence"):
        lines += ["Evidence (timeline and carrier records):", "", "```"]
        lines += [f"{mid}: {ev}" for mid, ev in f["evidence"].items()]
        lines += ["```", ""]
    return "\n".join(lines)
