"""``python -m bench``: securehub against torch.hub (bench/compare.py), or the sandbox start-up benchmark.

Without ``--only``, runs the comparison (warm and cold loads, peak RSS, digest
throughput, for conv / linear / transformer models) and writes its tables into
docs/performance.md; every option of ``python -m bench.compare`` is accepted.
``--only child_ready`` runs bench/child_ready.py instead.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from bench import compare

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description="securehub benchmarks against torch.hub")
    parser.add_argument("--only", choices=["compare", "child_ready"], default="compare", help="which benchmark")
    compare.add_arguments(parser)
    ns = parser.parse_args(args)
    if ns.only == "child_ready":
        print("== child_ready: sandbox child start-up ==", flush=True)
        return subprocess.run([sys.executable, str(HERE / "child_ready.py")], check=False).returncode
    return compare.run_from_args(ns, shlex.join(["python", "-m", "bench", *args]))


if __name__ == "__main__":
    raise SystemExit(main())
