"""Benchmark: warm ``securehub.load`` (locked, result cache) against ``torch.hub.load``.

Same generated hub repo, same weights, same run. A model of ``--size-mb`` (default ~700 MB:
``nn.Sequential`` of ``Linear(4096, 4096)`` layers, fp32) is generated in a temp dir; its
``hubconf.py`` fetches the weights (a ``.pth``) with ``torch.hub.load_state_dict_from_url``
from a loopback :class:`~tests._servers.ArtifactServer`. The repo is served by the real
:class:`~tests._servers.GitServer` for securehub and used as a local directory by torch.hub.

* torch.hub: ``torch.hub.load(<dir>, "model", source="local")`` with a warm torch.hub cache
  (``torch.hub.set_dir``; one untimed load downloads the weights first).
* securehub: ``securehub lock -e model``, one cold load (timed, reported, fills the caches),
  then warm loads.

Every timed load runs in a fresh subprocess, so peak RSS is per process: after ``import torch``
the child resets its peak-RSS mark (``/proc/self/clear_refs``, so the transient peak of importing
torch does not hide the load's) and records ``VmRSS``; after the load it reads the peak
(``VmHWM``, what ``ru_maxrss`` reports). Peak minus baseline is divided by the state-dict size.
The securehub child's timing includes ``import securehub``.

Targets (issue 4): warm securehub time <= 0.5x torch.hub's; securehub peak RSS delta <= 1.2x the
state-dict size. Not a test: ``python -m bench.warm_load [--size-mb 700] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REPO = "bench/model"
SPEC = f"{REPO}:v1"

HUBCONF = '''dependencies = ["torch"]
import torch
from torch import nn

URL = {url!r}
LAYERS = {layers}
WIDTH = {width}


def model(pretrained=True):
    """A stack of Linear layers; weights from URL."""
    m = nn.Sequential(*[nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS)])
    if pretrained:
        m.load_state_dict(torch.hub.load_state_dict_from_url(URL, progress=False))
    return m
'''

# Runs in a fresh interpreter; prints one JSON line. argv: side, target, hub dir.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    import torch

    def status(field):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))

    side, target, hubdir = sys.argv[1:4]
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak (VmHWM) so import torch's transient peak does not hide the load's
    base = status("VmRSS")
    import os
    prof = None
    if os.environ.get("BENCH_PROFILE") and side == "securehub":
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    if side == "torchhub":
        torch.hub.set_dir(hubdir)
        m = torch.hub.load(target, "model", source="local", verbose=False)
    else:
        import securehub
        m = securehub.load(target, "model", verbose=False)
    t1 = time.perf_counter()
    peak = status("VmHWM")
    if prof is not None:
        prof.disable()
        prof.dump_stats(os.environ["BENCH_PROFILE"])
    w = m[0].weight
    print(json.dumps({"seconds": t1 - t0, "rss_kib": peak - base,
                      "check": float(w[0, :16].double().sum()) + float(m[-1].bias.double().sum())}))
    """
)


@dataclass(frozen=True)
class Sample:
    seconds: float
    rss_bytes: int
    check: float


def _child(side: str, target: str, hubdir: Path, env: dict[str, str], cwd: Path, profile: str | None = None) -> Sample:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, side, target, str(hubdir)],
        env={**env, "BENCH_PROFILE": profile} if profile else env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{side} child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return Sample(doc["seconds"], int(doc["rss_kib"]) * 1024, doc["check"])


def _shape(size_mb: float) -> tuple[int, int]:
    width = 4096 if size_mb >= 128 else 1024
    per_layer = (width * width + width) * 4
    return max(1, round(size_mb * 2**20 / per_layer)), width


def _weights(layers: int, width: int) -> tuple[bytes, int]:
    import torch

    gen = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}
    for i in range(layers):
        state[f"{i}.weight"] = torch.empty(width, width).uniform_(-0.02, 0.02, generator=gen)
        state[f"{i}.bias"] = torch.empty(width).uniform_(-0.02, 0.02, generator=gen)
    size = sum(t.numel() * t.element_size() for t in state.values())
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue(), size


def _fmt_row(name: str, samples: list[Sample], size: int) -> str:
    secs = [s.seconds for s in samples]
    rss = max(s.rss_bytes for s in samples)
    return (
        f"{name:<28} {statistics.median(secs):>9.3f} {min(secs):>8.3f} {max(secs):>8.3f} "
        f"{rss / 2**20:>10.0f} {rss / size:>9.2f}x"
    )


