"""A hand-written seccomp-bpf deny-list for the child (x86_64 only).

The filter (see :func:`build_filter`):

- kills the process on any architecture other than x86_64 and on x32
  syscall numbers (``nr >= 0x40000000``), the classic filter bypasses;
- ``socket()``: only AF_INET / AF_INET6 (useless inside the empty network
  namespace). AF_UNIX is refused because Landlock does not control
  ``connect()`` to pathname UNIX sockets (think docker.sock); AF_NETLINK,
  AF_PACKET etc. too. ``socketpair()`` only as ``AF_UNIX``/``SOCK_STREAM``
  (flags allowed): a connected *datagram* pair still ``sendto()``s or
  re-``connect()``s to any datagram socket by path (red team 5: forged
  ``/dev/log`` lines), a stream pair reaches nothing but its peer;
- processes: ``fork``/``vfork``/``execve``/``execveat`` -> EPERM; ``clone``
  only with CLONE_THREAD (threads); ``clone3`` -> ENOSYS so glibc falls back
  to ``clone`` for threads. So no daemon can outlive the child;
- signals: ``kill`` only to the child itself (its pid or its own process
  group, 0); ``tgkill``/``rt_sigqueueinfo``/``rt_tgsigqueueinfo`` only to its
  own thread group; ``tkill``, ``pidfd_send_signal`` -> EPERM;
- metadata changes Landlock does not see: the chmod, chown, utime and xattr
  families -> EPERM, for every file, including the child's own temp files
  (nothing legitimate in a hubconf needs them);
- other processes: ``prlimit64``, ``sched_setaffinity``, ``sched_setscheduler``,
  ``sched_setparam``, ``sched_setattr`` only on itself (pid 0 or its own);
  ``setpriority``, ``ioprio_set``, ``migrate_pages``, ``move_pages``,
  ``pidfd_open`` -> EPERM whatever the target (issue 8: the child lowered
  and then exhausted the parent's rlimits);
- identity: the set*id family, ``setgroups`` and ``capset`` -> EPERM (the
  child must not regain the parent's uid, see ``pidns.py``);
- ``setsid``/``setpgid`` (leaving the process group), ``prctl(PR_SET_PDEATHSIG)``
  (surviving the parent), ``ioctl(TIOCSTI)``/``ioctl(TIOCLINUX)`` (typing into, or
  pasting on, a terminal; the child holds none, this is depth) -> EPERM;
- socket and wireless device ioctls (request type 0x89 or 0x8B: ``SIOCGIFCONF``,
  ``SIOCGIFHWADDR``, ...) -> EPERM: on the channel, a socket the parent created,
  they describe the *host's* network namespace (red team 9);
- kernel-attack surface and privileged operations: ptrace, process_vm_*,
  mount family, unshare/setns, keyctl, bpf, perf_event_open, userfaultfd,
  io_uring (its requests are not seen by seccomp), module loading, reboot,
  kexec, clock setting, handles (open_by_handle_at), open_tree_attr,
  file_setattr, memfd_secret, modify_ldt -> EPERM (the last four: red team 8);
- memory outside ``RLIMIT_AS``: ``memfd_create``, the System V IPC calls
  (shm*, sem*, msg*) and POSIX message queues -> EPERM (red team 15: a child
  limited to 1 GiB held 1.5 GiB in memfds and detached shm segments).

Syscall numbers above :data:`HIGHEST_KNOWN_SYSCALL` (calls newer than this
list) -> ENOSYS. Everything else is allowed (a deny-list of the calls the list
knows: Landlock, the namespaces, the dropped capabilities and the rlimits are
the other layers).
"""

from __future__ import annotations

import ctypes
import errno
import struct

from . import IS_LINUX, IS_X86_64, prctl

__all__ = ["build_filter", "install"]

AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
#: The highest x86_64 syscall number this list was written against (file_setattr, Linux 6.17). A newer
#: call is ENOSYS (glibc falls back as on an older kernel): what the list has not judged is not allowed.
HIGHEST_KNOWN_SYSCALL = 469

_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RET_K = 0x06

_OFF_NR = 0
_OFF_ARCH = 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # little-endian: low 32 bits first


PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_SET_PDEATHSIG = 1
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
#: ioctl request types (``_IOC_TYPE``, bits 8-15) of socket and wireless-extension requests.
SOCK_IOC_TYPE = 0x89
WIRELESS_IOC_TYPE = 0x8B
_IOC_TYPE_MASK = 0xFF00
CLONE_THREAD = 0x00010000
AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
SOCK_STREAM = 1
_SOCK_TYPE_MASK = 0xF

