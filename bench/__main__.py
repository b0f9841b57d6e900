"""``python -m bench``: run every benchmark, one after the other.

``--size-mb`` and ``--runs`` go to the warm-load benchmark (bench/warm_load.py); ``--only`` picks one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bench import warm_load

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="securehub benchmarks against torch.hub")
    parser.add_argument("--only", choices=["warm_load", "child_ready"], help="run just this benchmark")
    parser.add_argument("--size-mb", type=float, default=700.0, help="warm_load: state dict size (default 700)")
    parser.add_argument("--runs", type=int, default=3, help="warm_load: timed loads per side (default 3)")
    ns = parser.parse_args(argv)
    status = 0
    if ns.only in (None, "child_ready") and (HERE / "child_ready.py").is_file():
        print("== child_ready: sandbox child start-up ==", flush=True)
        status |= subprocess.run([sys.executable, str(HERE / "child_ready.py")], check=False).returncode
    if ns.only in (None, "warm_load"):
        print("== warm_load: warm securehub.load vs torch.hub.load ==", flush=True)
        status |= warm_load.main(["--size-mb", str(ns.size_mb), "--runs", str(ns.runs)])
    return status


if __name__ == "__main__":
    raise SystemExit(main())
