"""Red team 8: syscalls aimed at the parent or the kernel that red team 5 did not try, in the real sandbox.

Each runs the raw syscall in the real child and asserts the exact errno the hostile code sees. Most
were already refused by the seccomp deny-list (regressions). Four reached the kernel before this
round -- ``open_tree_attr`` (the twin of the denied ``open_tree``), ``file_setattr`` (inode flags,
the denied xattr family's twin), ``memfd_secret`` (returned a descriptor) and ``modify_ldt`` -- and
any syscall newer than the list was allowed; they are EPERM now, and numbers above the highest the
list knows are ENOSYS.
"""

from __future__ import annotations

import errno
import os

import pytest

from securehub.sandbox._isolation.seccomp import HIGHEST_KNOWN_SYSCALL
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent.spawn import check_available
from tests.sandbox_probes._harness import run_action

pytestmark = pytest.mark.skipif(
    check_available(SandboxConfig()).level != "full",
    reason="full sandbox isolation is not available on this machine",
)

CFG = SandboxConfig(timeout_s=30)
PARENT = os.getpid()
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000


@pytest.mark.parametrize(
    ("name", "nr", "args", "expected"),
    [
        # reached the kernel before this round
        ("memfd_secret", 447, (0,), errno.EPERM),
        ("open_tree_attr", 467, (-100, 0, 0, 0, 0), errno.EPERM),
        ("file_setattr", 469, (-100, 0, 0, 0, 0), errno.EPERM),
        ("modify_ldt", 154, (0, 0, 0), errno.EPERM),
        ("a syscall newer than the list", HIGHEST_KNOWN_SYSCALL + 1, (0, 0, 0), errno.ENOSYS),
        # regressions: already refused
        ("process_vm_readv parent", 310, (PARENT, 0, 0, 0, 0, 0), errno.EPERM),
        ("ptrace PTRACE_SEIZE parent", 101, (0x4206, PARENT, 0, 0), errno.EPERM),
        ("ptrace PTRACE_TRACEME", 101, (0, 0, 0, 0), errno.EPERM),
        ("io_uring_setup", 425, (1, 0), errno.EPERM),
        ("bpf", 321, (0, 0, 0), errno.EPERM),
        ("perf_event_open", 298, (0, 0, -1, -1, 0), errno.EPERM),
        ("keyctl", 250, (0, 0), errno.EPERM),
        ("mount", 165, (0, 0, 0, 0, 0), errno.EPERM),
        ("fsopen", 430, (0, 0), errno.EPERM),
        ("move_mount", 429, (0, 0, 0, 0, 0), errno.EPERM),
        ("unshare user+mount namespace", 272, (CLONE_NEWUSER | CLONE_NEWNS,), errno.EPERM),
        ("process_madvise", 440, (0, 0, 0, 0, 0), errno.EPERM),
        ("clone3 with namespace flags", 435, (0, 88), errno.ENOSYS),
    ],
)
def test_kernel_surface_syscall_is_refused(name: str, nr: int, args: tuple[int, ...], expected: int) -> None:
    result, _ = run_action(CFG, "raw_syscall_args", nr, *args)
    assert result["ok"] is False, (name, result)
    assert result["errno"] == expected, (name, result)
