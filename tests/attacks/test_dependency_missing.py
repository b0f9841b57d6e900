"""``dependency-missing`` (SPEC section 9): an absent package, however the repo imports it.

Attacks and gaps found while giving the code a real trigger (issue 13):

- *lazy import*: ``def model(): import timm`` (the common torch.hub style) raised
  ``ModuleNotFoundError`` inside the entrypoint call, which was reported as ``entrypoint-error``;
  only a module-level import or a ``dependencies`` entry gave ``dependency-missing``.
- *violation masked as a missing module*: hubconf tries a forbidden action at import time, swallows
  the refusal, then raises ``ModuleNotFoundError``. The import path classified the exception before
  looking at the recorded violations, so the audit log said ``dependency-missing`` (install a
  package) where it must say ``sandbox-violation`` (hostile code).

Every case runs end to end (real git server, sandbox, torch) and asserts the code, the single audit
line, hub.lock byte-identical and nothing new in the cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, audit_records, hub_env_context, publish
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

ABSENT = "securehub_test_absent_package"

MODULE_LEVEL = f"""
import {ABSENT}
from torch import nn


def net():
    return nn.Linear(2, 2)
"""

LAZY = f"""
from torch import nn


def net():
    import {ABSENT}.models  # a lazy import inside the entrypoint, as many hubconfs do

    return nn.Linear(2, 2)
"""

MASKED_VIOLATION = """
try:
    open(@CANARY@).read()  # forbidden: a credential-looking file outside what the sandbox may read
except OSError:
    pass
raise ModuleNotFoundError("No module named 'timm'", name="timm")  # ... and blame a missing package

def net():
    pass
"""

TREE_PACKAGE_BROKEN = """
import helpers.missing_submodule  # the tree holds 'helpers' but not this submodule: a broken repo


def net():
    pass
"""

INSTALLED_SUBMODULE_MISSING = """
from torch import nn


def net():
    import torch.securehub_no_such_submodule  # torch is installed: a version problem, not a missing package

    return nn.Linear(2, 2)
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("deps"), git_server) as env:
        yield env


def _refuse(env: HubEnv, tmp_path: Path, files: dict[str, str], code: str) -> str:
    """Publish ``files``, lock (caches the tree), then load ``net``: it must fail with ``code`` and
    leave hub.lock, the trees, artifacts and results exactly as they were, with one audit line."""
    repo = publish(env, "deps", files)
    spec = env.spec(repo)
    lock = tmp_path / "hub.lock"
    lock_repos([spec], policy="default", lock=lock)
    before = Snapshot.take(env.hub, lock)
    results = sorted((env.hub / "results").rglob("*")) if (env.hub / "results").exists() else []
    env.audit_log.unlink(missing_ok=True)
    with pytest.raises(SecureHubError) as info:
        securehub.load(spec, "net", policy="default", lock=str(lock), verbose=False)
    assert info.value.code == code, f"{info.value.code}: {info.value}"
    (record,) = audit_records(env)
    assert (record["action"], record["code"]) == ("load", code), record
    before.assert_unchanged(env.hub, lock)
    now = sorted((env.hub / "results").rglob("*")) if (env.hub / "results").exists() else []
    assert now == results, "a result was cached"
    return str(info.value)


def test_module_level_import_of_absent_package_is_dependency_missing(env: HubEnv, tmp_path: Path) -> None:
    msg = _refuse(env, tmp_path, {"hubconf.py": MODULE_LEVEL}, "dependency-missing")
    assert f"hubconf.py imports {ABSENT!r}" in msg and "securehub never installs packages" in msg


def test_an_indirect_import_names_the_repository_file_that_made_it(env: HubEnv, tmp_path: Path) -> None:
    """torchvggish / open-unmix: hubconf imports the repo's package, whose module imports the absent one."""
    files = {
        "hubconf.py": "from pkg import audio\n\n\ndef net():\n    pass\n",
        "pkg/__init__.py": "",
        "pkg/audio.py": f"import {ABSENT}\n",
    }
    msg = _refuse(env, tmp_path, files, "dependency-missing")
    assert f"pkg/audio.py imports {ABSENT!r}" in msg


