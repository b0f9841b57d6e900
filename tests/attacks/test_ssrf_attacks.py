"""Attacks: server-side request forgery through the parent (red-team finding 5).

The hubconf runs in the sandbox without network, but it can ask the *parent* to connect: an
artifact URL for the broker (``torch.hub.load_state_dict_from_url`` / ``download_url_to_file``),
or a ``git+`` remote for a nested ``torch.hub.load``. A URL or remote that hub.lock does not pin may
reach only public addresses -- checked on the resolved address at connect time, on every redirect --
unless the policy names the host literally or the bytes come from a configured mirror. Each test
asserts the exact code and that nothing happened: the target got no connection, nothing was cached,
hub.lock is byte-identical, the secret is in no message.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import urllib3.util.connection

import securehub
import securehub.fetch.addrguard as addrguard
import securehub.resolve.git as git_mod
from securehub.errors import SecureHubError
from securehub.fetch.addrguard import AddressGuard, non_public_reason
from securehub.pipeline.lock import lock_repos
from securehub.store.cache import Cache
from tests._artifact_helpers import (  # *_fixture: pytest fixtures, registered by name
    blobs,
    fetch,
    hub_cache_fixture,  # noqa: F401
    server_fixture,  # noqa: F401
)
from tests._hub_helpers import (
    MIRRORED,
    NEEDS_FULL_SANDBOX,
    HubEnv,
    Snapshot,
    TcpListener,
    hub_env_context,
    publish,
    write_policy,
)
from tests._servers import ArtifactServer, GitServer

ADMIN_TOKEN = "admin-token-" + "S3cr3tT0k3n" * 3

HUBCONF = """
import os
import tempfile

import torch
from torch import nn

dependencies = ["torch"]


def via_load_state_dict(url):
    torch.hub.load_state_dict_from_url(url, progress=False)
    return nn.Linear(1, 1)


def via_download(url):
    dst = os.path.join(tempfile.gettempdir(), "stolen")
    torch.hub.download_url_to_file(url, dst, progress=False)
    data = open(dst, "rb").read()
    model = nn.Linear(1, 1)
    with torch.no_grad():  # smuggle the body back in the weights
        model.bias.copy_(torch.tensor([float(len(data))]))
    return model


def nested(spec):
    return torch.hub.load(spec, "lin")
"""

INNER = """
from torch import nn

dependencies = ["torch"]


def lin():
    return nn.Linear(2, 2)
"""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("ssrf"), git_server) as hub_env:
        yield hub_env


@pytest.fixture(scope="module")
def spec(env: HubEnv) -> str:
    return env.spec(publish(env, "ssrf", {"hubconf.py": HUBCONF}))


@pytest.fixture(scope="module")
def inner_remote(env: HubEnv) -> str:
    """A real repo on the loopback git server, as a ``git+http://127.0.0.1:PORT/...@v1`` spec."""
    inner = publish(env, "ssrf-inner", {"hubconf.py": INNER})
    return f"git+{inner.url}@v1"


@pytest.fixture
def admin() -> Iterator[ArtifactServer]:
    """An internal admin endpoint on another loopback port: the SSRF target."""
    server = ArtifactServer()
    server.start()
    server.put("/admin/token", ADMIN_TOKEN.encode())
    server.clear_log()
    yield server
    server.stop()


@pytest.fixture
def lock(env: HubEnv, spec: str, tmp_path: Path) -> Path:
    path = tmp_path / "hub.lock"
    lock_repos([spec], policy="default", lock=path)
    return path


def _refused(env: HubEnv, lock: Path, code: str, call: Any) -> str:
    """Run ``call``; assert it raised ``code`` and changed neither the cache nor hub.lock."""
    before = Snapshot.take(env.hub, lock)
    with pytest.raises(SecureHubError) as excinfo:
        call()
    msg = str(excinfo.value)
    before.assert_unchanged(env.hub, lock)
    assert ADMIN_TOKEN not in msg
    assert excinfo.value.code == code, msg
    return msg


# --------------------------------------------------------------------------- artifacts, end to end


@NEEDS_FULL_SANDBOX
@pytest.mark.parametrize("entrypoint", ["via_load_state_dict", "via_download"])
def test_ssrf_hubconf_fetches_unlocked_loopback_admin_url(
    env: HubEnv, spec: str, lock: Path, admin: ArtifactServer, entrypoint: str
) -> None:
    url = admin.url("/admin/token")
    msg = _refused(
        env, lock, "artifact-not-allowed",
        lambda: securehub.load(spec, entrypoint, url=url, policy="default", lock=lock, verbose=False),
    )  # fmt: skip
    assert admin.connections == 0
    assert "127.0.0.1" in msg and "artifacts.hosts" in msg


