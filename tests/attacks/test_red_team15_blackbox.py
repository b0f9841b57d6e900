"""Red team 15 (December 2026): a black-box suite written from SPEC.md and the user docs alone.

Each attack goes through the public API or CLI, real loopback servers, the real sandbox and real
torch, and asserts what the contract promises: the exact error code, the exit code, and that
nothing happened. What got through in this round (fixed in the same branch):

- the child held memory outside its address-space limit (``sandbox.memory_mb``) in System V
  shared memory and in ``memfd_create`` files, which ``RLIMIT_AS`` never counts: enough of it
  takes the machine's memory and the OOM killer picks the biggest process, the parent;
- ``securehub audit`` read a ``hub.lock`` that is a symlink to ``/dev/zero`` without a bound
  (gigabytes in seconds), and a lock or policy path naming a FIFO (or ``/dev/stdin``) hung the
  parent forever: a committed ``hub.lock`` symlink is enough to take a CI runner down;
- a repo spec or ``SECUREHUB_GITHUB_URL`` carrying a password echoed it into the error message
  (stderr, CI logs) while refusing it;
- ``securehub keygen`` into a missing directory was an "internal error" instead of a usage error.

The rest are attacks refused correctly that no earlier round covered, kept as regressions.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import securehub
from securehub.errors import SecureHubError
from tests._hub_helpers import (
    FORGE_DESCRIBE,
    NEEDS_FULL_SANDBOX,
    HubEnv,
    hub_env_context,
    publish,
    refused,
    write_policy,
)
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

SECRET = "RT15-hunter2-Secret-7f3a9c"  # not token-shaped: the log's ghp_ pattern must not be what saves it


@pytest.fixture(scope="module")
def env(git_server: GitServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("rt15"), git_server) as e:
        yield e


def _healthy(env: HubEnv) -> None:
    """The parent still loads an honest repo after the attack."""
    repo = publish(env, "honest", {"hubconf.py": "import torch.nn as nn\ndef m():\n    return nn.Linear(2, 2)\n"})
    model = securehub.load(env.spec(repo), "m", policy="default", verbose=False)
    assert model(torch.zeros(1, 2)).shape == (1, 2)


# --------------------------------------------------------------------------------------------
# Surface 3: memory the child holds outside RLIMIT_AS
# --------------------------------------------------------------------------------------------

_HOLD = """
import ctypes, os
import torch.nn as nn
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
MB = 1 << 20

def sysv():
    for i in range(6):
        sid = libc.shmget(0, 256 * MB, 0o1000 | 0o600)
        if sid < 0:
            raise OSError(ctypes.get_errno(), "shmget refused")
        addr = libc.shmat(sid, None, 0)
        ctypes.memset(addr, 1, 256 * MB)
        libc.shmdt(ctypes.c_void_p(addr))
    return nn.Linear(2, 2)

def memfd():
    keep = []
    blob = b"x" * MB
    for i in range(6):
        fd = os.memfd_create("hold%d" % i)
        for _ in range(255):
            os.write(fd, blob)
        keep.append(fd)
    return nn.Linear(2, 2)
"""


@pytest.mark.parametrize("entry", ["sysv", "memfd"])
def test_child_cannot_hold_memory_outside_its_address_space_limit(env: HubEnv, entry: str) -> None:
    """1.5 GiB held by a child limited to 1 GiB: System V shm and memfd pages are not in RLIMIT_AS."""
    policy = write_policy(env.root / "mem.yaml", "default", sandbox={"memory_mb": 1024, "max_file_mb": 256})
    repo = publish(env, "hold", {"hubconf.py": _HOLD})
    code, message = refused(lambda: securehub.load(env.spec(repo), entry, policy=str(policy), verbose=False))
    # seccomp refuses the call (EPERM); nothing names it in the child, so it is the entrypoint's PermissionError
    assert code == "entrypoint-error" and "PermissionError" in message, message
    _healthy(env)


_FILL = """
import os
import torch.nn as nn
def m():
    blob = b"x" * (1 << 20)
    for i in range(6):
        with open(os.path.join(os.environ["TMPDIR"], "f%d" % i), "wb") as f:
            for _ in range(255):
                f.write(blob)
    return nn.Linear(2, 2)