def run(size_mb: float, runs: int, profile: str | None = None) -> dict[str, Any]:
    """Set everything up, measure, print the table; return the figures."""
    sys.path.insert(0, str(ROOT))
    from tests._servers import ArtifactServer, GitServer, RepoFactory

    layers, width = _shape(size_mb)
    with tempfile.TemporaryDirectory(prefix="securehub-bench-") as tmp_name:
        tmp = Path(tmp_name)
        t = time.perf_counter()
        data, state_bytes = _weights(layers, width)
        took = time.perf_counter() - t
        print(f"model: {layers} x Linear({width}, {width}) fp32, state {state_bytes / 2**20:.0f} MiB ({took:.1f} s)")
        git_server = GitServer(tmp / "git")
        artifacts = ArtifactServer()
        git_server.start()
        artifacts.start()
        try:
            url = artifacts.put(f"/weights/model-{hashlib.sha256(data).hexdigest()[:10]}.pth", data)
            del data
            hubconf = HUBCONF.format(url=url, layers=layers, width=width)
            RepoFactory(git_server).make_repo(REPO, {"hubconf.py": hubconf}).tag("v1")
            local = tmp / "local-repo"
            local.mkdir()
            (local / "hubconf.py").write_text(hubconf)
            work = tmp / "work"
            work.mkdir()
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(tmp / "home"),
                "LANG": "C.UTF-8",
                "PYTHONPATH": str(ROOT),
                "SECUREHUB_DIR": str(tmp / "securehub"),
                "SECUREHUB_GITHUB_URL": git_server.base_url,
                "SECUREHUB_AUDIT_LOG": str(tmp / "audit.jsonl"),
            }
            torch_dir = tmp / "torchhub"

            print("torch.hub: warming its cache ...", flush=True)
            _child("torchhub", str(local), torch_dir, env, work)
            print("securehub: lock -e model ...", flush=True)
            t = time.perf_counter()
            lock = subprocess.run(
                [sys.executable, "-m", "securehub", "lock", SPEC, "-e", "model"],
                env=env,
                cwd=work,
                capture_output=True,
                text=True,
                check=False,
            )
            if lock.returncode != 0:
                raise SystemExit(f"securehub lock failed:\n{lock.stderr[-4000:]}")
            lock_s = time.perf_counter() - t
            print("securehub: cold load ...", flush=True)
            cold = _child("securehub", SPEC, torch_dir, env, work)

            hub: list[Sample] = []
            sec: list[Sample] = []
            for i in range(runs):  # interleaved, so background load affects both sides alike
                print(f"run {i + 1}/{runs} ...", flush=True)
                hub.append(_child("torchhub", str(local), torch_dir, env, work))
                sec.append(_child("securehub", SPEC, torch_dir, env, work, profile if i == runs - 1 else None))
        finally:
            artifacts.stop()
            git_server.stop()

    checks = {round(s.check, 6) for s in [*hub, *sec, cold]}
    if len(checks) != 1:
        raise SystemExit(f"the two sides loaded different weights: fingerprints {sorted(checks)}")
    ratio = statistics.median(s.seconds for s in sec) / statistics.median(s.seconds for s in hub)
    sec_rss = max(s.rss_bytes for s in sec) / state_bytes
    hub_rss = max(s.rss_bytes for s in hub) / state_bytes
    print()
    print(f"{'':<28} {'median s':>9} {'min s':>8} {'max s':>8} {'peak MiB':>10} {'RSS/state':>10}")
    print(_fmt_row("torch.hub.load (warm)", hub, state_bytes))
    print(_fmt_row("securehub.load (warm, hit)", sec, state_bytes))
    print(_fmt_row("securehub.load (cold, once)", [cold], state_bytes))
    print(f"securehub lock -e model: {lock_s:.1f} s")
    print()
    print(f"time ratio securehub/torch.hub: {ratio:.3f} (target <= 0.5: {'PASS' if ratio <= 0.5 else 'FAIL'})")
    print(f"securehub peak RSS / state dict: {sec_rss:.2f}x (target <= 1.2x: {'PASS' if sec_rss <= 1.2 else 'FAIL'})")
    print(f"torch.hub peak RSS / state dict: {hub_rss:.2f}x")
    return {"time_ratio": ratio, "securehub_rss": sec_rss, "torchhub_rss": hub_rss, "state_bytes": state_bytes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.warm_load", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=700.0, help="state dict size (default 700)")
    parser.add_argument("--runs", type=int, default=3, help="timed loads per side (default 3)")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the last warm securehub load into FILE")
    ns = parser.parse_args(argv)
    run(ns.size_mb, ns.runs, ns.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
