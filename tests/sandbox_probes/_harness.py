"""Run a probe in the sandbox and collect its answer (test helper)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent.spawn import ExitInfo, SandboxChild, launch

PROBES = Path(__file__).resolve().parent


def probe_path(name: str) -> Path:
    return PROBES / f"{name}.py"


def run_action(config: SandboxConfig, action: str, *args: Any) -> tuple[dict[str, Any], SandboxChild]:
    """Run actions.py with one action; return (result meta, the finished child)."""
    with launch(config, probe_file=probe_path("actions")) as child:
        child.send("params", {"action": action, "args": list(args)})
        frame = child.recv(max_body_bytes=0)
        assert frame.type == "result", frame
        info = child.wait(10)
        assert info is not None and info.returncode == 0, (info, child.stderr_tail())
    return frame.meta, child


def run_until_exit(config: SandboxConfig, probe: str) -> tuple[ExitInfo, SandboxChild]:
    """Run a probe that sends nothing; return how it ended."""
    with launch(config, probe_file=probe_path(probe)) as child:
        info = child.wait(None)
    assert info is not None
    return info, child


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pid: int, within_s: float = 10.0) -> bool:
    """Wait up to ``within_s`` for ``pid`` to end; True when it did."""
    end = time.monotonic() + within_s
    while process_alive(pid) and time.monotonic() < end:
        time.sleep(0.02)
    return not process_alive(pid)