"""


def test_child_cannot_fill_the_disk_with_many_files_under_the_file_size_limit(env: HubEnv) -> None:
    """Six 255 MiB files, each under max_file_mb: the temp dir as a whole is capped too."""
    policy = write_policy(env.root / "disk.yaml", "default", sandbox={"max_file_mb": 256})
    repo = publish(env, "fill", {"hubconf.py": _FILL})
    code, message = refused(lambda: securehub.load(env.spec(repo), "m", policy=str(policy), verbose=False))
    assert code == "sandbox-resource", message
    assert "max_file_mb" in message
    _healthy(env)


# --------------------------------------------------------------------------------------------
# Lock and policy files that are not regular files (a committed hub.lock symlink)
# --------------------------------------------------------------------------------------------


def _cli(args: list[str], cwd: Path, env: HubEnv, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    def limit() -> None:  # a reader of /dev/zero must fail here, not take the machine's memory
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    return subprocess.run(
        [sys.executable, "-m", "securehub", *args],
        cwd=cwd,
        env=dict(os.environ),
        stdin=subprocess.PIPE,  # never closed before the timeout: /dev/stdin never ends
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
    )


@pytest.mark.parametrize(
    ("verb", "target"),
    [
        (["audit"], "/dev/zero"),  # was: gigabytes read in seconds
        (["audit"], "fifo"),  # was: blocked forever
        (["lock", "--check"], "/dev/stdin"),
        (["load", "a/b:v1", "m"], "fifo"),
    ],
)
def test_hub_lock_symlink_to_a_device_or_fifo_is_refused_not_read(
    env: HubEnv, tmp_path: Path, verb: list[str], target: str
) -> None:
    work = tmp_path / "proj"
    work.mkdir()
    if target == "fifo":
        os.mkfifo(tmp_path / "pipe")
        target = str(tmp_path / "pipe")
    (work / "hub.lock").symlink_to(target)
    proc = _cli(verb, work, env, timeout=45)
    out = proc.stdout + proc.stderr  # audit reports its findings on stdout
    assert proc.returncode == 1, out[-2000:]
    assert "lock-invalid" in out and "not a regular file" in out, out[-2000:]
    assert (work / "hub.lock").is_symlink() and sorted(p.name for p in work.iterdir()) == ["hub.lock"]


def test_lock_and_policy_paths_naming_a_fifo_do_not_hang_the_parent(env: HubEnv, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "lock.fifo")
    os.mkfifo(tmp_path / "policy.fifo")
    proc = _cli(["load", "a/b:v1", "m", "--lock", str(tmp_path / "lock.fifo")], tmp_path, env, timeout=45)
    assert proc.returncode == 1 and "error[lock-invalid]" in proc.stderr, proc.stderr[-2000:]
    proc = _cli(["load", "a/b:v1", "m", "--policy", str(tmp_path / "policy.fifo")], tmp_path, env, timeout=45)
    assert proc.returncode == 2 and "error[policy-invalid]" in proc.stderr, proc.stderr[-2000:]
    code, _ = refused(lambda: securehub.load("a/b:v1", "m", lock=str(tmp_path / "lock.fifo"), verbose=False))
    assert code == "lock-invalid"


def test_key_and_bundle_paths_naming_a_fifo_do_not_hang_the_parent(env: HubEnv, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "k.fifo")
    lock = tmp_path / "hub.lock"
    lock.write_text(json.dumps({"version": 1, "repos": {}, "artifacts": {}}, indent=2, sort_keys=True) + "\n")
    before = lock.read_bytes()
    proc = _cli(["sign", "--lock", str(lock), "--key", str(tmp_path / "k.fifo")], tmp_path, env, timeout=45)
    assert proc.returncode == 1 and "error[signature-invalid]" in proc.stderr, proc.stderr[-2000:]
    proc = _cli(["cache", "import", str(tmp_path / "k.fifo"), "--lock", str(lock)], tmp_path, env, timeout=45)
    assert proc.returncode == 1 and "error[hash-mismatch]" in proc.stderr, proc.stderr[-2000:]
    assert lock.read_bytes() == before


# --------------------------------------------------------------------------------------------
# Secrets in specs and URLs never reach messages, stderr or the audit log
# --------------------------------------------------------------------------------------------


def test_password_in_a_repo_spec_is_not_echoed(env: HubEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    host = env.git.base_url.split("//", 1)[1]
    specs = [
        f"git+http://user:{SECRET}@{host}/e2e/x.git@v1",
        f"git+https://user:{SECRET}@git.example.com/e2e/x.git@v1",
        f"git+ssh://git:{SECRET}@git.example.com/x.git@v1",
        f"git+http://user:{SECRET}%40x@{host}/e2e/x.git@v1",
    ]
    before = env.audit_log.read_text() if env.audit_log.exists() else ""
    for spec in specs:
        code, message = refused(lambda spec=spec: securehub.load(spec, "m", verbose=False))
        assert code == "repo-not-allowed"
        assert SECRET not in message and SECRET[:12] not in message, message
        assert "credentials" in message or "password" in message
    monkeypatch.setenv("SECUREHUB_GITHUB_URL", env.git.base_url.replace("://", f"://u:{SECRET}@"))
    code, message = refused(lambda: securehub.load("e2e/x:v1", "m", verbose=False))
    assert code == "repo-not-allowed" and SECRET[:12] not in message, message
    monkeypatch.setenv("SECUREHUB_GITHUB_URL", env.git.base_url)
    proc = subprocess.run(
        [sys.executable, "-m", "securehub", "load", specs[0], "m"],
        cwd=env.root,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "error[repo-not-allowed]" in proc.stderr
    assert SECRET[:12] not in proc.stderr + proc.stdout
    after = env.audit_log.read_text()
    assert SECRET[:12] not in after[len(before) :]


@pytest.mark.parametrize(
    "url",
    [
        "http://u:{s}@{host}/w.safetensors",  # credentials: refused, redacted
        "http://{host}/w.safetensors?sig={s}",  # a presigned query: loads; the log keeps no query
    ],
)
def test_artifact_url_secret_never_reaches_the_audit_log(env: HubEnv, url: str) -> None:
    from safetensors.torch import save

    env.artifacts.put("/w.safetensors", save({"a": torch.zeros(2)}))
    host = env.artifacts.base_url.split("//", 1)[1]
    before = env.audit_log.read_text() if env.audit_log.exists() else ""
    try:
        securehub.load_state_dict_from_url(url.format(s=SECRET, host=host), policy="default")
        message = ""
    except SecureHubError as exc:
        assert exc.code == "artifact-not-allowed"
        message = str(exc)
    assert SECRET[:12] not in message
    assert SECRET[:12] not in env.audit_log.read_text()[len(before) :]


def test_token_is_not_sent_to_a_path_escaping_the_github_base(env: HubEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dot segment makes the raw URL start with the base but the request leave it."""
    hubconf = "import torch.nn as nn\ndef m():\n    return nn.Linear(2, 2)\n"
    org = env.unique("org").split("/")[1]
    publish(env, "x", {"hubconf.py": hubconf}, name=f"{org}/x")
    evil = publish(env, "x", {"hubconf.py": hubconf}, name=f"{org}evil/x")
    monkeypatch.setenv("SECUREHUB_GITHUB_TOKEN", SECRET)
    monkeypatch.setenv("SECUREHUB_GITHUB_URL", f"{env.git.base_url}/{org}")
    host = env.git.base_url.split("//", 1)[1]
    for path in (f"/{org}/../{evil.full_name}.git", f"/{org}/x.git/../../{evil.full_name}.git"):
        env.clear_logs()
        securehub.load(f"git+http://{host}{path}@v1", "m", verbose=False)
        assert env.git.requests, "the load talked to the git server"
        assert all(r.header("Authorization") is None for r in env.git.requests)


