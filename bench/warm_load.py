"""Former warm-load benchmark; now one case of ``python -m bench`` (bench/compare.py).

``python -m bench.warm_load [--size-mb 700] [--runs 3] [--profile PREFIX]`` measures the linear
model only, prints the tables (warm and cold loads, peak RSS, digest throughput) and writes no doc.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench import compare


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.warm_load", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=700.0, help="state dict size (default 700)")
    parser.add_argument("--runs", type=int, default=3, help="timed loads per side (default 3)")
    parser.add_argument("--profile", type=Path, metavar="PREFIX", help="cProfile the last warm securehub load")
    ns = parser.parse_args(args)
    opts = compare.Options(ns.runs, ns.runs, ns.profile)
    compare.run([ns.size_mb], ["linear"], opts, None, shlex.join(["python", "-m", "bench.warm_load", *args]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
