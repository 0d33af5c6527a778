"""The baseline's producer: ``send_one.delay()`` in a loop (``python -m bench.baseline.produce``).

Prints one JSON line: ``{"t_first": <unix s before the first delay>, "t_done": ..., "count"}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from bench.messages import personalised


def main(argv: list[str] | None = None) -> int:
    """Enqueue ``--count`` tasks, one per message."""
    p = argparse.ArgumentParser(prog="python -m bench.baseline.produce")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", default="b")
    p.add_argument("--same-text", action="store_true", help="one text for all (campaign)")
    args = p.parse_args(argv)
    from bench.baseline.app import send_one

    send_one.delay("+48500000000", "warm-up", f"{args.prefix}-warmup")  # connect first
    t_first = time.time()
    for i, (phone, text) in enumerate(personalised(args.count, same_text=args.same_text)):
        send_one.delay(phone, text, f"{args.prefix}-{i}")
    t_done = time.time()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    sys.stdout.write(
        json.dumps(
            {
                "t_first": t_first,
                "t_done": t_done,
                "count": args.count,
                "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