# x86_64 numbers -> errno returned.
_DENY: dict[int, int] = {
    57: errno.EPERM,  # fork
    58: errno.EPERM,  # vfork
    59: errno.EPERM,  # execve
    322: errno.EPERM,  # execveat
    435: errno.ENOSYS,  # clone3 (glibc falls back to clone for threads)
    90: errno.EPERM,  # chmod
    91: errno.EPERM,  # fchmod
    268: errno.EPERM,  # fchmodat
    452: errno.EPERM,  # fchmodat2
    92: errno.EPERM,  # chown
    93: errno.EPERM,  # fchown
    94: errno.EPERM,  # lchown
    260: errno.EPERM,  # fchownat
    132: errno.EPERM,  # utime
    235: errno.EPERM,  # utimes
    261: errno.EPERM,  # futimesat
    280: errno.EPERM,  # utimensat
    188: errno.EPERM,  # setxattr
    189: errno.EPERM,  # lsetxattr
    190: errno.EPERM,  # fsetxattr
    197: errno.EPERM,  # removexattr
    198: errno.EPERM,  # lremovexattr
    199: errno.EPERM,  # fremovexattr
    463: errno.EPERM,  # setxattrat
    466: errno.EPERM,  # removexattrat
    133: errno.EPERM,  # mknod
    259: errno.EPERM,  # mknodat
    101: errno.EPERM,  # ptrace
    310: errno.EPERM,  # process_vm_readv
    311: errno.EPERM,  # process_vm_writev
    312: errno.EPERM,  # kcmp
    440: errno.EPERM,  # process_madvise
    165: errno.EPERM,  # mount
    166: errno.EPERM,  # umount2
    155: errno.EPERM,  # pivot_root
    161: errno.EPERM,  # chroot
    272: errno.EPERM,  # unshare
    308: errno.EPERM,  # setns
    428: errno.EPERM,  # open_tree
    429: errno.EPERM,  # move_mount
    430: errno.EPERM,  # fsopen
    431: errno.EPERM,  # fsconfig
    432: errno.EPERM,  # fsmount
    433: errno.EPERM,  # fspick
    442: errno.EPERM,  # mount_setattr
    248: errno.EPERM,  # add_key
    249: errno.EPERM,  # request_key
    250: errno.EPERM,  # keyctl
    321: errno.EPERM,  # bpf
    298: errno.EPERM,  # perf_event_open
    323: errno.EPERM,  # userfaultfd
    425: errno.EPERM,  # io_uring_setup
    426: errno.EPERM,  # io_uring_enter
    427: errno.EPERM,  # io_uring_register
    246: errno.EPERM,  # kexec_load
    320: errno.EPERM,  # kexec_file_load
    175: errno.EPERM,  # init_module
    313: errno.EPERM,  # finit_module
    176: errno.EPERM,  # delete_module
    169: errno.EPERM,  # reboot
    167: errno.EPERM,  # swapon
    168: errno.EPERM,  # swapoff
    163: errno.EPERM,  # acct
    164: errno.EPERM,  # settimeofday
    227: errno.EPERM,  # clock_settime
    305: errno.EPERM,  # clock_adjtime
    159: errno.EPERM,  # adjtimex
    170: errno.EPERM,  # sethostname
    171: errno.EPERM,  # setdomainname
    172: errno.EPERM,  # iopl
    173: errno.EPERM,  # ioperm
    179: errno.EPERM,  # quotactl
    443: errno.EPERM,  # quotactl_fd
    103: errno.EPERM,  # syslog
    153: errno.EPERM,  # vhangup
    134: errno.EPERM,  # uselib
    303: errno.EPERM,  # name_to_handle_at
    304: errno.EPERM,  # open_by_handle_at
    # Red team 8: twins of denied calls and kernel surface the list had missed, all reaching the kernel
    # from the child before: open_tree_attr (open_tree's twin, 6.15), file_setattr (inode flags and
    # project ids, fsetxattr's family, 6.17), memfd_secret (memory unmapped from the kernel), modify_ldt.
    467: errno.EPERM,  # open_tree_attr
    469: errno.EPERM,  # file_setattr
    447: errno.EPERM,  # memfd_secret
    154: errno.EPERM,  # modify_ldt
    212: errno.EPERM,  # lookup_dcookie
    300: errno.EPERM,  # fanotify_init
    301: errno.EPERM,  # fanotify_mark
    200: errno.EPERM,  # tkill
    424: errno.EPERM,  # pidfd_send_signal
    438: errno.EPERM,  # pidfd_getfd
    112: errno.EPERM,  # setsid
    109: errno.EPERM,  # setpgid
    # Process-affecting calls the child has no use for, denied whatever the
    # target (issue 8: prlimit64/setpriority on the parent's pid).
    141: errno.EPERM,  # setpriority
    251: errno.EPERM,  # ioprio_set
    256: errno.EPERM,  # migrate_pages
    279: errno.EPERM,  # move_pages
    434: errno.EPERM,  # pidfd_open
    # Identity changes: no way back to the parent's uid (see _isolation/pidns.py).
    105: errno.EPERM,  # setuid
    106: errno.EPERM,  # setgid
    113: errno.EPERM,  # setreuid
    114: errno.EPERM,  # setregid
    116: errno.EPERM,  # setgroups
    117: errno.EPERM,  # setresuid
    119: errno.EPERM,  # setresgid
    122: errno.EPERM,  # setfsuid
    123: errno.EPERM,  # setfsgid
    126: errno.EPERM,  # capset
    # Red team 15: memory RLIMIT_AS never counts. Pages of a memfd written with write() (never mapped)
    # and of System V shared memory segments (mapped, filled, detached: they stay in the child's IPC
    # namespace) let a child limited to sandbox.memory_mb hold the machine's memory, and the OOM killer
    # then picks the biggest process: the parent. POSIX message queues too (kernel memory).
    319: errno.EPERM,  # memfd_create
    29: errno.EPERM,  # shmget
    30: errno.EPERM,  # shmat
    31: errno.EPERM,  # shmctl
    67: errno.EPERM,  # shmdt
    64: errno.EPERM,  # semget
    65: errno.EPERM,  # semop
    66: errno.EPERM,  # semctl
    220: errno.EPERM,  # semtimedop
    68: errno.EPERM,  # msgget
    69: errno.EPERM,  # msgsnd
    70: errno.EPERM,  # msgrcv
    71: errno.EPERM,  # msgctl
    240: errno.EPERM,  # mq_open
    241: errno.EPERM,  # mq_unlink
    242: errno.EPERM,  # mq_timedsend
    243: errno.EPERM,  # mq_timedreceive
    244: errno.EPERM,  # mq_notify
    245: errno.EPERM,  # mq_getsetattr
}

