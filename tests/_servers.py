"""Test servers and a repo factory. Everything binds loopback only; nothing reaches the internet.

- :class:`GitServer` - a real git smart-HTTP server (``git http-backend`` run as CGI) serving a
  directory of bare repos at ``http://HOST:PORT/<owner>/<repo>.git``. Protocol v2 works (the
  ``Git-Protocol`` header is passed on as ``GIT_PROTOCOL``); gzip and chunked request bodies are
  decoded before they reach the backend. Every request and every accepted connection is logged.
- :class:`RepoFactory` / :class:`RepoHandle` - build bare repos from Python with git plumbing
  (deterministic SHAs: fixed author, committer and dates, clean git env).
  ``commit_raw_tree`` writes tree objects byte for byte (``git hash-object --literally``), so it
  can produce trees a worktree never could: entries named ``..``, ``.``, ``.git``, names with a
  backslash (``a\\b``), gitlinks (``160000``), exec/symlink modes anywhere. A ``/`` inside a path
  always splits it into nested trees, so ``"../x"`` is a tree ``..`` containing ``x`` and
  ``"a/.git/config"`` nests a ``.git`` dir. What cannot be made usefully: a NUL in a name (the
  format ends names at NUL); an empty name (a leading ``/``) is written but git itself then
  refuses to read the tree ("empty filename in tree entry"); odd modes such as ``020000``
  (a char device) are written but git canonicalises every non-file, non-symlink, non-dir mode
  to a gitlink (``160000``) when reading, so "device files" arrive as gitlinks.
- :class:`ArtifactServer` - serves bytes from memory with ``Range`` (206/416), redirects,
  content swaps, endless bodies, stalls, byte-a-second drips, mid-body hang-ups and a request
  log that includes headers.
"""

from __future__ import annotations

import atexit
import gzip
import os
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "ArtifactServer",
    "Exec",
    "GitServer",
    "RepoFactory",
    "RepoHandle",
    "RequestRecord",
    "Symlink",
    "clean_git_env",
    "git",
]

# --------------------------------------------------------------------------------------------
# clean git for the fixtures
# --------------------------------------------------------------------------------------------

_FIXED_DATE = "1700000000 +0000"
_FIXTURE_HOME = Path(tempfile.mkdtemp(prefix="securehub-fixture-home-"))
atexit.register(shutil.rmtree, _FIXTURE_HOME, ignore_errors=True)


def clean_git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for fixture git commands: no user or system config, fixed identity and dates."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(_FIXTURE_HOME),
        "XDG_CONFIG_HOME": str(_FIXTURE_HOME),
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Fixture Author",
        "GIT_AUTHOR_EMAIL": "author@example.invalid",
        "GIT_AUTHOR_DATE": _FIXED_DATE,
        "GIT_COMMITTER_NAME": "Fixture Committer",
        "GIT_COMMITTER_EMAIL": "committer@example.invalid",
        "GIT_COMMITTER_DATE": _FIXED_DATE,
    }
    if extra:
        env.update(extra)
    return env


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> str:  # noqa: A002
    """Run fixture git; return stdout stripped. Raises ``CalledProcessError`` with stderr on failure."""
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        env=clean_git_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, ["git", *args], proc.stdout, proc.stderr)
    return proc.stdout.decode("utf-8", "surrogateescape").strip()


