"""Recording entrypoints and artifacts into hub.lock (SPEC sections 4, 7, 8, 10).

- ``lock.mode: auto`` (the default policy): a load records the repo, the artifacts it fetched and
  the entrypoint into an existing ``./hub.lock``, idempotently, and writes nothing without one.
- ``securehub lock SPEC -e ENTRYPOINT --arg K=V [--example-input ...]`` run as a real subprocess:
  artifacts recorded exactly, example inputs recorded and then used by ``securehub.load``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save

import securehub
from securehub._util.digest import args_sha256
from securehub.config.lockfile import Lockfile
from tests._hub_helpers import MIRRORED, NEEDS_FULL_SANDBOX, audit_records, hub_env_context, publish
from tests._servers import ArtifactServer, GitServer, RepoFactory
from tests.integration.test_lock_cli import Cli, cli  # noqa: F401 - the fixture is used by name

pytestmark = NEEDS_FULL_SANDBOX

HUBCONF = '''
import torch
from torch import nn

dependencies = ["torch"]
URL = "@URL@"


def tinynet(pretrained=False):
    """Tiny MLP."""
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    if pretrained:
        model.load_state_dict(torch.hub.load_state_dict_from_url(URL, progress=False))
    return model.eval()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.fc(x)) - 1


def net():
    return Net().eval()
'''


def _weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(42)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _reference(source: str, name: str) -> torch.nn.Module:
    ns: dict[str, Any] = {}
    exec(compile(source, "hubconf.py", "exec"), ns)  # noqa: S102 - the test's own reference code
    model = ns[name]()
    assert isinstance(model, torch.nn.Module)
    if name == "tinynet":
        model.load_state_dict(_weights())
    return model


def _same(a: torch.nn.Module, b: torch.nn.Module, batch: int = 3) -> None:
    x = torch.rand(batch, 4)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


# --------------------------------------------------------------------------------------------
# lock.mode: auto
# --------------------------------------------------------------------------------------------


def test_auto_mode_records_repo_artifact_and_entrypoint_then_is_idempotent(
    tmp_path: Path, git_server: GitServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "env").mkdir()
    with hub_env_context(tmp_path / "env", git_server) as env:
        blob = save(_weights())
        url = env.put("auto/tiny.safetensors", blob)
        source = HUBCONF.replace("@URL@", url)
        repo = publish(env, "auto", {"hubconf.py": source})
        spec = env.spec(repo)
        work = tmp_path / "work"
        work.mkdir()
        monkeypatch.chdir(work)
        Lockfile.empty().save(work / "hub.lock")

        model = securehub.load(spec, "tinynet", pretrained=True, verbose=False)

        _same(model, _reference(source, "tinynet"))
        doc = json.loads((work / "hub.lock").read_bytes())
        entry = doc["repos"][spec]
        assert (entry["ref"], entry["ref_type"], entry["remote"]) == ("v1", "tag", repo.url)
        assert entry["commit"] == repo.git("rev-parse", "refs/tags/v1^{commit}")
        assert entry["tree_sha256"] == audit_records(env)[-1]["tree_sha256"]
        assert entry["entrypoints"]["tinynet"]["artifacts"] == [url]
        assert doc["artifacts"] == {url: {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}}
        first = (work / "hub.lock").read_bytes()

        securehub.load(spec, "tinynet", pretrained=True, verbose=False)

        assert (work / "hub.lock").read_bytes() == first
        assert {p.name for p in work.iterdir()} == {"hub.lock"}  # no stray lock file next to the user's lock

        elsewhere = tmp_path / "no-lock-here"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        securehub.load(spec, "tinynet", pretrained=True, verbose=False)
        assert list(elsewhere.iterdir()) == []


# --------------------------------------------------------------------------------------------
# securehub lock -e (CLI)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def weights_cli(cli: Cli, artifact_server: ArtifactServer) -> Cli:  # noqa: F811 - pytest fixture by name
    cli.env["SECUREHUB_MIRRORS"] = json.dumps({MIRRORED: artifact_server.base_url + "/"})
    return cli


def test_cli_lock_entrypoint_records_artifacts_exactly(
    weights_cli: Cli, repo_factory: RepoFactory, artifact_server: ArtifactServer
) -> None:
    blob = save(_weights())
    artifact_server.put("/cli/tiny.safetensors", blob)
    url = MIRRORED + "cli/tiny.safetensors"
    repo = repo_factory.make_repo("e2e/cli-lock", {"hubconf.py": HUBCONF.replace("@URL@", url)})
    repo.tag("v1", annotated=True)

    r = weights_cli("lock", "e2e/cli-lock:v1", "-e", "tinynet", "--arg", "pretrained=true", "--policy", "strict")

    assert (r.code, r.errors) == (0, [])
    doc = weights_cli.lock_json()
    assert doc["artifacts"] == {url: {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}}
    ep = doc["repos"]["e2e/cli-lock:v1"]["entrypoints"]["tinynet"]  # type: ignore[index]
    assert ep["artifacts"] == [url]
    assert ep["args"] == {"pretrained": True}
    assert [r.path for r in artifact_server.requests] == ["/cli/tiny.safetensors"]


def test_cli_example_input_is_recorded_and_used_by_load(
    weights_cli: Cli,
    repo_factory: RepoFactory,
    artifact_server: ArtifactServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = HUBCONF.replace("@URL@", MIRRORED + "unused.safetensors")
    repo = repo_factory.make_repo("e2e/cli-export", {"hubconf.py": source})
    repo.tag("v1", annotated=True)

    r = weights_cli("lock", "e2e/cli-export:v1", "-e", "net", "--example-input", "1x4:float32")

    assert (r.code, r.errors) == (0, [])
    ep = weights_cli.lock_json()["repos"]["e2e/cli-export:v1"]["entrypoints"]["net"]  # type: ignore[index]
    assert ep["example_inputs"] == [{"shape": [1, 4], "dtype": "float32"}]
    assert ep["artifacts"] == []
    before = weights_cli.lock_path.read_bytes()

    monkeypatch.chdir(weights_cli.cwd)
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(weights_cli.audit_log))
    model = securehub.load("e2e/cli-export:v1", "net", verbose=False)  # default policy, ./hub.lock

    assert weights_cli.audit_records()[-1]["strategy"] == "export"
    _same(model, _reference(source, "net"), batch=1)  # an exported program is specialised to the shape
    assert weights_cli.lock_path.read_bytes() == before


CHECK_HASH_HUBCONF = """
import torch
from torch import nn

