"""A hardened way to run git, and ``ls-remote`` on top of it.

What :func:`run_git` guarantees, whatever the user's or the repository's configuration says:

- The environment is built from scratch: ``PATH``, ``LANG``/``LC_ALL=C``, an empty private
  ``HOME``/``XDG_CONFIG_HOME``, no system or global config (``GIT_CONFIG_NOSYSTEM``,
  ``GIT_CONFIG_GLOBAL=/dev/null``), repo discovery stopped at the private dir, no prompts
  (``GIT_TERMINAL_PROMPT=0``, ``GIT_ASKPASS`` = a program that fails, ssh ``BatchMode=yes``).
  Only proxy, CA-bundle and ``SSH_AUTH_SOCK`` variables pass through; every other ``GIT_*``
  variable of the caller (``GIT_SSH_COMMAND``, ``GIT_CONFIG_PARAMETERS``, ``GIT_DIR``...) is dropped.
- Transports are limited to https, ssh, file and http (``GIT_ALLOW_PROTOCOL``); http is only
  reachable for loopback hosts because spec parsing refuses the rest. ``ext::``/``fd::`` never run.
- Hooks, fsmonitor, credential helpers, submodule recursion and redirects are off
  (``http.followRedirects=false``: a redirect can never carry the token to another host; the
  price is that a renamed GitHub repository must be written under its new name).
- A token (``SECUREHUB_GITHUB_TOKEN``, else ``GITHUB_TOKEN``) is sent only when the remote is on
  the configured GitHub base URL, scoped with git's ``http.<url>.extraHeader`` URL matching, and
  passed through ``GIT_CONFIG_COUNT`` env entries - never on a command line visible in ``ps``.
- ``SECUREHUB_OFFLINE`` set (anything but ``0``/``false``/``no``/``off``) makes every network
  remote raise :class:`OfflineError` before git starts; ``file://`` remotes are not network.
- Inside :func:`pinned_resolution`, every http(s) connection git makes uses the given
  host -> address answers (``http.curloptResolve``) instead of asking DNS again: the
  addresses a caller checked are the ones git connects to (DNS rebinding; SSRF through a
  nested load's remote). ssh remotes cannot be pinned this way.
- Every git process runs in its own process group, which is SIGKILLed when the call ends, so a
  remote helper or ``index-pack`` left behind by git (a server stalling mid-pack, an endless
  pack) never outlives the call. A call contacting a network remote is bounded by the timeout
  :func:`network_timeout` sets (policy ``repos.git_timeout_s``; :data:`DEFAULT_TIMEOUT_S`
  otherwise); its stdout is capped at :data:`MAX_OUTPUT_BYTES` (a huge ref advertisement), past
  which git is killed and the call fails with ``network``.
- Every git process (and every helper it forks) runs with an address-space limit and a
  largest-file limit (:mod:`._git_limits`; policy ``repos.git_memory_mb`` and a cap derived from
  ``repos.max_tree_bytes``), so an endless ref advertisement or pack cannot exhaust memory or
  disk before the timeout; no core files.
- Failures raise :class:`NetworkError` whose message holds git's stderr with control characters
  stripped, secrets redacted and length capped. Arguments are passed as a list, never a shell;
  callers put ``--`` before user-controlled positionals.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from securehub._util.text import clean
from securehub.errors import NetworkError, OfflineError, RepoNotAllowed
from securehub.resolve._git_limits import git_limits, limit_hint, limited_command, pack_file_cap
from securehub.resolve.spec import github_base_url

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_OUTPUT_BYTES",
    "GitResult",
    "RemoteRefs",
    "git_limits",
    "github_token",
    "is_offline",
    "ls_remote",
    "network_timeout",
    "pack_file_cap",
    "pinned_resolution",
    "run_git",
    "sanitize_git_output",
]

DEFAULT_TIMEOUT_S = 300.0
#: Cap on what one git call may print on stdout. ``ls-remote`` of a real repository with every
#: pull-request ref is a few tens of MB; a hostile server's endless advertisement is not.
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
_MAX_STDERR_BYTES = 1024 * 1024
_READ_CHUNK = 1 << 16
_MAX_MESSAGE_CHARS = 2000
_PASSTHROUGH_ENV = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "SSH_AUTH_SOCK",
)
# Config forced on every invocation (``-c`` beats repository config for these keys).
_HARDENING_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", os.devnull),
    ("core.fsmonitor", "false"),
    ("core.symlinks", "true"),
    ("core.sshCommand", "ssh -o BatchMode=yes"),
    ("credential.helper", ""),
    ("http.followRedirects", "false"),
    ("http.sslVerify", "true"),
    ("submodule.recurse", "false"),
    ("protocol.allow", "never"),
    ("protocol.https.allow", "always"),
    ("protocol.ssh.allow", "always"),
    ("protocol.file.allow", "always"),
    ("protocol.http.allow", "always"),
    ("protocol.version", "2"),
)
_TOKEN_PATTERNS = (
    re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{10,}|github_pat_[A-Za-z0-9_]{10,})"),
    re.compile(r"(?i)(authorization:\s*)(basic|bearer|token)\s+\S+"),
    re.compile(r"(?i)(extraheader\S*\s*=?\s*)\S.*"),
    re.compile(r"(://)[^/\s@]+@"),
)
#: ``HOST:PORT:ADDR[,ADDR]`` entries for ``http.curloptResolve`` while a pinned resolution is active.
_RESOLVE_PINS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("securehub_git_resolve", default=())
_NETWORK_TIMEOUT: contextvars.ContextVar[float] = contextvars.ContextVar(
    "securehub_git_network_timeout", default=DEFAULT_TIMEOUT_S
)
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class GitResult:
    """A successful git run: decoded stdout and stderr."""

    stdout: str
    stderr: str


@dataclass(frozen=True)
class RemoteRefs:
    """What a remote advertises. Only ``refs/heads/*`` and ``refs/tags/*`` are kept.

    ``tags`` maps a tag name to its peeled commit (annotated tags are peeled with the
    ``^{}`` entry), ``head_symref`` is the default branch name (``HEAD`` -> ``refs/heads/X``),
    or ``None`` when the remote did not say. Every sha is 40 or 64 lowercase hex digits.
    """

    heads: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    head_symref: str | None = None


def is_offline() -> bool:
    """True when ``SECUREHUB_OFFLINE`` is set to anything but ''/0/false/no/off (fail closed)."""
    value = os.environ.get("SECUREHUB_OFFLINE", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def github_token() -> str | None:
    """``SECUREHUB_GITHUB_TOKEN``, else ``GITHUB_TOKEN``, else ``None``."""
    for name in ("SECUREHUB_GITHUB_TOKEN", "GITHUB_TOKEN"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def sanitize_git_output(text: str, *, secrets: Sequence[str] = ()) -> str:
    """Make git output safe to show: the one text sanitiser (:func:`securehub._util.text.clean` with
    ``reveal=False``: escape sequences removed whole, control, bidi and zero-width characters dropped,
    at most 2000 characters), secrets and credentials redacted (git's own concern), blank lines dropped.

    The sanitiser runs before the redaction as well as after it: a control character or an escape
    sequence inside a token must not hide it from the redaction and then vanish, rejoining it. That
    is why this text drops what it removes instead of showing it as an escape (``\\x1b`` kept in
    the middle of a token would split it, and half of the token would escape the redaction).
    """
    text = clean(text.replace("\r\n", "\n").replace("\r", "\n"), limit=len(text) + 1, reveal=False)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    text = _TOKEN_PATTERNS[0].sub("[REDACTED]", text)
    text = _TOKEN_PATTERNS[1].sub(r"\1[REDACTED]", text)
    text = _TOKEN_PATTERNS[2].sub(r"\1[REDACTED]", text)
    text = _TOKEN_PATTERNS[3].sub(r"\1[REDACTED]@", text)
    text = clean(text, limit=_MAX_MESSAGE_CHARS, reveal=False)
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def _is_network_remote(remote: str) -> bool:
    return not remote.lower().startswith("file://")


def _same_origin(remote: str, base: str) -> bool:
    """Same scheme, host, port, and ``remote``'s path under ``base``'s path."""
    try:
        r, b = urlsplit(remote), urlsplit(base)
        r_port, b_port = r.port, b.port
    except ValueError:
        return False
    if r.scheme.lower() != b.scheme.lower() or (r.hostname or "") != (b.hostname or ""):
        return False
    default = {"https": 443, "http": 80}.get(b.scheme.lower())
    if (r_port or default) != (b_port or default):
        return False
    if r.username is not None or r.password is not None:
        return False
    base_path = b.path.rstrip("/") + "/"
    return (r.path.rstrip("/") + "/").startswith(base_path)


def _token_config(remote: str | None) -> tuple[list[tuple[str, str]], list[str]]:
    """(config entries for env, secrets to redact): the auth header scoped to the GitHub base URL."""
    token = github_token()
    if token is None or remote is None:
        return [], []
    base = github_base_url()
    if not _same_origin(remote, base):
        return [], [token]
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
        raise NetworkError(
            "the GitHub token (SECUREHUB_GITHUB_TOKEN/GITHUB_TOKEN) contains whitespace, control or "
            "non-ASCII characters: expected a printable token; fix the variable's value."
        )
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    # git matches http.<url>.* on scheme, host, port and path prefix: only the base URL gets it.
    return [(f"http.{base}/.extraHeader", f"Authorization: Basic {basic}")], [token, basic]


def _false_program() -> str:
    return shutil.which("false") or "/bin/false"


def _base_env(private_dir: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C",
        "LC_ALL": "C",
        "HOME": private_dir,
        "XDG_CONFIG_HOME": private_dir,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CEILING_DIRECTORIES": str(Path(private_dir).parent),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": _false_program(),
        "SSH_ASKPASS": _false_program(),
        "SSH_ASKPASS_REQUIRE": "never",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        "GIT_ALLOW_PROTOCOL": "https:ssh:file:http",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_OPTIONAL_LOCKS": "0",
    }
    for name in _PASSTHROUGH_ENV:
        value = os.environ.get(name)
        if value is not None:
            env[name] = value
    return env


def local_git_command(args: Sequence[str], private_dir: str) -> tuple[list[str], dict[str, str]]:
    """The hardened command line and environment for a *local* git command (no remote, no token).

    For callers that need binary pipes (blob bytes, non-UTF-8 paths), which :func:`run_git`
    cannot return; ``private_dir`` becomes HOME and the working directory.
    """
    cmd = ["git"]
    for key, value in _HARDENING_CONFIG:
        cmd += ["-c", f"{key}={value}"]
    return [*cmd, *args], _base_env(private_dir)


@contextlib.contextmanager
def pinned_resolution(host: str, port: int, addresses: Sequence[str]) -> Iterator[None]:
    """While active, git's http(s) transport resolves ``host:port`` to ``addresses`` only.

    The caller has checked ``addresses`` (e.g. public only); curl then never
    asks DNS for ``host`` on that port, so a second, different answer cannot
    be used. An empty ``addresses`` pins nothing.
    """
    if not addresses:
        yield
        return
    shown = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
    entry = f"{host}:{port}:{shown}"
    if any(c in entry for c in "\n\r\0 "):
        raise ValueError(f"refusing to pin an address entry with whitespace or control characters: {entry!r}")
    token = _RESOLVE_PINS.set((*_RESOLVE_PINS.get(), entry))
    try:
        yield
    finally:
        _RESOLVE_PINS.reset(token)


@contextlib.contextmanager
def network_timeout(seconds: float) -> Iterator[None]:
    """While active, a git call contacting a network remote gets ``seconds`` of wall-clock time.

    The pipeline enters it with the policy's ``repos.git_timeout_s`` around every resolve and
    fetch, so a stalling or endless git server fails with ``network`` at the policy's bound.
    """
    if not seconds > 0:
        raise ValueError(f"a git timeout must be positive, got {seconds!r}")
    token = _NETWORK_TIMEOUT.set(float(seconds))
    try:
        yield
    finally:
        _NETWORK_TIMEOUT.reset(token)


class _Overrun(Exception):  # noqa: N818 - internal signal, mapped to NetworkError by run_git
    """The git call ran past its deadline (``what`` is ``None``) or printed more than its cap."""

    def __init__(self, what: str | None = None) -> None:
        super().__init__(what)
        self.what = what


def _communicate(proc: subprocess.Popen[bytes], input_bytes: bytes | None, timeout_s: float) -> tuple[bytes, bytes]:
    """Feed ``input_bytes`` and collect stdout/stderr until both close, within ``timeout_s``.

    Raises :class:`_Overrun` at the deadline or when stdout passes :data:`MAX_OUTPUT_BYTES`
    (stderr is capped at 1 MiB). Does not wait for (reap) the process: the caller kills its
    group first, while its pid cannot have been reused.
    """
    assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - both are PIPE in run_git
    deadline = time.monotonic() + timeout_s
    caps = {proc.stdout.fileno(): MAX_OUTPUT_BYTES, proc.stderr.fileno(): _MAX_STDERR_BYTES}
    out: dict[int, bytearray] = {fd: bytearray() for fd in caps}
    pending = memoryview(input_bytes or b"")
    with selectors.DefaultSelector() as sel:
        for fd in caps:
            sel.register(fd, selectors.EVENT_READ)
        if proc.stdin is not None:
            if pending:
                os.set_blocking(proc.stdin.fileno(), False)  # a full pipe must not block the read loop
                sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Overrun()
            for key, _events in sel.select(left):
                fd = key.fd
                if fd not in caps:  # stdin
                    try:
                        pending = pending[os.write(fd, pending[:_READ_CHUNK]) :]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending and proc.stdin is not None:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    sel.unregister(fd)
                    continue
                out[fd] += chunk
                if len(out[fd]) > caps[fd]:
                    raise _Overrun("stdout" if fd == proc.stdout.fileno() else "stderr")
    return bytes(out[proc.stdout.fileno()]), bytes(out[proc.stderr.fileno()])


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL git's whole process group (remote helpers, index-pack), then reap git.

    git leads the group (``start_new_session``) and is not reaped before this, so the group id
    cannot belong to anyone else. Killing after a normal exit is harmless (nothing is left).
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def run_git(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    remote: str | None = None,
    timeout_s: float | None = None,
    config: Mapping[str, str] | None = None,
    input_bytes: bytes | None = None,
) -> GitResult:
    """Run ``git <hardening -c options> <config -c options> <args>`` and return its output.

    ``remote`` names the URL this invocation contacts (the caller also puts it in ``args``,
    after ``--``); it drives the offline check and token scoping. ``config`` adds ``-c``
    entries (e.g. ``transfer.fsckObjects``). Without ``cwd``, git runs in a private empty dir
    so no repository (and no repository config) is discovered. ``timeout_s`` ``None``: the
    active :func:`network_timeout`. Whatever happens, git's process group is killed before
    this returns. Raises :class:`OfflineError` (before starting git) or :class:`NetworkError`
    (non-zero exit, timeout, output over the cap, git missing).
    """
    if remote is not None and _is_network_remote(remote) and is_offline():
        raise OfflineError(
            f"network access to {sanitize_git_output(remote)!r} refused: SECUREHUB_OFFLINE is set. "
            "Expected everything needed to be locked and cached; unset SECUREHUB_OFFLINE or "
            "populate the cache while online."
        )
    if timeout_s is None:
        timeout_s = _NETWORK_TIMEOUT.get()
    token_entries, secrets = _token_config(remote)
    cmd = ["git"]
    for key, value in (*_HARDENING_CONFIG, *(config or {}).items()):
        cmd += ["-c", f"{key}={value}"]
    for entry in _RESOLVE_PINS.get():
        cmd += ["-c", f"http.curloptResolve={entry}"]
    cmd += list(args)
    with tempfile.TemporaryDirectory(prefix="securehub-git-") as private_dir:
        env = _base_env(private_dir)
        git_path = shutil.which("git", path=env["PATH"])
        if git_path is None:
            raise NetworkError("git was not found on PATH: expected a git executable (>= 2.31); install git.")
        if token_entries:
            env["GIT_CONFIG_COUNT"] = str(len(token_entries))
            for i, (key, value) in enumerate(token_entries):
                env[f"GIT_CONFIG_KEY_{i}"] = key
                env[f"GIT_CONFIG_VALUE_{i}"] = value
        try:
            proc = subprocess.Popen(
                limited_command(git_path, cmd[1:]),
                cwd=os.fspath(cwd) if cwd is not None else private_dir,
                env=env,
                stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # one group to kill: git and every helper it starts
            )
        except FileNotFoundError:
            raise NetworkError("git was not found on PATH: expected a git executable (>= 2.31); install git.") from None
        try:
            stdout_b, stderr_b = _communicate(proc, input_bytes, timeout_s)
        except _Overrun as over:
            if over.what is None:
                raise NetworkError(
                    f"git {_describe(args)} did not finish within {timeout_s:g} s"
                    f"{_about(remote, secrets)}: expected a responsive remote; git and its helpers were "
                    "killed and nothing was kept. Check the network or the remote's availability and "
                    "retry (policy repos.git_timeout_s bounds every git network operation)."
                ) from None
            cap = MAX_OUTPUT_BYTES if over.what == "stdout" else _MAX_STDERR_BYTES
            raise NetworkError(
                f"git {_describe(args)} wrote more than {cap} bytes on {over.what}{_about(remote, secrets)}: "
                "expected a bounded answer (a huge ref advertisement?); git was killed and nothing was "
                "kept. The remote is misbehaving."
            ) from None
        finally:
            _end_group(proc)
    stdout = stdout_b.decode("utf-8", "replace")
    stderr = stderr_b.decode("utf-8", "replace")
    if proc.returncode != 0:
        detail = sanitize_git_output(stderr, secrets=secrets).rstrip(".") or "(no output)"
        _raise_unusable_remote(remote, stderr, detail, secrets)
        raise NetworkError(
            f"git {_describe(args)} failed with exit code {proc.returncode}{_about(remote, secrets)}: "
            f"expected success; git said: {detail}.{limit_hint(stderr)} Check the URL, your access rights "
            "and the network."
        )
    return GitResult(stdout=stdout, stderr=stderr)


def _raise_unusable_remote(remote: str | None, stderr: str, detail: str, secrets: Sequence[str]) -> None:
    """Failures no retry or network fix can cure get their own message and ``repo-not-allowed`` (issue 12).

    ``network`` says "check the network", which sends a CI engineer the wrong way for a
    remote that answers but can never serve a pinned commit (git's dumb HTTP protocol),
    or for a ``file://`` remote whose directory does not exist or is not a git repository.
    """
    if remote is None:
        return
    shown = sanitize_git_output(remote, secrets=secrets)
    if "dumb http transport" in stderr.lower():
        raise RepoNotAllowed(
            f"{shown!r} serves git's dumb HTTP protocol (static files); expected the smart HTTP protocol "
            "(git http-backend, as GitHub, GitLab, Gitea and Bitbucket serve), which securehub needs to "
            f"fetch exactly the pinned commit. git said: {detail}. Serve the repository over smart HTTP, "
            "or use a git+ssh:// or git+file:/// remote"
        )
    parts = urlsplit(remote)
    if parts.scheme == "file":
        path = Path(parts.path)
        lowered = stderr.lower()
        not_a_repo = "not a git repository" in lowered or "does not appear to be a git repository" in lowered
        if not path.exists() or not_a_repo or "could not read from remote repository" in lowered:
            found = "no such path" if not path.exists() else "a path that is not a git repository"
            raise RepoNotAllowed(
                f"{shown!r}: expected a local git repository at {sanitize_git_output(parts.path)!r}, found "
                f"{found}. Check the path in the git+file:/// spec (it must be absolute and name a bare or "
                "non-bare repository)"
            )


def _describe(args: Sequence[str]) -> str:
    """The git subcommand for messages (``fetch``, not the ``--git-dir`` option before it)."""
    rest = list(args)
    while len(rest) > 1 and rest[0] in ("--git-dir", "-C"):
        rest = rest[2:]  # an option and its value (a path) come before the subcommand
    return rest[0] if rest else ""


def _about(remote: str | None, secrets: Sequence[str]) -> str:
    return f" for {sanitize_git_output(remote, secrets=secrets)!r}" if remote else ""


def ls_remote(remote: str, *, timeout_s: float | None = None) -> RemoteRefs:
    """Ask ``remote`` for its branches, tags and default branch (``git ls-remote --symref``).

    Guarantees every returned sha is well-formed hex; does not guarantee the objects are
    commits (a tag may point at a tree - the fetcher finds out). Raises :class:`NetworkError`
    on failure or a malformed listing, :class:`OfflineError` when offline.
    """
    result = run_git(["ls-remote", "--symref", "--", remote], remote=remote, timeout_s=timeout_s)
    return parse_ls_remote(result.stdout, remote)


def parse_ls_remote(output: str, remote: str = "<remote>") -> RemoteRefs:
    """Parse ``git ls-remote --symref`` output (see :func:`ls_remote`)."""
    heads: dict[str, str] = {}
    tags: dict[str, str] = {}
    peeled: dict[str, str] = {}
    head_symref: str | None = None
    for line in output.splitlines():
        if not line:
            continue
        left, tab, refname = line.partition("\t")
        if not tab:
            raise _malformed(remote, line)
        if left.startswith("ref: "):
            target = left[len("ref: ") :]
            if refname == "HEAD" and target.startswith("refs/heads/"):
                head_symref = target[len("refs/heads/") :]
            continue
        sha = left.lower()
        if not _SHA.fullmatch(sha):
            raise _malformed(remote, line)
        if refname.startswith("refs/heads/"):
            heads[refname[len("refs/heads/") :]] = sha
        elif refname.startswith("refs/tags/"):
            name = refname[len("refs/tags/") :]
            if name.endswith("^{}"):
                peeled[name[: -len("^{}")]] = sha
            else:
                tags[name] = sha
        # Everything else (HEAD, refs/pull/*, refs/changes/*, ...) is never considered.
    for name, sha in peeled.items():
        if name in tags:
            tags[name] = sha
    return RemoteRefs(heads=heads, tags=tags, head_symref=head_symref)


def _malformed(remote: str, line: str) -> NetworkError:
    return NetworkError(
        f"git ls-remote for {sanitize_git_output(remote)!r} returned a malformed line "
        f"{sanitize_git_output(line)[:200]!r}: expected '<sha>\\t<ref>'; the remote is misbehaving."
    )
