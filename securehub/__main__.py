"""``python -m securehub`` behaves exactly like the ``securehub`` console script."""

from securehub.cli import main

raise SystemExit(main())