# --------------------------------------------------------------------------------------------
# Refused correctly, not covered elsewhere: kept as compact regressions
# --------------------------------------------------------------------------------------------

_FORGE_ACTIVATION = (
    FORGE_DESCRIBE
    + """
import torch.nn as nn
def m():
    model = nn.TransformerEncoderLayer(4, 2, dim_feedforward=8)
    _forge(lambda root: root["kwargs"].__setitem__("activation", {"$function": FN}))
    return model
"""
)


@pytest.mark.parametrize(
    "fn",
    [
        "torch.nn.modules.module:Module.register_forward_hook",  # a bound-method spelling of a hook
        "torch.nn.attention:activate_flash_attention_impl",
        "torch.nn.init:zeros_",  # in place, on whatever the forward passes
        "torch.nn.functional:torch.load",
        "torch.nn.attention.flex_attention:setup_compilation_env",
    ],
)
def test_forged_activation_with_global_effects_is_refused(env: HubEnv, fn: str) -> None:
    repo = publish(env, "act", {"hubconf.py": _FORGE_ACTIVATION.replace("FN", repr(fn))})
    hooks = dict(torch.nn.modules.module._global_forward_hooks)
    code, message = refused(lambda: securehub.load(env.spec(repo), "m", policy="default", verbose=False))
    assert code == "reconstruct-refused" and fn in message
    assert dict(torch.nn.modules.module._global_forward_hooks) == hooks