@NEEDS_FULL_SANDBOX
def test_ssrf_redirect_from_mirror_to_loopback_admin_is_refused(
    env: HubEnv, spec: str, lock: Path, admin: ArtifactServer
) -> None:
    """The configured mirror is trusted as configured -- its own origin, not where it redirects."""
    env.artifacts.add_redirect("/ssrf/redirect.safetensors", admin.url("/admin/token"))
    url = MIRRORED + "ssrf/redirect.safetensors"
    msg = _refused(
        env, lock, "artifact-not-allowed",
        lambda: securehub.load(spec, "via_load_state_dict", url=url, policy="default", lock=lock, verbose=False),
    )  # fmt: skip
    assert env.artifacts.requests_for("/ssrf/redirect.safetensors")  # the mirror itself was asked
    assert admin.connections == 0
    assert "redirect target" in msg


@NEEDS_FULL_SANDBOX
def test_ssrf_lock_e_refuses_to_record_loopback_url_without_explicit_host(
    env: HubEnv, spec: str, lock: Path, admin: ArtifactServer, tmp_path: Path
) -> None:
    url = admin.url("/admin/token")
    _refused(
        env, lock, "artifact-not-allowed",
        lambda: lock_repos([spec], entrypoints=["via_download"], args={"url": url}, policy="default", lock=lock),
    )  # fmt: skip
    assert admin.connections == 0
    # Positive control: the policy names 127.0.0.1 literally -> the user decided; lock -e records it.
    policy = write_policy(tmp_path / "named.yaml", "default", artifacts={"hosts": ["*", "127.0.0.1"]})
    lock_repos([spec], entrypoints=["via_download"], args={"url": url}, policy=str(policy), lock=lock)
    assert url in lock.read_text()
    assert admin.connections >= 1


# --------------------------------------------------------------------------- nested loads, end to end


@NEEDS_FULL_SANDBOX
def test_ssrf_nested_load_to_unlocked_loopback_port_is_refused(env: HubEnv, spec: str, lock: Path) -> None:
    listener = TcpListener()
    try:
        target = f"git+http://127.0.0.1:{listener.port}/x.git@v1"
        msg = _refused(
            env, lock, "repo-not-allowed",
            lambda: securehub.load(spec, "nested", spec=target, policy="default", lock=lock, verbose=False),
        )  # fmt: skip
        assert listener.received == []
        assert "127.0.0.1" in msg and "repos.allow" in msg
    finally:
        listener.close()


@NEEDS_FULL_SANDBOX
def test_ssrf_nested_load_allowed_only_when_policy_names_the_host(
    env: HubEnv, spec: str, lock: Path, inner_remote: str, tmp_path: Path
) -> None:
    inner_name = inner_remote.split("/", 3)[3].removesuffix(".git@v1")
    env.git.clear_log()
    _refused(
        env, lock, "repo-not-allowed",
        lambda: securehub.load(spec, "nested", spec=inner_remote, policy="default", lock=lock, verbose=False),
    )  # fmt: skip
    assert env.git.requests_for(inner_name) == []  # refused before git ran
    # Positive control: a literal 127.0.0.1 entry in repos.allow (the "*" glob does not count).
    policy = write_policy(tmp_path / "named.yaml", "default", repos={"allow": ["*", "127.0.0.1"]})
    model = securehub.load(spec, "nested", spec=inner_remote, policy=str(policy), lock=lock, verbose=False)
    assert isinstance(model, torch.nn.Linear)
    assert env.git.requests_for(inner_name)


@NEEDS_FULL_SANDBOX
def test_ssrf_lock_e_refuses_nested_unlocked_remote(env: HubEnv, spec: str, lock: Path, inner_remote: str) -> None:
    _refused(
        env, lock, "repo-not-allowed",
        lambda: lock_repos([spec], entrypoints=["nested"], args={"spec": inner_remote}, policy="default", lock=lock),
    )  # fmt: skip


# --------------------------------------------------------------------------- the address rule (no sandbox)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254", "0.0.0.0",
        "224.0.0.1", "255.255.255.255", "192.0.2.1", "::1", "::", "fe80::1", "fc00::1", "fd12::1",
        "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::", "64:ff9b::a00:1",
        "64:ff9b:1::1", "not-an-ip",
    ],
)  # fmt: skip
def test_ssrf_non_public_addresses_are_recognised(address: str) -> None:
    assert non_public_reason(address) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_ssrf_public_addresses_pass(address: str) -> None:
    assert non_public_reason(address) is None


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/admin/token",
        "https://127.0.0.1:{port}/admin/token",
        "http://localhost:{port}/admin/token",
        "https://2130706433:{port}/admin/token",  # decimal 127.0.0.1
        "https://0x7f.1:{port}/admin/token",  # hex, short form
        "https://0.0.0.0:{port}/admin/token",
        "http://[::1]:{port}/admin/token",
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata
        "https://[::ffff:127.0.0.1]:{port}/admin/token",
    ],
)
def test_ssrf_repo_chosen_url_forms_are_refused_before_connecting(template: str, hub_cache: Cache) -> None:
    listener = TcpListener()
    try:
        url = template.format(port=listener.port)
        with pytest.raises(SecureHubError) as excinfo:
            fetch(url, hub_cache, hosts=["*"], public_only=True, connect_timeout_s=2.0)
        assert excinfo.value.code == "artifact-not-allowed", str(excinfo.value)
        assert listener.received == []
        assert not (hub_cache.dir / "artifacts" / "sha256").exists() or blobs(hub_cache) == []
    finally:
        listener.close()


