"""``python -m workers.smpp [--max-binds N]``: the session holder (``smsdispatch smpp``)."""

from __future__ import annotations

import argparse
import sys

from dispatcher.config import Settings
from dispatcher.ops.logs import configure
from workers.smpp.process import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="smsdispatch smpp", description=__doc__)
    parser.add_argument(
        "--max-binds",
        type=int,
        default=None,
        help="binds per connection this process takes at most (default: all it can get)",
    )
    args = parser.parse_args()
    settings = Settings.from_env()
    configure(settings.log_level, settings.log_format)
    sys.exit(main(args.max_binds))