#: Calls whose first argument is a pid: allowed only on the child itself (0 or
#: its own pid), EPERM for any other pid (issue 8: ``prlimit64(getppid(),
#: RLIMIT_CPU, (1, 1))`` killed the parent). glibc's getrlimit/setrlimit are
#: prlimit64(0, ...); thread pools may pin their own process.
_SELF_ONLY_PID_ARG0 = (
    302,  # prlimit64
    203,  # sched_setaffinity
    144,  # sched_setscheduler
    142,  # sched_setparam
    314,  # sched_setattr
)

_SYS_SOCKET = 41
_SYS_SOCKETPAIR = 53
_SYS_CLONE = 56
_SYS_KILL = 62
_SYS_TGKILL = 234
_SYS_RT_SIGQUEUEINFO = 129
_SYS_RT_TGSIGQUEUEINFO = 297
_SYS_PRCTL = 157
_SYS_IOCTL = 16


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _allow_if_arg_in(nr: int, arg: int, values: tuple[int, ...], deny: int) -> list[bytes]:
    """If syscall == nr: allow when arg's low 32 bits is one of values, else return deny."""
    n = len(values)
    body = [_ins(_LD_W_ABS, _arg_lo(arg))]
    for i, v in enumerate(values):
        body.append(_ins(_JEQ_K, v, jt=n - i, jf=0))  # -> RET_ALLOW
    body.append(_ins(_RET_K, deny))
    body.append(_ins(_RET_K, _RET_ALLOW))
    return [_ins(_JEQ_K, nr, jt=0, jf=len(body)), *body]


def _deny_if_arg_in(nr: int, arg: int, values: tuple[int, ...], deny: int) -> list[bytes]:
    n = len(values)
    body = [_ins(_LD_W_ABS, _arg_lo(arg))]
    for i, v in enumerate(values):
        body.append(_ins(_JEQ_K, v, jt=n - i, jf=0))  # -> RET deny
    body.append(_ins(_RET_K, _RET_ALLOW))
    body.append(_ins(_RET_K, deny))
    return [_ins(_JEQ_K, nr, jt=0, jf=len(body)), *body]


def _ioctl_block(deny: int) -> list[bytes]:
    """ioctl: EPERM for TIOCSTI/TIOCLINUX and for every socket (0x89) or wireless (0x8B) request type.

    A socket's device ioctls (``SIOCGIFCONF``, ``SIOCGIFHWADDR``, ...) answer for the network namespace
    the socket was *created* in: on the channel, which the parent made, that is the host's, so a child
    under ``network: deny`` listed the host's interfaces, addresses and MACs (red team 9). The type byte
    (bits 8-15) is what the kernel routes on (``is_socket_ioctl_cmd``), whatever the direction bits.
    """
    body = [
        _ins(_LD_W_ABS, _arg_lo(1)),
        _ins(_JEQ_K, TIOCSTI, jt=5, jf=0),  # -> RET deny
        _ins(_JEQ_K, TIOCLINUX, jt=4, jf=0),
        _ins(_AND_K, _IOC_TYPE_MASK),
        _ins(_JEQ_K, SOCK_IOC_TYPE << 8, jt=2, jf=0),
        _ins(_JEQ_K, WIRELESS_IOC_TYPE << 8, jt=1, jf=0),
        _ins(_RET_K, _RET_ALLOW),
        _ins(_RET_K, deny),
    ]
    return [_ins(_JEQ_K, _SYS_IOCTL, jt=0, jf=len(body)), *body]


