"""The fork server (securehub/sandbox/parent/forkserver.py) end to end, with the real sandbox.

From its second launch on, a process forks its sandbox children from one server
that has torch imported. Every fork must be confined exactly like a fresh
interpreter, carry nothing of another call, never reach the server, and die with
the parent; a server that dies must fail its calls cleanly and be replaced.
The escape suite (tests/attacks/test_sandbox_escape.py) runs every attempt both
ways.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from securehub.errors import SandboxResource, SandboxUnavailable, SecureHubError
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent import forkserver
from securehub.sandbox.parent.process import ForkedProcess, SpawnedProcess
from securehub.sandbox.parent.spawn import check_available, launch
from tests._sandbox_helpers import write_probe
from tests.sandbox_probes._harness import probe_path, run_action, wait_dead

pytestmark = pytest.mark.skipif(
    check_available(SandboxConfig()).level != "full",
    reason="full sandbox isolation is not available on this machine",
)

CFG = SandboxConfig(timeout_s=60)
_CHILD_ENV = {"PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "PYTHONHASHSEED", "XDG_CACHE_HOME", "TORCH_HOME"}


@pytest.fixture(name="own_server")
def own_server_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process state of its own: the next launch is the process's first, no server yet."""
    monkeypatch.delenv("SECUREHUB_FORK_SERVER", raising=False)
    monkeypatch.setattr(forkserver, "_server", None)
    monkeypatch.setattr(forkserver, "_launches", 0)
    yield
    server = forkserver._server
    if server is not None:
        server.close()


