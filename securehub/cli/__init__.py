"""The ``securehub`` command line: argparse and one handler per verb over the Python API."""

from securehub.cli.app import main

__all__ = ["main"]
