"""``python -m securehub`` behaves exactly like the ``securehub`` console script."""

from securehub.cli.app import main

raise SystemExit(main())