def _run_script(script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter with the fork server on (whatever this process's setting)."""
    env = {k: v for k, v in os.environ.items() if k != "SECUREHUB_FORK_SERVER"}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, check=True, env=env
    )


def _ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid in /proc/{pid}/status")


@pytest.mark.usefixtures("own_server")
def test_the_first_launch_is_a_fresh_interpreter_and_later_ones_are_forks_confined_the_same() -> None:
    statuses = []
    kinds = []
    for _ in range(3):
        result, child = run_action(CFG, "proc_status")
        kinds.append(type(child._process))
        assert child.isolation is not None and child.isolation.level == "full", child.problems
        assert child.isolation.pidns and child.isolation.uid and child.isolation.netns
        statuses.append({k: result["detail"][k] for k in ("NoNewPrivs", "Seccomp", "CapEff", "CapPrm", "CapBnd")})
    assert kinds == [SpawnedProcess, ForkedProcess, ForkedProcess]
    assert statuses[0] == statuses[1] == statuses[2]
    assert statuses[0]["NoNewPrivs"] == "1" and statuses[0]["Seccomp"] == "2"
    server = forkserver._server
    assert server is not None and server.alive()
    # A fork is the server's child, in a session of its own; the server never ran a call.
    with launch(CFG, probe_file=probe_path("sleep_forever")) as child:
        assert isinstance(child._process, ForkedProcess)
        assert _ppid(child.pid) == server.pid
        assert os.getsid(child.pid) == child.pid
        assert child.init_pid is not None and _ppid(child.init_pid) == child.pid


@pytest.mark.usefixtures("own_server")
def test_a_fork_holds_only_its_channel_and_its_output_files() -> None:
    run_action(CFG, "open_fds")  # the process's first launch: a fresh interpreter
    result, child = run_action(CFG, "open_fds")
    assert isinstance(child._process, ForkedProcess)
    fds = result["detail"]
    # listdir's own fd is closed by the time it is read back ("error 2": ENOENT)
    targets = {fd: t for fd, t in fds.items() if t != f"error {errno.ENOENT}"}
    assert len(targets) == len(fds) - 1, fds
    assert targets["0"] == "/dev/null"
    assert targets["1"] == str(child.run_dir / "stdout")
    assert targets["2"] == str(child.run_dir / "stderr")
    rest = {fd: t for fd, t in targets.items() if fd not in ("0", "1", "2")}
    assert len(rest) == 1 and next(iter(rest.values())).startswith("socket:"), fds  # the channel, nothing else


@pytest.mark.usefixtures("own_server")
def test_a_fork_gets_its_own_calls_environment_and_none_of_the_parents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECUREHUB_GITHUB_TOKEN", "ghp_forkserver_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-forkserver-secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    run_action(CFG, "environment")
    homes = []
    for _ in range(2):
        result, child = run_action(CFG, "environment")
        assert isinstance(child._process, ForkedProcess)
        env = result["detail"]
        assert set(env) == _CHILD_ENV, env
        assert env["HOME"] == str(child.tmpdir / "home")
        assert env["TMPDIR"] == str(child.tmpdir / "tmp")
        homes.append(env["HOME"])
    assert homes[0] != homes[1]


_MEMORY_SCAN = """
import ctypes, json, struct
from securehub.sandbox.wire.protocol import recv_frame, send_frame

needle = bytes.fromhex(recv_frame(channel, max_body_bytes=0).meta["hex"])
needle_at = id(needle) + bytes.__basicsize__ - 1
buf = bytearray(1 << 20)
buf_at = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
hits = []
regions = 0
with open("/proc/self/maps") as fh:
    maps = fh.read().splitlines()
fd = os.open("/proc/self/mem", os.O_RDONLY)
for line in maps:
    span, perms = line.split()[:2]
    if not perms.startswith("rw"):
        continue
    start, end = (int(x, 16) for x in span.split("-"))
    regions += 1
    pos = start
    while pos < end:
        n = min(len(buf), end - pos)
        try:
            got = os.preadv(fd, [memoryview(buf)[:n]], pos)
        except OSError:
            break
        view = bytes(buf[:got])
        i = view.find(needle)
        while i >= 0:
            at = pos + i
            if at != needle_at and not (buf_at <= at < buf_at + len(buf)):
                hits.append(at)
            i = view.find(needle, i + 1)
        del view
        pos += max(got, 1) if got else n
send_frame(channel, "result", {"hits": len(hits), "regions": regions})
"""


@pytest.mark.usefixtures("own_server")
def test_no_fork_carries_another_calls_plan_in_its_memory(tmp_path: Path) -> None:
    # The server never reads a plan (each fork reads its own from its channel), so nothing of
    # one call -- here a read path naming a repo -- is in the memory a later fork inherits.
    marker = f"securehub-plan-marker-{uuid.uuid4().hex}".encode()
    marked = tmp_path / marker.decode()
    marked.mkdir()
    probe = write_probe(tmp_path, "import os\n", _MEMORY_SCAN)
    run_action(CFG, "proc_status")  # the first launch: a fresh interpreter; the server comes next

    def scan(read_paths: tuple[Path, ...]) -> dict[str, int]:
        with launch(SandboxConfig(timeout_s=120, read_paths=read_paths), probe_file=probe) as child:
            assert isinstance(child._process, ForkedProcess)
            child.send("params", {"hex": marker.hex()})
            meta = dict(child.recv(max_body_bytes=0).meta)
            info = child.wait(30)
            assert info is not None and info.returncode == 0, child.stderr_tail()
        return meta

    # Positive control: a fork finds the marker when its own plan names it (the scan works).
    own = scan((marked,))
    assert own["regions"] > 0 and own["hits"] >= 1, own
    # A later fork of the same server, whose call does not name it, must not find it.
    other = tmp_path / "other"
    other.mkdir()
    later = scan((other,))
    assert later["regions"] > 0 and later["hits"] == 0, later


@pytest.mark.usefixtures("own_server")
def test_a_fork_cannot_signal_trace_or_read_the_server() -> None:
    run_action(CFG, "ids")
    result, child = run_action(CFG, "ids")
    assert isinstance(child._process, ForkedProcess)
    server = forkserver._server
    assert server is not None
    pid = server.pid
    killed, _ = run_action(CFG, "kill", pid, int(signal.SIGKILL))
    assert killed["ok"] is False and killed["errno"] in (errno.ESRCH, errno.EPERM), killed
    mem, _ = run_action(CFG, "read_file", f"/proc/{pid}/environ")
    assert mem["ok"] is False and mem["errno"] in (errno.EACCES, errno.EPERM, errno.ENOENT), mem
    pidfd, _ = run_action(CFG, "raw_syscall_args", 434, pid, 0)  # pidfd_open(server, 0)
    assert pidfd["ok"] is False, pidfd
    assert server.alive() and forkserver._server is server
    again, child = run_action(CFG, "ids")
    assert isinstance(child._process, ForkedProcess) and again["ok"] is True


@pytest.mark.usefixtures("own_server")
def test_a_dead_server_ends_its_calls_as_killed_and_the_next_launch_starts_another() -> None:
    run_action(CFG, "ids")
    with launch(CFG, probe_file=probe_path("sleep_forever")) as child:
        server = forkserver._server
        assert server is not None and isinstance(child._process, ForkedProcess)
        first_server = server.pid
        os.kill(first_server, signal.SIGKILL)
        info = child.wait(15)
        assert info is not None, "the fork outlived its server"
        assert info.signal == signal.SIGKILL and not info.killed and not info.timed_out
        err = child.error_for_exit(info)
        assert isinstance(err, SandboxResource) and err.code == "sandbox-resource"
        assert child.worker_pid is not None and wait_dead(child.worker_pid)
    result, child = run_action(CFG, "ids")
    assert isinstance(child._process, ForkedProcess)
    assert result["ok"] is True and child.isolation is not None and child.isolation.level == "full"
    assert forkserver._server is not None and forkserver._server.pid != first_server


def test_the_server_and_its_forks_die_with_the_parent(tmp_path: Path) -> None:
    script = (
        "import os\n"
        "from pathlib import Path\n"
        "from securehub.sandbox.config import SandboxConfig\n"
        "from securehub.sandbox.parent import forkserver\n"
        "from securehub.sandbox.parent.spawn import launch\n"
        f"cfg = SandboxConfig(timeout_s=120, tmp_parent=Path({str(tmp_path)!r}))\n"
        f"probe = Path({str(probe_path('sleep_forever'))!r})\n"
        "launch(cfg, probe_file=probe).close()\n"
        "c = launch(cfg, probe_file=probe)\n"
        "print(forkserver._server.pid, c.pid, c.worker_pid, type(c._process).__name__, flush=True)\n"
        "os._exit(0)\n"
    )
    server, fork, worker, kind = _run_script(script, timeout=120).stdout.split()
    assert kind == "ForkedProcess"
    for pid in (int(server), int(fork), int(worker)):
        assert wait_dead(pid), f"process {pid} outlived the parent"


def test_fork_server_off_starts_every_child_as_a_fresh_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forkserver, "_launches", 5)
    monkeypatch.setenv("SECUREHUB_FORK_SERVER", "0")
    _, child = run_action(CFG, "ids")
    assert isinstance(child._process, SpawnedProcess)
    monkeypatch.delenv("SECUREHUB_FORK_SERVER")
    _, child = run_action(SandboxConfig(timeout_s=60, fork_server=False), "ids")
    assert isinstance(child._process, SpawnedProcess)