dependencies = ["torch"]


def tinynet(url, check_hash=True):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model.load_state_dict(torch.hub.load_state_dict_from_url(url, progress=False, check_hash=check_hash))
    return model.eval()
"""


@pytest.mark.parametrize(
    ("name", "check_hash"),
    [("tiny.safetensors", True), ("resnet-18.safetensors", False)],
    ids=["check-hash-no-prefix", "short-hex-run-in-name"],
)
def test_a_name_without_a_usable_prefix_locks_and_loads_by_its_full_digest(
    weights_cli: Cli,
    repo_factory: RepoFactory,
    artifact_server: ArtifactServer,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    check_hash: bool,
) -> None:
    """torch.hub checks nothing for these names; securehub refuses them unless a full digest is known
    (issue 10): ``lock -e`` records it, and a load of the pinned URL checks it instead (a swap is then
    ``hash-mismatch``); unpinned, the same call is ``artifact-not-allowed`` before any download."""
    blob = save(_weights())
    artifact_server.put(f"/ch/{name}", blob)
    url = MIRRORED + f"ch/{name}"
    repo = repo_factory.make_repo(f"e2e/ch-{check_hash}", {"hubconf.py": CHECK_HASH_HUBCONF})
    repo.tag("v1", annotated=True)
    spec = f"e2e/ch-{check_hash}:v1"
    args = ("--arg", f"url={url}", "--arg", f"check_hash={str(check_hash).lower()}")

    unpinned = weights_cli("load", spec, "tinynet", *args)
    assert (unpinned.code, unpinned.codes()) == (1, ["artifact-not-allowed"])
    assert artifact_server.requests == []

    r = weights_cli("lock", spec, "-e", "tinynet", *args)
    assert (r.code, r.errors) == (0, [])
    digest = hashlib.sha256(blob).hexdigest()
    assert weights_cli.lock_json()["artifacts"] == {url: {"sha256": digest, "size": len(blob)}}

    monkeypatch.chdir(weights_cli.cwd)
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(weights_cli.audit_log))
    monkeypatch.setenv("SECUREHUB_DIR", str(weights_cli.hub))
    model = securehub.load(spec, "tinynet", url=url, check_hash=check_hash, policy="strict", verbose=False)
    reference = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    reference.load_state_dict(_weights())
    _same(model, reference.eval())

    artifact_server.put(f"/ch/{name}", save({k: v + 1 for k, v in _weights().items()}))
    fresh = weights_cli("load", spec, "tinynet", *args, env={"SECUREHUB_DIR": str(weights_cli.cwd / "fresh")})
    assert (fresh.code, fresh.codes()) == (1, ["hash-mismatch"])


WIDTH_HUBCONF = """
import torch
from torch import nn

