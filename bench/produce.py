"""Our producer side of scenarios B, C, D, F: the library producer in its own process.

``python -m bench.produce --count N [--same-text] [--batch 10000] [--account bench]
[--start-at UNIX_S]`` calls
``dispatcher.intake.enqueue.Producer().send_bulk`` (store in the log, then enqueue) and prints
one JSON line:
``{"t_first": <unix s before the first call>, "t_done": ..., "count": <ids returned>}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from bench.messages import personalised


def main(argv: list[str] | None = None) -> int:
    """Produce ``--count`` messages in calls of ``--batch`` items."""
    p = argparse.ArgumentParser(prog="python -m bench.produce")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--account", default="bench")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--same-text", action="store_true")
    p.add_argument(
        "--start-at", type=float, default=0.0, help="unix time of the first call (H: B's 10 s)"
    )
    args = p.parse_args(argv)
    from dispatcher.intake.enqueue import Producer

    producer = Producer()
    producer.account(args.account)  # look-up and connections before the clock starts
    items = personalised(args.count, same_text=args.same_text, offset=args.offset)
    # Start-up (imports, connections) happens before the wait, so a busy machine does not
    # shift the first call.
    time.sleep(max(0.0, args.start_at - time.time()))
    t_first = time.time()
    ids = producer.send_bulk(args.account, sender="BENCH", items=items, batch=args.batch)
    t_done = time.time()
    producer.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    sys.stdout.write(
        json.dumps(
            {
                "t_first": t_first,
                "t_done": t_done,
                "count": len(ids),
                "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