@pytest.mark.usefixtures("own_server")
def test_a_server_that_cannot_start_is_sandbox_unavailable_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = SandboxConfig(timeout_s=60, tmp_parent=tmp_path)
    run_action(cfg, "ids")  # the first launch: a fresh interpreter
    monkeypatch.setattr(forkserver, "PRELOAD", (*forkserver.PRELOAD, "securehub_no_such_module_for_tests"))
    with pytest.raises(SandboxUnavailable) as info:
        run_action(cfg, "ids")
    assert info.value.code == "sandbox-unavailable"
    assert "fork server did not start" in info.value.message and "SECUREHUB_FORK_SERVER=0" in info.value.message
    assert "securehub_no_such_module_for_tests" in info.value.message  # the server's own error, quoted
    assert list(tmp_path.iterdir()) == []  # no run directory: no child was started
    assert forkserver._server is None
    monkeypatch.setattr(forkserver, "PRELOAD", forkserver.PRELOAD[:-1])
    result, child = run_action(cfg, "ids")
    assert isinstance(child._process, ForkedProcess) and result["ok"] is True


def test_a_fork_of_the_parent_starts_its_own_server_and_leaves_the_parents_alone(tmp_path: Path) -> None:
    # multiprocessing's "fork" start method copies the parent with its server handle; the copy must
    # not use (or keep open) the parent's control socket.
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from securehub.sandbox.config import SandboxConfig\n"
        "from securehub.sandbox.parent import forkserver\n"
        "from securehub.sandbox.parent.spawn import launch\n"
        f"cfg = SandboxConfig(timeout_s=120, tmp_parent=Path({str(tmp_path)!r}))\n"
        f"probe = Path({str(probe_path('early_exit'))!r})\n"
        "def run():\n"
        "    with launch(cfg, probe_file=probe) as c:\n"
        "        assert c.isolation.level == 'full', c.problems\n"
        "        c.wait(30)\n"
        "        return type(c._process).__name__\n"
        "run(); run()\n"
        "parent_server = forkserver._server.pid\n"
        "ctrl = forkserver._server._ctrl.fileno()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        "        closed = not os.path.exists(f'/proc/self/fd/{ctrl}') or forkserver._server is None\n"
        "        kinds = [run(), run()]\n"
        "        print('child', closed, forkserver._server.pid != parent_server, kinds, flush=True)\n"
        "    finally:\n"
        "        os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print('parent', forkserver._server.pid == parent_server, run(), flush=True)\n"
    )
    out = _run_script(script, timeout=240)
    lines = out.stdout.splitlines()
    # The copy counts the parent's launches: its first launch already starts (its own) server.
    assert lines == [
        "child True True ['ForkedProcess', 'ForkedProcess']",
        "parent True ForkedProcess",
    ], (lines, out.stderr[-3000:])


