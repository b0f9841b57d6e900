"""Benchmark: sandbox child start-up cost.

Time from ``launch()`` to "ready + torch imported" inside the confined child,
versus a bare ``python -I -c "import torch"``. Prints medians and the ratio
(target <= 1.15x). Not a test: run ``python bench/child_ready.py [N]``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent.spawn import launch

PROBE = Path(__file__).resolve().parents[1] / "tests" / "sandbox_probes" / "torch_op.py"


_BARE = "import sys, torch; float((torch.arange(4.0) * 2).sum()); sys.stdout.write('x'); sys.stdout.flush()"


def _bare() -> float:
    """Same work, unconfined: time until the child says torch is imported and the op ran.

    Measured at the same point as the sandbox (not at process exit: torch's
    interpreter teardown would add ~0.3 s to the bare side only).
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-I", "-c", _BARE], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.read(1) == b"x"
    elapsed = time.perf_counter() - t0
    proc.wait()
    return elapsed


def _sandboxed() -> tuple[float, float]:
    t0 = time.perf_counter()
    with launch(SandboxConfig(timeout_s=120), probe_file=PROBE) as child:
        ready = time.perf_counter() - t0
        frame = child.recv()
        total = time.perf_counter() - t0
        assert frame.meta["value"] == 12.0
    return ready, total


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    _bare()  # warm the page cache
    _sandboxed()
    bare, ready, total = [], [], []
    for _ in range(n):
        bare.append(_bare())
        r, t = _sandboxed()
        ready.append(r)
        total.append(t)
    mb, mr, mt = statistics.median(bare), statistics.median(ready), statistics.median(total)
    print(f"runs: {n} each")
    print(f"python -I -c 'import torch' + op      median {mb * 1000:8.1f} ms")
    print(f"sandbox launch -> ready               median {mr * 1000:8.1f} ms")
    print(f"sandbox launch -> ready + torch + op  median {mt * 1000:8.1f} ms")
    print(f"ratio (sandbox total / bare)          {mt / mb:.3f}x  (target <= 1.15x)")


if __name__ == "__main__":
    main()