def test_lazy_import_of_absent_package_in_the_entrypoint_is_dependency_missing(env: HubEnv, tmp_path: Path) -> None:
    msg = _refuse(env, tmp_path, {"hubconf.py": LAZY}, "dependency-missing")
    assert repr(ABSENT) in msg


def test_lazy_import_from_a_local_directory_is_dependency_missing(env: HubEnv, tmp_path: Path) -> None:
    (tmp_path / "hubconf.py").write_text(LAZY)
    env.audit_log.unlink(missing_ok=True)
    with pytest.raises(SecureHubError) as info:
        securehub.load(str(tmp_path), "net", source="local", policy="default", verbose=False)
    assert info.value.code == "dependency-missing", f"{info.value.code}: {info.value}"
    (record,) = audit_records(env)
    assert record["code"] == "dependency-missing"


def test_violation_masked_as_a_missing_module_is_still_a_sandbox_violation(env: HubEnv, tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    canary = tmp_path / ".ssh" / "id_rsa"  # a secret-looking path: an attempt on it is a violation
    canary.write_text("secret")
    hubconf = MASKED_VIOLATION.replace("@CANARY@", repr(str(canary)))
    msg = _refuse(env, tmp_path, {"hubconf.py": hubconf}, "sandbox-violation")
    assert str(canary) in msg
    assert canary.read_text() == "secret"


@pytest.mark.parametrize(
    "files",
    [
        {"hubconf.py": TREE_PACKAGE_BROKEN, "helpers/__init__.py": ""},
        {"hubconf.py": INSTALLED_SUBMODULE_MISSING},
    ],
    ids=["tree-package-broken", "installed-package-submodule-missing"],
)
def test_a_missing_module_that_is_not_an_absent_package_is_the_entrypoints_error(
    env: HubEnv, tmp_path: Path, files: dict[str, str]
) -> None:
    msg = _refuse(env, tmp_path, files, "entrypoint-error")
    assert "ModuleNotFoundError" in msg


SELF_CHECKED = f"""
dependencies = ["torch", {ABSENT!r}]

# pytorch/fairseq's hubconf checks its own list at import and raises before torch.hub can
import importlib
missing = []
for dep in dependencies:
    try:
        importlib.import_module(dep)
    except ImportError:
        missing.append(dep)
if missing:
    raise RuntimeError("Missing dependencies: " + ", ".join(missing))


def net():
    pass
"""


def test_hubconf_raising_after_declaring_absent_dependencies_is_dependency_missing(env: HubEnv, tmp_path: Path) -> None:
    """Round 11: the import's RuntimeError was reported as ``entrypoint-error``; the declared list, already
    assigned when hubconf raised, names what to install."""
    msg = _refuse(env, tmp_path, {"hubconf.py": SELF_CHECKED}, "dependency-missing")
    assert (
        f"hubconf.py declares dependencies that are not installed: {ABSENT}; importing it raised "
        f"RuntimeError: Missing dependencies: {ABSENT}" in msg
    ), msg


def test_declared_dependencies_do_not_mask_a_violation_before_the_raise(env: HubEnv, tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    canary = tmp_path / ".ssh" / "id_rsa"
    canary.write_text("secret")
    hubconf = SELF_CHECKED.replace(
        "if missing:", f"try:\n    open({str(canary)!r}).read()\nexcept OSError:\n    pass\nif missing:"
    )
    msg = _refuse(env, tmp_path, {"hubconf.py": hubconf}, "sandbox-violation")
    assert str(canary) in msg
    assert canary.read_text() == "secret"


def test_a_hubconf_error_with_every_declared_dependency_installed_stays_the_entrypoints_error(
    env: HubEnv, tmp_path: Path
) -> None:
    hubconf = 'dependencies = ["torch"]\nraise RuntimeError("broken repo")\n'
    msg = _refuse(env, tmp_path, {"hubconf.py": hubconf}, "entrypoint-error")
    assert "importing hubconf.py raised RuntimeError: broken repo" in msg, msg