_PROBE = """
import ctypes, os, socket, json
import torch.nn as nn
libc = ctypes.CDLL(None, use_errno=True)

def sc(n, *a):
    r = libc.syscall(ctypes.c_long(n), *[ctypes.c_long(x) if isinstance(x, int) else x for x in a])
    return 0 if r >= 0 else ctypes.get_errno()

def m():
    ppid = os.getppid()
    got = {
        "kill_ppid": sc(62, ppid, 0),
        "kill_all": sc(62, -1, 0),
        "ptrace_ppid": sc(101, 16, ppid, 0, 0),
        "pidfd_ppid": sc(434, ppid, 0),
        "add_key": sc(248, ctypes.c_char_p(b"user"), ctypes.c_char_p(b"rt15"), ctypes.c_char_p(b"x"), 1, -3),
        "keyctl_session": sc(250, 0, -3, 0),
        "io_uring": sc(425, 1, ctypes.create_string_buffer(120)),
        "userfaultfd": sc(323, 0),
        "perf_event": sc(298, ctypes.create_string_buffer(128), 0, -1, -1, 0),
        "setsid": sc(112),
        "setpriority_user": sc(141, 2, 0, 19),
        "ioprio_user": sc(251, 3, 0, (3 << 13) | 7),
        "sethostname": sc(170, ctypes.c_char_p(b"pwn"), 3),
        "unshare_userns": sc(272, 0x10000000),
        "mount_tmpfs": sc(165, ctypes.c_char_p(b"x"), ctypes.c_char_p(b"/tmp"), ctypes.c_char_p(b"tmpfs"), 0, 0),
        "mq_open": sc(240, ctypes.c_char_p(b"rt15"), 0o100 | 2, 0o666, 0),
    }
    for name, f in (("unix", lambda: socket.socket(socket.AF_UNIX)), ("tty", lambda: os.open("/dev/tty", os.O_RDWR)),
                    ("devshm", lambda: os.open("/dev/shm/rt15", os.O_CREAT | os.O_WRONLY)),
                    ("tmp", lambda: os.open("/tmp/rt15-canary", os.O_CREAT | os.O_WRONLY)),
                    ("proc", lambda: os.listdir("/proc"))):
        try:
            f()
            got[name] = 0
        except OSError as e:
            got[name] = e.errno
    raise RuntimeError("PROBE" + json.dumps(got))
"""


def test_child_syscalls_aimed_at_the_parent_all_fail(env: HubEnv) -> None:
    """Signals, ptrace, pidfd, keyrings, io_uring, priorities, /dev/tty, /dev/shm, /tmp: each one fails."""
    repo = publish(env, "probe", {"hubconf.py": _PROBE})
    code, message = refused(lambda: securehub.load(env.spec(repo), "m", policy="default", verbose=False))
    assert code in ("entrypoint-error", "sandbox-violation"), message
    got = json.loads(message[message.index("PROBE") + 5 : message.rindex("}") + 1])
    assert {k for k, errno in got.items() if errno == 0} == set(), got
    assert not Path("/tmp/rt15-canary").exists() and not Path("/dev/shm/rt15").exists()
    _healthy(env)


def test_keygen_into_a_missing_directory_is_a_usage_error(env: HubEnv, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "securehub", "keygen", str(tmp_path / "nodir" / "k")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "internal error" not in proc.stderr and "error[usage]" in proc.stderr
    assert not (tmp_path / "nodir").exists()
