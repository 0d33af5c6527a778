"""``python -m dispatcher.cli``: the ``smsdispatch`` command without its console script."""

import sys

from dispatcher.cli.main import main

sys.exit(main())