dependencies = ["torch"]


def lin(width=2):
    torch.manual_seed(width)
    return nn.Sequential(nn.Linear(4, width), nn.ReLU())
"""


def test_a_second_argument_set_is_pinned_next_to_the_first(
    weights_cli: Cli, repo_factory: RepoFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lock -e EP --arg`` with another argument set adds its pin and keeps the first one (it was skipped
    silently, and the --upgrade the refusal suggested dropped the first pin); the entrypoint keeps one set
    of example inputs (other inputs for the added set are a usage error, nothing written)."""
    repo = repo_factory.make_repo("e2e/two-sets", {"hubconf.py": WIDTH_HUBCONF})
    repo.tag("v1", annotated=True)
    spec = "e2e/two-sets:v1"
    assert weights_cli("lock", spec, "-e", "lin", "--arg", "width=2", "--example-input", "1x4:float32").code == 0
    first = weights_cli.lock_json()["repos"][spec]["entrypoints"]["lin"]  # type: ignore[index]

    r = weights_cli("lock", spec, "-e", "lin", "--arg", "width=3")
    assert (r.code, r.errors) == (0, [])
    ep = weights_cli.lock_json()["repos"][spec]["entrypoints"]["lin"]  # type: ignore[index]
    two, three = args_sha256((), {"width": 2}), args_sha256((), {"width": 3})
    assert set(ep["outputs"]) == {two, three}
    assert ep["outputs"][two] == first["outputs"][two]  # the first pin is untouched
    assert (ep["args"], ep["example_inputs"]) == (first["args"], first["example_inputs"])
    before = weights_cli.lock_path.read_bytes()

    again = weights_cli("lock", spec, "-e", "lin", "--arg", "width=3")  # pinned already: kept, nothing runs
    assert again.code == 0 and weights_cli.lock_path.read_bytes() == before
    other = weights_cli("lock", spec, "-e", "lin", "--arg", "width=4", "--example-input", "2x4:float32")
    assert (other.code, other.codes()) == (2, ["usage"])
    assert "recorded with `--example-input 1x4:float32`" in other.errors[0]
    assert weights_cli.lock_path.read_bytes() == before

    monkeypatch.chdir(weights_cli.cwd)
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(weights_cli.audit_log))
    monkeypatch.setenv("SECUREHUB_DIR", str(weights_cli.hub))
    for width in (2, 3):
        model = securehub.load(spec, "lin", width=width, policy="strict", verbose=False)
        torch.manual_seed(width)
        reference = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU())
        x = torch.rand(1, 4)
        with torch.no_grad():
            assert torch.equal(model(x), reference(x))
    assert weights_cli.lock_path.read_bytes() == before
