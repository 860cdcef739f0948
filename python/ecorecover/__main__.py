"""``python -m ecorecover``: the command line (same as the ``ecorecover`` console script)."""

from .cli import main

raise SystemExit(main())