@pytest.mark.usefixtures("own_server")
def test_export_modules_are_imported_by_the_server_only_once_a_call_may_export(tmp_path: Path) -> None:
    probe = write_probe(
        tmp_path,
        "import sys\n",
        """
        from securehub.sandbox.wire.protocol import send_frame
        send_frame(channel, "result", {"dynamo": "torch._dynamo" in sys.modules})
        """,
    )

    def dynamo_preloaded(warm: bool) -> bool:
        with launch(CFG, probe_file=probe, warm_export=warm) as child:
            assert isinstance(child._process, ForkedProcess) or forkserver._launches == 1
            loaded = bool(child.recv(max_body_bytes=0).meta["dynamo"])
            child.wait(30)
        return loaded

    assert dynamo_preloaded(False) is False  # the process's first launch: a fresh interpreter
    assert dynamo_preloaded(False) is False  # a fork of a server no call asked to warm
    assert dynamo_preloaded(True) is True  # the server imported torch.export's modules first
    assert dynamo_preloaded(False) is True  # and keeps them for every later fork


def _server_children(pid: int) -> list[str]:
    return [c for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


@pytest.mark.usefixtures("own_server")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGKILL, "sandbox-resource"), (signal.SIGTERM, "sandbox-protocol")])
def test_a_fork_that_dies_before_reading_its_plan_fails_like_an_early_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int, code: str
) -> None:
    cfg = SandboxConfig(timeout_s=60, tmp_parent=tmp_path)
    run_action(cfg, "ids")  # the first launch: a fresh interpreter; the server comes next
    real_fork = forkserver.ForkServer.fork
    killed: list[int] = []

    def fork_then_kill(self: forkserver.ForkServer, *args: int, **kw: bool) -> int:
        pid = real_fork(self, *args, **kw)
        os.kill(pid, sig)  # before the parent has even written the plan
        killed.append(pid)
        return pid

    monkeypatch.setattr(forkserver.ForkServer, "fork", fork_then_kill)
    with pytest.raises(SecureHubError) as info:
        launch(cfg, probe_file=probe_path("sleep_forever"))
    assert info.value.code == code, info.value.message
    assert "exited early" in info.value.message or "killed by SIGKILL" in info.value.message, info.value.message
    monkeypatch.setattr(forkserver.ForkServer, "fork", real_fork)
    server = forkserver._server
    assert server is not None and server.alive(), "the server must survive a fork's early death"
    assert killed and wait_dead(killed[0]) and str(killed[0]) not in _server_children(server.pid)  # reaped
    assert list(tmp_path.iterdir()) == []  # the run directory is gone
    result, child = run_action(cfg, "ids")  # the next launch is a correct fork of the same server
    assert isinstance(child._process, ForkedProcess) and result["ok"] is True
    assert child.isolation is not None and child.isolation.level == "full" and forkserver._server is server


@pytest.mark.usefixtures("own_server")
def test_a_closed_server_leaves_no_home_behind_even_after_export_imports(tmp_path: Path) -> None:
    # torch.export's modules, imported by the server for an FW request, write torchinductor_<user>/ under
    # the server's TMPDIR (its home): the home used to be rmdir-ed only, and stayed in /tmp.
    for _ in range(2):
        with launch(CFG, probe_file=probe_path("early_exit"), warm_export=True) as child:
            child.wait(30)
    server = forkserver._server
    assert server is not None and isinstance(child._process, ForkedProcess)
    home = server._home
    assert [p.name for p in home.iterdir() if p.name != "stderr"], "the control: the server wrote into its home"
    server.close()
    assert not home.exists()