# --------------------------------------------------------------------------------------------
# request log shared by both servers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request a test server received. Header names are lower-cased."""

    method: str
    path: str
    headers: Mapping[str, str]
    client: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _LoggingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: Any) -> None:
        self.owner = owner
        super().__init__(addr, handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.owner._lock:
            self.owner._connections += 1
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints the traceback to sys.stderr, which a test capturing sys.stderr (capsys) in the
        # same process would read as its own output: a client that hung up mid-response elsewhere made
        # tests/attacks/test_cli_error_masquerade.py fail. Kept on the server instead (handler_errors).
        with self.owner._lock:
            self.owner.handler_errors.append(traceback.format_exc())


class _ServerBase:
    """Start/stop and the request log; subclasses provide the handler."""

    _handler: type[BaseHTTPRequestHandler]

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._connections = 0
        #: Tracebacks of requests whose handler raised (a client hanging up mid-response, mostly).
        self.handler_errors: list[str] = []
        self._stop = threading.Event()
        self._httpd = _LoggingServer((host, 0), self._handler, self)
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> _ServerBase:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # log -----------------------------------------------------------------------------------
    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._log.append(rec)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received since the last :meth:`clear_log`."""
        with self._lock:
            return list(self._log)

    @property
    def connections(self) -> int:
        """TCP connections accepted since the last :meth:`clear_log` (counts even request-less ones)."""
        with self._lock:
            return self._connections

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._connections = 0


def _headers_of(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    return {k.lower(): v for k, v in handler.headers.items()}


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """Read a request body: Content-Length or chunked; decode gzip/deflate Content-Encoding."""
    te = (handler.headers.get("Transfer-Encoding") or "").lower()
    if "chunked" in te:
        parts: list[bytes] = []
        while True:
            line = handler.rfile.readline()
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
        body = b"".join(parts)
    else:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
    enc = (handler.headers.get("Content-Encoding") or "").lower()
    if enc in ("gzip", "x-gzip"):
        body = gzip.decompress(body)
    elif enc == "deflate":
        body = zlib.decompress(body)
    return body


# --------------------------------------------------------------------------------------------
# git smart-HTTP server
# --------------------------------------------------------------------------------------------


class _GitHandler(BaseHTTPRequestHandler):
    server: _LoggingServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return  # quiet; the owner keeps a structured log

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        owner: GitServer = self.server.owner
        owner._record(RequestRecord(self.command, self.path, _headers_of(self), self.client_address[0]))
        parts = urlsplit(self.path)
        body = _read_body(self) if self.command == "POST" else b""
        env = clean_git_env(
            {
                "GIT_PROJECT_ROOT": str(owner.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": unquote(parts.path),
                "QUERY_STRING": parts.query,
                "CONTENT_TYPE": self.headers.get("Content-Type") or "",
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": self.client_address[0],
            }
        )
        proto = self.headers.get("Git-Protocol")
        if proto:
            env["GIT_PROTOCOL"] = proto
        proc = subprocess.run(
            ["git", "http-backend"], input=body, capture_output=True, env=env, check=False, timeout=120
        )
        out = proc.stdout
        sep = out.find(b"\r\n\r\n")
        sep_len = 4
        if sep < 0:
            sep, sep_len = out.find(b"\n\n"), 2
        if sep < 0:
            msg = proc.stderr.decode(errors="replace")[:200]
            self.send_error(500, "http-backend produced no headers: " + msg)
            return
        head, payload = out[:sep], out[sep + sep_len :]
        status, reason = 200, "OK"
        headers: list[tuple[str, str]] = []
        for raw in head.decode("latin-1").splitlines():
            if not raw.strip():
                continue
            name, _, value = raw.partition(":")
            value = value.strip()
            if name.lower() == "status":
                code, _, reason = value.partition(" ")
                status = int(code)
            else:
                headers.append((name, value))
        self.send_response(status, reason or None)
        for name, value in headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class GitServer(_ServerBase):
    """``git http-backend`` over HTTP for every bare repo under ``root``."""

    _handler = _GitHandler

    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        super().__init__(host)

    def url_for(self, full_name: str) -> str:
        return f"{self.base_url}/{full_name}.git"

    def requests_for(self, full_name: str) -> list[RequestRecord]:
        prefix = f"/{full_name}.git/"
        return [r for r in self.requests if r.path.startswith(prefix)]


# --------------------------------------------------------------------------------------------
# repo factory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Symlink:
    """A symlink entry (mode 120000) whose blob is ``target``."""

    target: str


@dataclass(frozen=True)
class Exec:
    """An executable file (mode 100755)."""

    content: str | bytes


FileValue = str | bytes | Symlink | Exec | None
_TREE_MODE = "40000"


def _blob_of(value: str | bytes | Symlink | Exec) -> tuple[str, bytes]:
    if isinstance(value, Symlink):
        return "120000", value.target.encode("utf-8", "surrogateescape")
    if isinstance(value, Exec):
        c = value.content
        return "100755", c.encode() if isinstance(c, str) else c
    return "100644", value.encode() if isinstance(value, str) else value


def _tree_sort_key(item: tuple[bytes, str, str]) -> bytes:
    name, mode, _ = item
    return name + b"/" if mode == _TREE_MODE else name


class RepoHandle:
    """A bare repo served by the git server. All refs are written with plumbing (no hooks, no worktree)."""

    def __init__(self, factory: RepoFactory, full_name: str, path: Path, default_branch: str) -> None:
        self._factory = factory
        self.full_name = full_name
        self.path = path
        self.default_branch = default_branch
        self._pull_counter = 0
        self._tick = 0

    # urls ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/owner/name.git``."""
        return self._factory.server.url_for(self.full_name)

    @property
    def file_url(self) -> str:
        return f"file://{self.path}"

    @property
    def spec(self) -> str:
        """The GitHub-form spec (``owner/name``), for use with the ``github_url`` fixture."""
        return self.full_name

    # plumbing ------------------------------------------------------------------------------
    def git(self, *args: str, input: bytes | None = None) -> str:  # noqa: A002
        return git("--git-dir", str(self.path), *args, input=input)

    def _hash(self, kind: str, data: bytes, *, literally: bool = False) -> str:
        extra = ["--literally"] if literally else []
        return self.git("hash-object", "-w", "-t", kind, *extra, "--stdin", input=data)

    def _write_tree(self, entries: Mapping[str, tuple[str, str]], *, literally: bool = False) -> str:
        """Write nested trees from ``path -> (mode, sha)``; returns the root tree sha."""
        direct: dict[bytes, tuple[str, str]] = {}
        subdirs: dict[bytes, dict[str, tuple[str, str]]] = {}
        for path, entry in entries.items():
            head, sep, rest = path.partition("/")
            key = head.encode("utf-8", "surrogateescape")
            if sep:
                subdirs.setdefault(key, {})[rest] = entry
            else:
                direct[key] = entry
        items: list[tuple[bytes, str, str]] = [(n, m, s) for n, (m, s) in direct.items()]
        for name, sub in subdirs.items():
            items.append((name, _TREE_MODE, self._write_tree(sub, literally=literally)))
        items.sort(key=_tree_sort_key)
        data = b"".join(m.encode() + b" " + n + b"\0" + bytes.fromhex(s) for n, m, s in items)
        return self._hash("tree", data, literally=literally)

    def _flat_tree(self, rev: str) -> dict[str, tuple[str, str]]:
        out = self.git("ls-tree", "-r", "-z", "--full-tree", rev)
        flat: dict[str, tuple[str, str]] = {}
        for rec in out.split("\0"):
            if not rec:
                continue
            meta, path = rec.split("\t", 1)
            mode, _type, sha = meta.split(" ")
            flat[path] = (mode, sha)
        return flat

    def _ref_sha(self, ref: str) -> str | None:
        try:
            return self.git("rev-parse", "--verify", "--quiet", ref + "^{commit}")
        except subprocess.CalledProcessError:
            return None

    def _commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        # A distinct timestamp per commit keeps SHAs deterministic but different for identical trees.
        self._tick += 1
        date = f"{1700000000 + self._tick} +0000"
        args = ["commit-tree", tree]
        for p in parents:
            args += ["-p", p]
        args += ["-m", message]
        proc = subprocess.run(
            ["git", "--git-dir", str(self.path), *args],
            capture_output=True,
            env=clean_git_env({"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}),
            check=True,
        )
        return proc.stdout.decode().strip()

    def _build(self, base: str | None, files: Mapping[str, FileValue], replace: bool) -> str:
        flat = {} if (replace or base is None) else self._flat_tree(base)
        for path, value in files.items():
            if value is None:
                flat.pop(path, None)
                continue
            mode, data = _blob_of(value)
            flat[path] = (mode, self._hash("blob", data))
        return self._write_tree(flat)

    # public API ----------------------------------------------------------------------------
    def commit(
        self,
        files: Mapping[str, FileValue],
        message: str = "update",
        *,
        branch: str | None = None,
        replace: bool = False,
        parent: str | None = None,
    ) -> str:
        """Commit on ``branch`` (default: the default branch) and move it; returns the commit sha.

        ``files`` updates the parent's tree (``None`` deletes a path) unless ``replace=True``.
        ``parent`` overrides the parent commit (default: the branch's current commit, if any).
        """
        branch = branch or self.default_branch
        base = parent or self._ref_sha(f"refs/heads/{branch}")
        tree = self._build(base, files, replace)
        sha = self._commit_tree(tree, [base] if base else [], message)
        self.git("update-ref", f"refs/heads/{branch}", sha)
        return sha

    def head_commit(self, branch: str | None = None) -> str:
        sha = self._ref_sha(f"refs/heads/{branch or self.default_branch}")
        assert sha is not None
        return sha

    def tag(self, name: str, commit: str | None = None, *, annotated: bool = False, force: bool = False) -> str:
        """Create a tag; returns the tag *object* sha for annotated tags, else the commit sha."""
        target = commit or self.head_commit()
        args = ["tag"]
        if force:
            args.append("-f")
        if annotated:
            args += ["-a", "-m", f"tag {name}"]
        self.git(*args, name, target)
        return self.git("rev-parse", f"refs/tags/{name}")

    def force_tag(self, name: str, commit: str, *, annotated: bool = False) -> str:
        """Re-point an existing tag (what a force-push of a tag does)."""
        return self.tag(name, commit, annotated=annotated, force=True)

    def delete_ref(self, ref: str) -> None:
        self.git("update-ref", "-d", ref)

    def branch(self, name: str, commit: str | None = None) -> None:
        self.git("update-ref", f"refs/heads/{name}", commit or self.head_commit())

    def set_head(self, branch: str) -> None:
        """Make ``branch`` the default branch (what the remote's ``HEAD`` points to)."""
        self.git("symbolic-ref", "HEAD", f"refs/heads/{branch}")
        self.default_branch = branch

    def fork_commit(self, files: Mapping[str, FileValue], message: str = "fork change") -> str:
        """A commit reachable only through ``refs/pull/N/head`` (GitHub's view of a fork's PR)."""
        base = self._ref_sha(f"refs/heads/{self.default_branch}")
        tree = self._build(base, files, replace=False)
        sha = self._commit_tree(tree, [base] if base else [], message)
        self._pull_counter += 1
        self.git("update-ref", f"refs/pull/{self._pull_counter}/head", sha)
        return sha

    def commit_raw_tree(
        self,
        entries: list[tuple[str, str, str | bytes]],
        message: str = "raw tree",
        *,
        branch: str | None = None,
        tag: str | None = None,
    ) -> str:
        """Commit a tree written byte for byte, bypassing git's path checks; returns the commit sha.

        ``entries`` are ``(path, mode, content)``; ``path`` is split on ``/`` into nested trees
        and each component is written verbatim, so ``..``, ``.``, ``.git`` and backslashes are
        possible (see the module docstring for what git refuses to read back). ``mode`` is an
        octal string: ``100644``, ``100755``, ``120000`` (symlink; content is the target),
        ``160000`` (gitlink; content must be a hex commit id). The commit is parentless and goes
        on ``branch`` (default: the default branch), and also on ``tag`` if given.
        """
        flat: dict[str, tuple[str, str]] = {}
        for path, mode, content in entries:
            if mode == "160000":
                sha = content.decode() if isinstance(content, bytes) else content
            else:
                data = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
                sha = self._hash("blob", data)
            flat[path] = (mode, sha)
        tree = self._write_tree(flat, literally=True)
        sha = self._commit_tree(tree, [], message)
        self.git("update-ref", f"refs/heads/{branch or self.default_branch}", sha)
        if tag:
            self.git("update-ref", f"refs/tags/{tag}", sha)
        return sha

    def refs(self) -> dict[str, str]:
        out = self.git("for-each-ref", "--format=%(refname) %(objectname)")
        return dict(line.split(" ", 1) for line in out.splitlines() if line)


class RepoFactory:
    """Creates bare repos under a :class:`GitServer`'s root."""

    def __init__(self, server: GitServer) -> None:
        self.server = server
        self.created: list[Path] = []

    def make_repo(
        self,
        full_name: str,
        files: Mapping[str, FileValue] | None = None,
        *,
        branch: str = "main",
        message: str = "initial",
    ) -> RepoHandle:
        """Create (or re-create, wiping a previous one) bare repo ``owner/name``.

        With ``files`` an initial commit is made on ``branch``, which is also the repo's HEAD.
        """
        path = self.server.root / f"{full_name}.git"
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        git("init", "--quiet", "--bare", "-b", branch, str(path))
        for key, value in (
            ("uploadpack.allowReachableSHA1InWant", "true"),
            ("uploadpack.allowFilter", "true"),
            ("http.receivepack", "false"),
        ):
            git("--git-dir", str(path), "config", key, value)
        self.created.append(path)
        handle = RepoHandle(self, full_name, path, branch)
        if files is not None:
            handle.commit(files, message)
        return handle

    def cleanup(self) -> None:
        for path in self.created:
            shutil.rmtree(path, ignore_errors=True)
        self.created.clear()


# --------------------------------------------------------------------------------------------
# artifact server
# --------------------------------------------------------------------------------------------


@dataclass
class _Behaviour:
    redirect: tuple[str, int] | None = None
    endless: bool = False
    stall_after: int | None = None
    drip_interval_s: float | None = None
    rate_bytes_per_s: float | None = None
    drop_after: int | None = None
    gate: threading.Event | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None


class _ArtifactHandler(BaseHTTPRequestHandler):
    server: _LoggingServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        owner: ArtifactServer = self.server.owner
        owner._record(RequestRecord(self.command, self.path, _headers_of(self), self.client_address[0]))
        path = urlsplit(self.path).path
        with owner._lock:
            data = owner._files.get(path)
            beh = owner._behaviour.get(path, _Behaviour())
        if beh.gate is not None:
            while not (beh.gate.wait(0.05) or owner._stop.is_set()):
                pass
        if beh.redirect is not None:
            location, code = beh.redirect
            self.send_response(code)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if beh.status is not None:
            self.send_response(beh.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if beh.endless:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            for k, v in beh.extra_headers.items():
                self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if head:
                return
            chunk = b"\0" * 65536
            try:
                while not owner._stop.is_set():
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                return
            return
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, start, end = 200, 0, len(data)
        rng = self.headers.get("Range")
        if rng:
            parsed = _parse_range(rng, len(data))
            if parsed is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, (start, end) = 206, parsed
        body = data[start:end]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        headers = {"Content-Length": str(len(body)), **beh.extra_headers}
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if head:
            return
        try:
            if beh.drip_interval_s is not None:
                self._drip(body, beh.drip_interval_s, owner)
                return
            if beh.rate_bytes_per_s is not None:
                self._paced(body, beh.rate_bytes_per_s, owner)
                return
            if beh.drop_after is not None:
                self.wfile.write(body[: beh.drop_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # hang up mid-body, with the full length declared
                return
            if beh.stall_after is not None:
                self.wfile.write(body[: beh.stall_after])
                self.wfile.flush()
                owner._stop.wait(120)  # released when the server stops
                self.close_connection = True
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return

    def _paced(self, body: bytes, rate: float, owner: ArtifactServer) -> None:
        """The body at ``rate`` bytes per second on average (1 MiB writes, each sent when it is due)."""
        start = time.monotonic()
        view = memoryview(body)
        for off in range(0, len(body), 1 << 20):
            due = start + off / rate
            if owner._stop.wait(max(0.0, due - time.monotonic())):
                return
            self.wfile.write(view[off : off + (1 << 20)])

    def _drip(self, body: bytes, interval_s: float, owner: ArtifactServer) -> None:
        """One byte per ``interval_s``: every read returns something, long before a read timeout."""
        self.close_connection = True
        for i in range(len(body)):
            if owner._stop.wait(interval_s if i else 0):
                return
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """Single ``bytes=`` range -> half-open ``(start, end)``; ``None`` when unsatisfiable/unsupported."""
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return None
            return max(0, size - n), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    end = min(end, size)
    if start >= size or start >= end:
        return None
    return start, end


class ArtifactServer(_ServerBase):
    """Serves ``path -> bytes`` from memory. Paths start with ``/``."""

    _handler = _ArtifactHandler

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._files: dict[str, bytes] = {}
        self._behaviour: dict[str, _Behaviour] = {}
        super().__init__(host)

    def url(self, path: str) -> str:
        return f"{self.base_url}{_norm(path)}"

    def put(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path`` (replacing anything there, including a redirect); returns the URL."""
        p = _norm(path)
        with self._lock:
            self._files[p] = data
            self._behaviour.pop(p, None)
        return self.url(p)

    def remove(self, path: str) -> None:
        with self._lock:
            self._files.pop(_norm(path), None)

    def _set(self, path: str, **changes: Any) -> str:
        p = _norm(path)
        with self._lock:
            beh = self._behaviour.setdefault(p, _Behaviour())
            for k, v in changes.items():
                setattr(beh, k, v)
        return self.url(p)

    def add_redirect(self, path: str, location: str, code: int = 302) -> str:
        """Answer ``path`` with ``code`` and ``Location: location``; returns the URL of ``path``."""
        return self._set(path, redirect=(location, code))

    def set_endless(self, path: str) -> str:
        """Answer ``path`` with a body that never ends (no Content-Length) until the client hangs up."""
        return self._set(path, endless=True)

    def set_stall(self, path: str, after_bytes: int = 0) -> str:
        """Send headers (full Content-Length) and ``after_bytes`` of body, then stall until stop()."""
        return self._set(path, stall_after=after_bytes)

    def set_drip(self, path: str, interval_s: float = 1.0) -> str:
        """Send headers (full Content-Length), then the body one byte per ``interval_s``."""
        return self._set(path, drip_interval_s=interval_s)

    def set_rate(self, path: str, bytes_per_s: float) -> str:
        """Serve the body at ``bytes_per_s`` on average (a network-like download for benchmarks)."""
        return self._set(path, rate_bytes_per_s=bytes_per_s)

    def set_gate(self, path: str) -> threading.Event:
        """Hold every request for ``path`` (after logging it) until the returned event is set."""
        gate = threading.Event()
        self._set(path, gate=gate)
        return gate

    def set_drop(self, path: str, after_bytes: int) -> str:
        """Send headers (full Content-Length) and ``after_bytes`` of body, then hang up."""
        return self._set(path, drop_after=after_bytes)

    def set_headers(self, path: str, headers: Mapping[str, str]) -> str:
        """Extra/overriding response headers (e.g. a lying ``Content-Length``)."""
        return self._set(path, extra_headers=dict(headers))

    def set_status(self, path: str, status: int) -> str:
        return self._set(path, status=status)

    def requests_for(self, path: str) -> list[RequestRecord]:
        p = _norm(path)
        return [r for r in self.requests if urlsplit(r.path).path == p]


def _norm(path: str) -> str:
    return path if path.startswith("/") else "/" + path
