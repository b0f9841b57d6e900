"""Attack: a hostile child forges the source class an exported model reports (issue 10, item 5).

The export strategy's module names the class it was exported from (``securehub_source_class``, its
``repr()``, the CLI's ``loaded ...`` line). That name comes from the child's config, which the
entrypoint controls: the hubconf runs inside the child and can monkeypatch the child's recorder to
send any string that passes the frame schema (one ``:``, at most 512 characters). A newline or
escape sequence there would inject fake lines into the user's terminal and logs ("signature
verified"), and a path-like string could suggest a trusted origin. The parent accepts only a dotted
identifier path (``<locals>`` allowed in the qualified name) and refuses anything else with
``reconstruct-refused``, before the model is returned, caching nothing and locking nothing.

End to end: real git server, real sandbox, real torch.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import HubEnv, Snapshot, hub_env_context, publish
from tests._servers import GitServer

HUBCONF = """
dependencies = ["torch"]
import sys
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def _forge(value):
    # Runs in the child: replace the recorder the child runtime uses, so the config it sends
    # carries the forged class name for the root module.
    runtime = sys.modules["securehub.sandbox.child.runtime"]
    real = runtime.describe

    def forged(module, tree):
        config = real(module, tree=tree)
        config["root"]["class"] = value
        return config

    runtime.describe = forged


def honest():
    return Net().eval()


def newline():
    _forge("acme.models:Net\\n[securehub] signature verified by trusted key 0xC0FFEE")
    return Net().eval()


def escape():
    _forge("acme.models:Net\\x1b[2K\\x1b[1Gloaded torch.nn.Linear")
    return Net().eval()


def spaces():
    _forge("acme.models:Net (verified by securehub)")
    return Net().eval()


def os_system():
    _forge("os:system")
    return nn.Linear(4, 2)
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("source-class"), git_server) as env:
        repo = publish(env, "forged-class", {"hubconf.py": HUBCONF})
        spec = env.spec(repo)
        lock_repos([spec], policy="default", lock=env.root / "hub.lock")
        yield env, spec


def _results(env: HubEnv) -> list[str]:
    root = env.hub / "results"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_honest_export_reports_its_class(world: tuple[HubEnv, str]) -> None:
    env, spec = world
    model = securehub.load(spec, "honest", policy="default", lock=env.root / "hub.lock", verbose=False,
                           example_inputs=(torch.randn(2, 4),))  # fmt: skip
    assert model.securehub_source_class == "hubconf:Net" or model.securehub_source_class.endswith(":Net")
    assert model.eval() is model


@pytest.mark.parametrize("entrypoint", ["newline", "escape", "spaces"])
def test_forged_source_class_injection_is_refused_and_nothing_is_kept(
    world: tuple[HubEnv, str], entrypoint: str
) -> None:
    env, spec = world
    lock = env.root / "hub.lock"
    before = Snapshot.take(env.hub, lock)
    results = _results(env)
    with pytest.raises(SecureHubError) as info:
        securehub.load(spec, entrypoint, policy="default", lock=lock, verbose=False,
                       example_inputs=(torch.randn(2, 4),))  # fmt: skip
    assert info.value.code == "reconstruct-refused", str(info.value)
    message = str(info.value)
    assert "export:" in message and "root class" in message
    assert "\n" not in message and "\x1b" not in message  # shown escaped, never raw
    before.assert_unchanged(env.hub, lock)  # hub.lock byte-identical, no new tree or artifact
    assert _results(env) == results  # nothing cached


def test_refused_rebuild_under_auto_lock_leaves_hub_lock_byte_identical(world: tuple[HubEnv, str]) -> None:
    """Auto-lock (default policy) used to record the entrypoint right after the sandbox ran, before the
    parent's rebuild refused the child's forged config: a refused load changed hub.lock (SPEC section 2)."""
    env, spec = world
    lock = env.root / "hub.lock"
    before = Snapshot.take(env.hub, lock)
    with pytest.raises(SecureHubError) as info:
        securehub.load(spec, "os_system", policy="default", lock=lock, verbose=False)
    assert info.value.code == "reconstruct-refused", str(info.value)
    before.assert_unchanged(env.hub, lock)
    assert "os_system" not in lock.read_text()
