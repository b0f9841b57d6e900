"""Parsing ``repo_or_dir`` into a :class:`RepoSpec` (SPEC section 2), with no I/O beyond ``stat``.

Accepted forms:

- ``owner/repo[:ref]`` - GitHub; remote ``{SECUREHUB_GITHUB_URL or https://github.com}/owner/repo.git``.
- ``git+https://host[:port]/path[@ref]``, ``git+ssh://[user@]host[:port]/path[@ref]``,
  ``git+file:///abs/path[@ref]`` - any git remote; ``git+http://`` only for loopback hosts.
  The ref separator is the last ``@`` *after* the host, so ``ssh://git@host/...`` works.
- ``source="local"``: a directory containing ``hubconf.py``.

Everything else is refused with ``repo-not-allowed`` before any network access: other schemes
and transports (``ext::``, ``fd::``, ``git://``, scp-like ``host:path``), credentials inside a
URL, option-looking hosts or users (``ssh://-oProxyCommand=...``, CVE-2017-1000117), control
characters, raw or percent-encoded (CVE-2020-5260). The ref is checked with
:func:`securehub.resolve.refs.check_ref_syntax` here already, so a refused ref never reaches git.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from securehub._util.net import is_loopback_host
from securehub.errors import RepoNotAllowed
from securehub.resolve.refs import check_ref_syntax

__all__ = ["DEFAULT_GITHUB_URL", "RepoSpec", "SpecKind", "github_base_url", "is_loopback_host", "parse_spec"]

SpecKind = Literal["github", "git", "local"]
DEFAULT_GITHUB_URL = "https://github.com"

# GitHub user/org names: alphanumerics and single hyphens, no leading hyphen, <= 39 chars
# (legacy names may contain '--' or end in '-', so only the leading hyphen is refused).
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}")
# GitHub repo names: alphanumerics, '.', '_', '-', <= 100 chars.
_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_SSH_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")
_PCT_CONTROL = re.compile(r"%(?:[01][0-9a-fA-F]|7[fF])")
_FORMS = (
    "expected 'owner/repo[:ref]', 'git+https://host/path[@ref]', 'git+ssh://host/path[@ref]', "
    "'git+file:///abs/path[@ref]' or 'git+http://' on a loopback host"
)


@dataclass(frozen=True)
class RepoSpec:
    """A parsed, syntactically safe repo spec. No network has been touched to build it.

    ``key``: the canonical spec string (the hub.lock key) - as written for GitHub and git specs,
    the absolute resolved directory for local ones. ``remote``: the URL git talks to (no
    ``git+``, no ``@ref``); for local specs, the absolute directory. ``ref``: as written
    (may carry a ``heads/``/``tags/`` prefix), ``None`` when absent; always passed
    :func:`check_ref_syntax`. ``name``: what policy repo globs match (``owner/repo``, the remote
    URL, or the absolute directory).
    """

    key: str
    kind: SpecKind
    remote: str
    ref: str | None
    name: str
    local_path: Path | None = None


#: Everything between ``://`` and the last ``@`` before the path: the user-info, password included (a
#: password may hold a raw ``@`` or ``:``). Refusals show the spec with it masked (red team 15: a
#: refused ``git+https://user:TOKEN@host/...`` echoed the token into the message, stderr and CI logs).
_SHOWN_USERINFO = re.compile(r"(://)[^/\s]*@")
_SHOWN_QUERY = re.compile(r"[?#].*?(?=@[^@/]*$|$)")


def shown_spec(text: str) -> str:
    """``text`` (a spec or a base URL) with user-info and any query or fragment masked, for messages."""
    return _SHOWN_QUERY.sub("?***", _SHOWN_USERINFO.sub(r"\1***@", text))


def _refuse(spec: str, why: str) -> RepoNotAllowed:
    return RepoNotAllowed(f"repo spec {shown_spec(spec)!r} is not allowed: {_FORMS}; found {why}.")


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F or c.isspace() for c in text)


def github_base_url() -> str:
    """The GitHub base URL: ``SECUREHUB_GITHUB_URL`` (trailing ``/`` dropped) or ``https://github.com``.

    Raises :class:`RepoNotAllowed` when the variable holds something that is not an ``https://``
    URL (or ``http://`` on a loopback host) without credentials, query or fragment.
    """
    raw = os.environ.get("SECUREHUB_GITHUB_URL", "").strip()
    if not raw:
        return DEFAULT_GITHUB_URL
    base = raw.rstrip("/")
    problem: str | None = None
    try:
        parts = urlsplit(base)
        port_ok = parts.port is not None or ":" not in parts.netloc.rsplit("]", 1)[-1]
    except ValueError:
        parts, port_ok = None, False
    if parts is None or not port_ok or _has_control(base):
        problem = "an unparseable URL"
    elif parts.scheme not in ("https", "http"):
        problem = f"scheme {parts.scheme!r}"
    elif parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        problem = "plain http:// to a non-loopback host"
    elif parts.username is not None or parts.password is not None:
        problem = "credentials in the URL (use SECUREHUB_GITHUB_TOKEN instead)"
    elif not parts.hostname or parts.query or parts.fragment:
        problem = "a URL without a host, or with a query or fragment"
    if problem is not None:
        raise RepoNotAllowed(
            f"SECUREHUB_GITHUB_URL={shown_spec(raw)!r} is not allowed: expected an https:// base URL such as "
            f"'https://github.example.com' (http:// only for loopback hosts); found {problem}."
        )
    return base


def parse_spec(repo_or_dir: str, source: str = "github") -> RepoSpec:
    """Parse ``repo_or_dir`` for ``source`` ("github" or "local") into a :class:`RepoSpec`.

    Raises :class:`RepoNotAllowed` for a malformed or forbidden spec, ``RefNotAllowed`` for a
    refused ref, ``TypeError``/``ValueError`` for programmer misuse (wrong types, unknown source).
    """
    if not isinstance(repo_or_dir, str):
        raise TypeError(f"repo_or_dir must be a str, not {type(repo_or_dir).__name__}")
    if source == "local":
        return _parse_local(repo_or_dir)
    if source != "github":
        raise ValueError(f"source must be 'github' or 'local', not {source!r}")
    try:
        return _parse_remote(repo_or_dir)
    except RepoNotAllowed as err:
        if looks_like_directory(repo_or_dir):
            raise RepoNotAllowed(
                f"{err.message} {shown_spec(repo_or_dir)!r} looks like a local directory: did you mean source='local'? "
                "(CLI: --source local; the strict policy refuses local sources)"
            ) from None
        raise


def looks_like_directory(text: str) -> bool:
    """A path the user probably meant as ``source="local"`` (torch.hub needs the same switch)."""
    if text.startswith(("/", "./", "../", "~")) or text in (".", ".."):
        return True
    try:
        return Path(text).is_dir()
    except (OSError, ValueError):
        return False


def _parse_remote(repo_or_dir: str) -> RepoSpec:
    ref = _ref_text(repo_or_dir)
    if ref is not None:
        # The ref is judged by the ref rules first, so whitespace or a control character in it
        # is `ref-not-allowed` (SPEC section 3), not `repo-not-allowed` (red-team finding 7d).
        # Whatever the ref check passes holds no whitespace or control character, so one found
        # below is in the repo part.
        check_ref_syntax(ref)
    if _has_control(repo_or_dir) or _PCT_CONTROL.search(repo_or_dir):
        raise _refuse(repo_or_dir, "whitespace or control characters")
    if repo_or_dir.startswith("git+"):
        return _parse_git_url(repo_or_dir)
    if "://" in repo_or_dir or repo_or_dir.startswith(("ext::", "fd::")) or "::" in repo_or_dir:
        raise _refuse(repo_or_dir, "a URL or transport without the 'git+' prefix")
    return _parse_github(repo_or_dir)


def _ref_text(spec: str) -> str | None:
    """The ref part of a GitHub or ``git+`` spec exactly as the form parsers split it, or ``None``."""
    if spec.startswith("git+"):
        _, sep, rest = spec[len("git+") :].partition("://")
        if not sep:
            return None
        path_and_ref = _split_authority(rest)[1]
        at = path_and_ref.rfind("@")
        return path_and_ref[at + 1 :] if at >= 0 else None
    if "://" in spec or "::" in spec:
        return None
    _, sep, ref = spec.partition(":")
    return ref if sep else None


def _parse_github(spec: str) -> RepoSpec:
    repo_part, sep, ref = spec.partition(":")
    pieces = repo_part.split("/")
    if len(pieces) != 2:
        raise _refuse(spec, f"{len(pieces) - 1} '/' in {repo_part!r} (expected exactly one)")
    owner, repo = pieces
    if not _OWNER.fullmatch(owner):
        raise _refuse(spec, f"owner {owner!r} (letters, digits and '-', not starting with '-')")
    if not _REPO.fullmatch(repo) or repo.startswith("-") or ".." in repo or repo in (".", ".."):
        raise _refuse(spec, f"repository name {repo!r} (letters, digits, '.', '_', '-'; no '..')")
    if repo.lower().endswith(".git"):
        raise _refuse(spec, f"repository name {repo!r} ending in '.git' (drop the suffix)")
    ref_or_none: str | None = None
    if sep:
        check_ref_syntax(ref)
        ref_or_none = ref
    name = f"{owner}/{repo}"
    remote = f"{github_base_url()}/{name}.git"
    return RepoSpec(key=spec, kind="github", remote=remote, ref=ref_or_none, name=name)


def _split_authority(rest: str) -> tuple[str, str]:
    """``host/path@ref`` -> (authority, path-with-ref); authority ends at the first '/'."""
    slash = rest.find("/")
    if slash < 0:
        return rest, ""
    return rest[:slash], rest[slash:]


def _parse_git_url(spec: str) -> RepoSpec:
    url = spec[len("git+") :]
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise _refuse(spec, "no '://' after 'git+'")
    scheme = scheme.lower()
    if scheme not in ("https", "http", "ssh", "file"):
        raise _refuse(spec, f"scheme {scheme!r}")
    authority, path_and_ref = _split_authority(rest)
    ref: str | None = None
    at = path_and_ref.rfind("@")
    path = path_and_ref
    if at >= 0:
        path, ref = path_and_ref[:at], path_and_ref[at + 1 :]
        check_ref_syntax(ref)
    remote = f"{scheme}://{authority}{path}"
    try:
        parts = urlsplit(remote)
        port = parts.port
    except ValueError as exc:
        raise _refuse(spec, f"an unparseable URL ({exc})") from None
    if parts.query or parts.fragment or "?" in remote or "#" in remote:
        raise _refuse(spec, "a query or fragment in the URL")
    if scheme == "file":
        _check_file_url(spec, parts)
    else:
        _check_network_url(spec, scheme, parts, authority, port)
    return RepoSpec(key=spec, kind="git", remote=remote, ref=ref, name=remote)


def _check_file_url(spec: str, parts: SplitResult) -> None:
    if parts.netloc:
        raise _refuse(spec, f"host {parts.netloc!r} in a file URL (write git+file:///abs/path)")
    if not parts.path.startswith("/") or parts.path.startswith("//") or parts.path in ("", "/"):
        raise _refuse(spec, "a file URL without an absolute path")


def _check_network_url(spec: str, scheme: str, parts: SplitResult, authority: str, port: int | None) -> None:
    host = parts.hostname or ""
    if not host:
        raise _refuse(spec, "no host")
    bare = host.strip("[]")
    if not (_HOST.fullmatch(bare) or _is_ip(bare)):
        raise _refuse(spec, f"host {host!r} (letters, digits, '.', '-'; not starting with '-')")
    if port == 0:
        raise _refuse(spec, "port 0")
    userinfo = authority.rpartition("@")[0] if "@" in authority else None
    if userinfo is not None:
        if scheme != "ssh":
            raise _refuse(spec, "credentials in the URL (use SECUREHUB_GITHUB_TOKEN for GitHub)")
        if ":" in userinfo:
            raise _refuse(spec, "a password in the ssh URL")
        if not _SSH_USER.fullmatch(userinfo):
            raise _refuse(spec, f"ssh user {userinfo!r} (must not start with '-')")
    if not parts.path or parts.path == "/":
        raise _refuse(spec, "no repository path")
    if parts.path.startswith("/-") or "/-" in parts.path:
        raise _refuse(spec, "a path component starting with '-'")
    if scheme == "http" and not is_loopback_host(host):
        raise _refuse(spec, f"plain git+http:// to non-loopback host {host!r} (use git+https://)")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _parse_local(repo_or_dir: str) -> RepoSpec:
    if not repo_or_dir or "\0" in repo_or_dir:
        raise RepoNotAllowed(
            f"local source {repo_or_dir!r} is not allowed: expected a directory containing hubconf.py."
        )
    path = Path(repo_or_dir).expanduser().resolve()
    if not path.is_dir():
        raise RepoNotAllowed(
            f"local source {repo_or_dir!r} is not allowed: expected a directory containing hubconf.py, "
            f"found no directory at {str(path)!r}."
        )
    if not (path / "hubconf.py").is_file():
        raise RepoNotAllowed(
            f"local source {repo_or_dir!r} is not allowed: expected a directory containing hubconf.py, "
            f"found none in {str(path)!r}."
        )
    text = str(path)
    return RepoSpec(key=text, kind="local", remote=text, ref=None, name=text, local_path=path)
