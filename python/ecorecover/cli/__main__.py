"""``python -m ecorecover.cli``: the command line (same as the ``ecorecover`` console script)."""

import sys

from . import main

sys.exit(main())