def test_ssrf_redirect_from_explicitly_named_host_to_other_private_name_is_refused(
    server: ArtifactServer, hub_cache: Cache
) -> None:
    """``127.0.0.1`` is named literally, so it may be reached; ``localhost`` only matches ``*``."""
    listener = TcpListener()
    try:
        url = server.add_redirect("/r", f"http://localhost:{listener.port}/admin/token")
        with pytest.raises(SecureHubError) as excinfo:
            fetch(url, hub_cache, hosts=["127.0.0.1", "*"], public_only=True)
        assert excinfo.value.code == "artifact-not-allowed"
        assert "redirect target" in str(excinfo.value)
        assert listener.received == []
    finally:
        listener.close()


def test_ssrf_explicitly_named_host_is_reachable(server: ArtifactServer, hub_cache: Cache) -> None:
    """Positive control: a literal ``artifacts.hosts`` entry is the user's decision."""
    url = server.put("/w.bin", b"weights")
    assert fetch(url, hub_cache, hosts=["127.0.0.1"], public_only=True).size == len(b"weights")


def test_ssrf_dns_rebinding_connects_to_the_checked_address(monkeypatch: pytest.MonkeyPatch, hub_cache: Cache) -> None:
    """The name is resolved once, checked, and the socket goes to that very address: a second DNS
    answer (127.0.0.1 after a public one) is never asked for."""
    lookups: list[str] = []
    connects: list[tuple[str, int]] = []

    def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        lookups.append(host)
        answer = "93.184.216.34" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]

    def fake_connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        connects.append(address)
        raise OSError("no network in tests")

    monkeypatch.setattr(addrguard.socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", fake_connect)
    with pytest.raises(SecureHubError) as excinfo:
        fetch("https://rebind.example/w.bin", hub_cache, hosts=["*"], public_only=True)
    assert excinfo.value.code == "network"
    assert lookups == ["rebind.example"]
    assert connects == [("93.184.216.34", 443)]


def test_ssrf_name_with_one_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 443)) for a in ("93.184.216.34", "10.0.0.5")]
    monkeypatch.setattr(addrguard.socket, "getaddrinfo", lambda *a, **k: answers)
    with pytest.raises(addrguard.AddressRefused) as excinfo:
        AddressGuard().addresses_for("mixed.example", 443)
    assert excinfo.value.address == "10.0.0.5"


def test_ssrf_mirror_trust_is_per_origin_not_per_host() -> None:
    guard = AddressGuard(trusted_origins=frozenset({("127.0.0.1", 8000)}))
    assert guard.addresses_for("127.0.0.1", 8000) is None
    with pytest.raises(addrguard.AddressRefused):
        guard.addresses_for("127.0.0.1", 8001)


def test_ssrf_nested_remote_pins_git_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """http.curloptResolve carries the checked addresses to git, so curl never re-resolves the name."""
    seen: list[list[str]] = []

    class Done(Exception):
        pass

    def fake_run(cmd: list[str], **kwargs: Any) -> Any:
        seen.append(cmd)
        raise Done

    monkeypatch.setattr(git_mod.subprocess, "Popen", fake_run)  # run_git starts git with Popen (own process group)
    with git_mod.pinned_resolution("git.example", 443, ["93.184.216.34", "2606:4700::1"]), pytest.raises(Done):
        git_mod.run_git(["ls-remote", "--", "https://git.example/o/r.git"], remote="https://git.example/o/r.git")
    assert "http.curloptResolve=git.example:443:93.184.216.34,[2606:4700::1]" in seen[0]
    with pytest.raises(Done):
        git_mod.run_git(["ls-remote", "--", "https://git.example/o/r.git"], remote="https://git.example/o/r.git")
    assert not any("curloptResolve" in part for part in seen[1])


@pytest.mark.parametrize(
    ("allow", "named"),
    [
        (["*"], set()),
        (["*", "127.0.0.1"], {"127.0.0.1"}),
        (["http://127.0.0.1:*"], {"127.0.0.1"}),
        (["git+https://Git.Corp./*"], {"git.corp"}),
        (["https://*.corp/*", "acme/*", "http://[::1]:*"], {"::1"}),
        (["http://127.0.0.*:*"], set()),
    ],
)
def test_ssrf_only_literal_repos_allow_entries_name_a_host(allow: list[str], named: set[str]) -> None:
    from securehub.config.policy import Policy
    from securehub.pipeline.tree import explicit_repo_hosts

    policy = Policy.from_dict({"version": 1, "extends": "default", "repos": {"allow": allow}})
    assert explicit_repo_hosts(policy) == named
