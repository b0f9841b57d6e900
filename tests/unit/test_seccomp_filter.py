"""The seccomp program, run by a small classic-BPF interpreter (no kernel needed).

The attack tests run the real filter in the real sandbox; these pin the decisions on arguments
(socket families, socketpair types, clone flags, signal targets) for every value that matters,
including the ones a probe cannot easily reach.
"""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from securehub.sandbox._isolation import seccomp

OWN_PID = 2
ALLOW = 0x7FFF0000
EPERM = 0x00050000 | errno.EPERM
KILL = 0x80000000


def _run(nr: int, *args: int, arch: int = seccomp.AUDIT_ARCH_X86_64) -> int:
    """Evaluate the filter on ``struct seccomp_data`` for syscall ``nr`` with ``args``."""
    prog = seccomp.build_filter(OWN_PID)
    padded = [*(a & 0xFFFFFFFFFFFFFFFF for a in args), *[0] * (6 - len(args))]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *padded)
    acc = 0
    pc = 0
    while True:
        code, jt, jf, k = struct.unpack_from("<HBBI", prog, pc * 8)
        pc += 1
        if code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:  # BPF_ALU | BPF_AND | BPF_K
            acc &= k
        elif code == 0x15:  # BPF_JMP | BPF_JEQ | BPF_K
            pc += jt if acc == k else jf
        elif code == 0x35:  # BPF_JMP | BPF_JGE | BPF_K
            pc += jt if acc >= k else jf
        elif code == 0x45:  # BPF_JMP | BPF_JSET | BPF_K
            pc += jt if acc & k else jf
        elif code == 0x06:  # BPF_RET | BPF_K
            return k
        else:
            raise AssertionError(f"instruction {code:#x} not understood by this interpreter")


SOCKETPAIR = 53
NONBLOCK_CLOEXEC = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC


@pytest.mark.parametrize("flags", [0, socket.SOCK_NONBLOCK, socket.SOCK_CLOEXEC, NONBLOCK_CLOEXEC])
def test_stream_socketpair_is_allowed(flags: int) -> None:
    assert _run(SOCKETPAIR, socket.AF_UNIX, socket.SOCK_STREAM | flags, 0) == ALLOW


@pytest.mark.parametrize("sock_type", [socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET, 0, 15])
@pytest.mark.parametrize("flags", [0, NONBLOCK_CLOEXEC])
def test_datagram_socketpair_is_refused(sock_type: int, flags: int) -> None:
    """Red team 5: a datagram pair sendto()s any datagram socket by path."""
    assert _run(SOCKETPAIR, socket.AF_UNIX, sock_type | flags, 0) == EPERM


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, 0, 1 | (1 << 32)])
def test_socketpair_of_another_family_is_refused(family: int) -> None:
    # The kernel reads the family as an int: high bits do not make AF_UNIX of something else,
    # and (1 << 32) | 1 is AF_UNIX to both.
    expected = ALLOW if family & 0xFFFFFFFF == socket.AF_UNIX else EPERM
    assert _run(SOCKETPAIR, family, socket.SOCK_STREAM, 0) == expected


def test_socket_families() -> None:
    assert _run(41, socket.AF_INET, socket.SOCK_STREAM, 0) == ALLOW
    assert _run(41, socket.AF_INET6, socket.SOCK_DGRAM, 0) == ALLOW
    assert _run(41, socket.AF_UNIX, socket.SOCK_STREAM, 0) == EPERM
    assert _run(41, socket.AF_NETLINK, socket.SOCK_RAW, 0) == EPERM


def test_signals_only_to_itself() -> None:
    assert _run(62, OWN_PID, 9) == ALLOW
    assert _run(62, 0, 9) == ALLOW  # its own process group
    for target in (1, -1, -OWN_PID, 12345):
        assert _run(62, target, 9) == EPERM, target
    assert _run(234, OWN_PID, 3, 9) == ALLOW  # tgkill in its own thread group
    assert _run(234, 1, 1, 9) == EPERM


def test_threads_but_no_processes() -> None:
    assert _run(56, 0x3D0F00) == ALLOW  # glibc's pthread_create flags (CLONE_THREAD among them)
    assert _run(56, 0x01200011) == EPERM  # fork()'s clone: SIGCHLD | CLONE_CHILD_*TID
    assert _run(435, 0, 0) == 0x00050000 | errno.ENOSYS  # clone3: glibc falls back to clone


def test_foreign_architecture_and_x32_are_killed() -> None:
    assert _run(39, arch=0x40000003) == KILL  # i386
    assert _run(0x40000000 | 39) == KILL


ENOSYS = 0x00050000 | errno.ENOSYS


@pytest.mark.parametrize("nr", [seccomp.HIGHEST_KNOWN_SYSCALL + 1, 470, 512, 0x3FFFFFFF])
def test_syscalls_newer_than_the_list_are_enosys(nr: int) -> None:
    """Red team 8: what the deny-list has not judged is not allowed (glibc falls back on ENOSYS)."""
    assert _run(nr) == ENOSYS


@pytest.mark.parametrize(
    ("nr", "name"), [(467, "open_tree_attr"), (469, "file_setattr"), (447, "memfd_secret"), (154, "modify_ldt")]
)
def test_twins_of_denied_calls_are_denied(nr: int, name: str) -> None:
    assert _run(nr) == EPERM, name


@pytest.mark.parametrize(("nr", "name"), [(334, "rseq"), (436, "close_range"), (439, "faccessat2"), (0, "read")])
def test_known_calls_below_the_cutoff_stay_allowed(nr: int, name: str) -> None:
    assert _run(nr) == ALLOW, name


IOCTL = 16


@pytest.mark.parametrize(
    ("name", "cmd"),
    [
        ("TIOCSTI", 0x5412),
        ("TIOCLINUX", 0x541C),
        ("SIOCGIFCONF", 0x8912),
        ("SIOCGIFHWADDR", 0x8927),
        ("SIOCGIFADDR", 0x8915),
        ("SIOCETHTOOL", 0x8946),
        ("SIOCGSKNS", 0x894C),
        ("SIOCDEVPRIVATE", 0x89F0),
        ("SIOCGIWNAME (wireless)", 0x8B01),
        ("socket type with direction bits", 0xC0208912),
        ("socket type, high word set", 0x1_0000_8912),
    ],
)
def test_terminal_and_socket_device_ioctls_are_refused(name: str, cmd: int) -> None:
    # Red team 9: SIOCGIFCONF on the channel (made by the parent) listed the host's interfaces.
    assert _run(IOCTL, 3, cmd, 0) == EPERM, name


@pytest.mark.parametrize(
    ("name", "cmd"),
    [("TCGETS", 0x5401), ("FIONREAD", 0x541B), ("FIONBIO", 0x5421), ("FIOCLEX", 0x5451), ("TIOCOUTQ", 0x5411)],
)
def test_ordinary_ioctls_stay_allowed(name: str, cmd: int) -> None:
    assert _run(IOCTL, 3, cmd, 0) == ALLOW, name