def build_filter(own_pid: int) -> bytes:
    """The BPF program (bytes of ``struct sock_filter[]``) for a child whose pid is ``own_pid``.

    The child cannot fork, so its pid is fixed for its lifetime. Pid
    arguments are compared on their low 32 bits (a pid is an ``int``).
    """
    eperm = _RET_ERRNO | errno.EPERM
    prog: list[bytes] = [
        _ins(_LD_W_ABS, _OFF_ARCH),
        _ins(_JEQ_K, AUDIT_ARCH_X86_64, jt=1, jf=0),
        _ins(_RET_K, _RET_KILL_PROCESS),
        _ins(_LD_W_ABS, _OFF_NR),
        _ins(_JGE_K, _X32_SYSCALL_BIT, jt=0, jf=1),
        _ins(_RET_K, _RET_KILL_PROCESS),
        _ins(_JGE_K, HIGHEST_KNOWN_SYSCALL + 1, jt=0, jf=1),
        _ins(_RET_K, _RET_ERRNO | errno.ENOSYS),
    ]
    for nr, err in _DENY.items():
        prog.append(_ins(_JEQ_K, nr, jt=0, jf=1))
        prog.append(_ins(_RET_K, _RET_ERRNO | err))
    prog += _allow_if_arg_in(_SYS_SOCKET, 0, (AF_INET, AF_INET6), eperm)
    # socketpair(AF_UNIX, SOCK_STREAM[|flags]) only: a datagram pair (SOCK_DGRAM, or SOCK_RAW, which
    # AF_UNIX makes a datagram socket) can sendto()/connect() any datagram socket by path, which
    # Landlock does not mediate (red team 5). SOCK_SEQPACKET is not needed either.
    prog += [
        _ins(_JEQ_K, _SYS_SOCKETPAIR, jt=0, jf=7),
        _ins(_LD_W_ABS, _arg_lo(0)),
        _ins(_JEQ_K, AF_UNIX, jt=0, jf=3),  # -> RET deny
        _ins(_LD_W_ABS, _arg_lo(1)),
        _ins(_AND_K, _SOCK_TYPE_MASK),
        _ins(_JEQ_K, SOCK_STREAM, jt=1, jf=0),  # -> RET allow
        _ins(_RET_K, eperm),
        _ins(_RET_K, _RET_ALLOW),
    ]
    # Each block below ends in RET on both paths, so the accumulator
    # being overwritten with an argument never leaks into the next check.
    prog += [
        _ins(_JEQ_K, _SYS_CLONE, jt=0, jf=4),
        _ins(_LD_W_ABS, _arg_lo(0)),
        _ins(_JSET_K, CLONE_THREAD, jt=1, jf=0),
        _ins(_RET_K, eperm),
        _ins(_RET_K, _RET_ALLOW),
    ]
    for nr in _SELF_ONLY_PID_ARG0:
        prog += _allow_if_arg_in(nr, 0, (0, own_pid), eperm)
    prog += _allow_if_arg_in(_SYS_KILL, 0, (own_pid, 0), eperm)
    prog += _allow_if_arg_in(_SYS_TGKILL, 0, (own_pid,), eperm)
    prog += _allow_if_arg_in(_SYS_RT_SIGQUEUEINFO, 0, (own_pid,), eperm)
    prog += _allow_if_arg_in(_SYS_RT_TGSIGQUEUEINFO, 0, (own_pid,), eperm)
    prog += _deny_if_arg_in(_SYS_PRCTL, 0, (PR_SET_PDEATHSIG,), eperm)
    prog += _ioctl_block(eperm)
    prog.append(_ins(_RET_K, _RET_ALLOW))
    if len(prog) > 4096:
        raise ValueError("seccomp program too long")
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def install(own_pid: int) -> None:
    """Install the filter on the calling thread (needs no-new-privs). Raises ``OSError``.

    Call while single-threaded: the filter is inherited only by threads
    created afterwards.
    """
    if not (IS_LINUX and IS_X86_64):
        raise OSError(38, "the seccomp filter is written for x86_64 Linux only")
    prog = build_filter(own_pid)
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _SockFprog(len=len(prog) // 8, filter=ctypes.addressof(buf))
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
