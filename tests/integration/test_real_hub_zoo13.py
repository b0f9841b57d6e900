"""A repository written like snakers4/silero-models' ``silero_stt``, end to end (real-code round 13).

Round 13 ran the real upstream repositories (not committed; docs/reconstruction.md "Round 13" lists them
and their outcomes). One outcome was a finding: silero-models' ``init_jit_model`` makes a ``model``
directory next to its own module, inside the repository, before downloading. Landlock refuses the
``mkdir`` (the tree is the pinned content) and the load failed as ``entrypoint-error: ... raised
PermissionError: [Errno 13] Permission denied: '<tree>/src/silero/model'``: neither the action nor what
to do. Here, that pattern narrowed (tests/_realrepo_zoo13.py) on the loopback git server:

- ``silero``: refused as ``sandbox-violation`` naming ``mkdir <tree>/src/silero/model`` and saying why
  (the tree is read-only, torch.hub's checkout is not) and what to do; nothing fetched, the tree unchanged;
- ``silero-fork``: what the message says to do -- the same code writing under ``torch.hub.get_dir()`` --
  loads under default and equals the directly built model;
- ``swag``: facebookresearch/SWAG's RegNetY, whose blocks are added as ``block{stage}-{i}`` (torchvision's
  RegNet does the same): the parent refused every exported program of it ("'trunk_output.block1.block1-0...'
  is not a dotted attribute name"), so strict and default could not load it; now exported under strict
  (locked once for the module) and default, kept by ``source`` under permissive;
- ``effnet``: lukemelas/EfficientNet-PyTorch's ``efficientnet_b0(num_classes=10, in_channels=1)``: every conv
  holds its padding module, and ``example_inputs="auto"`` found no input (3-channel candidates only);
  now exported under default from a 1-channel input; ``pretrained=None`` fails as under torch.hub.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, audit_records, hub_env_context, publish, refused
from tests._hubconf_import import imported_like_the_child
from tests._realrepo_checks import assert_used_like_the_direct_model, jittered, pickled
from tests._realrepo_world import ZooWorld, substituted
from tests._realrepo_zoo13 import EFFNET_FILES, SILERO_FILES, SILERO_FORK_FILES, SWAG_FILES
from tests._servers import GitServer

pytestmark = [
    NEEDS_FULL_SANDBOX,
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

URL_PATHS = {"STT_EN": "models/en_v5.pt", "REGNETY_16GF": "SWAG/regnety_16gf.torch",
             "REGNETY_16GF_IN1K": "SWAG/regnety_16gf_in1k.torch",
             "EFFNET_B0": "lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b0-@.pth"}  # fmt: skip
PLACEHOLDERS = dict.fromkeys(URL_PATHS, "https://weights.example.com/placeholder.pt")


class World(ZooWorld):
    url_paths = URL_PATHS

    def __init__(self, env: HubEnv, tmp: Path) -> None:
        super().__init__(env, tmp)
        gen = torch.Generator().manual_seed(13)
        with imported_like_the_child(substituted(SILERO_FORK_FILES, PLACEHOLDERS), tmp, {}):
            tiny = importlib.import_module("src.silero.utils").TinySTT()  # the hubconf's package, imported here
            self._serve("STT_EN", pickled(jittered(tiny.state_dict(), gen)))
        with imported_like_the_child(substituted(SWAG_FILES, PLACEHOLDERS), tmp, {}) as module:
            for name, entry in (("REGNETY_16GF", "regnety_16gf"), ("REGNETY_16GF_IN1K", "regnety_16gf_in1k")):
                self._serve(name, pickled(jittered(getattr(module, entry)(pretrained=False).state_dict(), gen)))
        with imported_like_the_child(substituted(EFFNET_FILES, PLACEHOLDERS), tmp, {}):
            net = importlib.import_module("efficientnet_pytorch").EfficientNet.from_name("efficientnet-b0")
            self._serve("EFFNET_B0", pickled(jittered(net.state_dict(), gen)))
        names = {**PLACEHOLDERS, **self.urls}
        self.files = {
            "effnet": substituted(EFFNET_FILES, names),
            "silero": substituted(SILERO_FILES, names),
            "silero-fork": substituted(SILERO_FORK_FILES, names),
            "swag": substituted(SWAG_FILES, names),
        }
        self.specs = {repo: env.spec(publish(env, repo, files)) for repo, files in self.files.items()}
        # one lock for the module, each entrypoint locked once
        (env.root / "locked").mkdir()
        self.lock = env.root / "locked" / "hub.lock"
        lock_repos([self.specs["swag"]], entrypoints=["regnety_16gf"], policy="strict", lock=self.lock,
                   example_inputs=["1x3x32x32:float32"])  # fmt: skip

    def direct(self, repo: str, entry: str, **kw: Any) -> nn.Module:
        hub = torch.hub.get_dir()
        torch.hub.set_dir(str(self.tmp / "torch-hub"))  # the fork downloads into the hub dir
        try:
            # silero's init_jit_model calls torch.set_grad_enabled(False): restore this process's grad mode
            with torch.set_grad_enabled(torch.is_grad_enabled()):
                return super().direct(repo, entry, **kw)
        finally:
            torch.hub.set_dir(hub)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    direct = tmp_path_factory.mktemp("direct")
    with hub_env_context(tmp_path_factory.mktemp("real-hub-zoo13"), git_server) as env:
        yield World(env, direct)


def _mels(batch: int = 2, frames: int = 12) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, batch * 8 * frames).reshape(batch, 8, frames)


@pytest.mark.parametrize("policy", ["default", "permissive"])
def test_silero_init_jit_model_mkdir_in_the_tree_is_a_named_violation(world: World, policy: str) -> None:
    """``os.makedirs(os.path.join(os.path.dirname(__file__), "model"), exist_ok=True)``: torch.hub's checkout
    is writable, securehub's tree is not (under every policy): ``sandbox-violation`` naming the ``mkdir`` and
    what to do; the model never requested, nothing written into the tree, nothing cached."""
    spec = world.specs["silero"]
    assert securehub.list(spec, policy=policy, verbose=False) == ["silero_stt"]
    code, message = refused(lambda: securehub.load(spec, "silero_stt", policy=policy, verbose=False))
    assert code == "sandbox-violation", message
    assert message.startswith("the repository's code attempted a forbidden action: mkdir "), message
    named = message.split("mkdir ", 1)[1].split(";", 1)[0]
    assert named.endswith("/src/silero/model") and named.startswith(str(world.env.hub)), message
    assert "entrypoint 'silero_stt' then failed with PermissionError" in message, message
    assert "The repository's own files are read-only in the sandbox" in message, message
    assert "(torch.hub lets hubconf write into its checkout)" in message, message
    assert "a fork that writes under torch.hub.get_dir() or a temporary directory instead" in message, message
    assert not Path(named).exists()  # the OS refused it: the tree is as pinned
    assert world.env.artifacts.requests_for("/" + URL_PATHS["STT_EN"]) == []
    assert audit_records(world.env)[-1]["code"] == "sandbox-violation"


def test_silero_fork_writing_under_the_hub_dir_loads(world: World, tmp_path: Path) -> None:
    """What the refusal says to do: the fork's ``init_jit_model`` makes its directory under
    ``torch.hub.get_dir()`` and downloads there; exported under default, equal to the direct model."""
    model = securehub.load(world.specs["silero-fork"], "silero_stt", policy="default",
                           example_inputs=(_mels(),), verbose=False)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == "export"
    assert [a["url"] for a in record["artifacts"]] == [world.urls["STT_EN"]]
    assert world.env.artifacts.requests_for("/" + URL_PATHS["STT_EN"])  # the path the refusals never requested

    def head(m: nn.Module) -> None:  # export: never called, train() is refused
        raise AssertionError

    assert_used_like_the_direct_model(model, "export", lambda: world.direct("silero-fork", "silero_stt"),
                                      _mels(), tmp_path, head=head)  # fmt: skip


def _image(size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, batch * 3 * size * size).reshape(batch, 3, size, size)


@pytest.mark.parametrize(("policy", "entry"), [("strict", "regnety_16gf"), ("default", "regnety_16gf_in1k"),
                                                ("permissive", "regnety_16gf_in1k")])  # fmt: skip
def test_swag_regnet_blocks_named_with_hyphens(world: World, policy: str, entry: str, tmp_path: Path) -> None:
    """``self.add_module(f"block{stage_index}-{i}", block)``: every state name holds a hyphen. Exported under
    strict (the trunk, inputs locked for the module) and default (the classifier, inputs given), kept by
    ``source`` and fine-tuned under permissive; equal to the directly built model, its weights reloadable."""
    locked = policy == "strict"
    kwargs: dict[str, Any] = {} if policy != "default" else {"example_inputs": (_image(),)}
    model = securehub.load(world.specs["swag"], entry, policy=policy, lock=world.lock if locked else None,
                           verbose=False, **kwargs)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == ("source" if policy == "permissive" else "export")
    name = "REGNETY_16GF" if entry == "regnety_16gf" else "REGNETY_16GF_IN1K"
    assert [a["url"] for a in record["artifacts"]] == [world.urls[name]]
    state = model.state_dict()
    assert "trunk_output.block1.block1-0.f.se.excitation.0.weight" in state
    assert "trunk_output.block2.block2-1.f.final_bn.running_var" in state
    assert ("head.weight" in state) == (entry == "regnety_16gf_in1k")

    def head(m: nn.Module) -> None:
        m.head = nn.Linear(16, 3)

    assert_used_like_the_direct_model(model, record["strategy"], lambda: world.direct("swag", entry, pretrained=True),
                                      _image(), tmp_path, head=head)  # fmt: skip


def test_effnet_one_channel_input_found_by_auto(world: World, tmp_path: Path) -> None:
    """``efficientnet_b0(num_classes=10, in_channels=1)``: the head's weights dropped (``strict=False``), the
    stem replaced after loading; every conv holds a ``ZeroPad2d``/``Identity`` child. ``example_inputs="auto"``
    finds the 1-channel image from the stem; exported under default, equal to the direct model."""
    model = securehub.load(world.specs["effnet"], "efficientnet_b0", num_classes=10, in_channels=1,
                           policy="default", example_inputs="auto", verbose=False)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == "export"
    assert [a["url"] for a in record["artifacts"]] == [world.urls["EFFNET_B0"]]
    assert model.state_dict()["_conv_stem.weight"].shape == (8, 1, 3, 3)
    assert model.state_dict()["_fc.weight"].shape == (10, 16)

    def head(m: nn.Module) -> None:  # export: never called, train() is refused
        raise AssertionError

    x = torch.linspace(-1.0, 1.0, 2 * 224 * 224).reshape(2, 1, 224, 224)
    assert_used_like_the_direct_model(
        model, "export", lambda: world.direct("effnet", "efficientnet_b0", num_classes=10, in_channels=1),
        x, tmp_path, head=head)  # fmt: skip


def test_effnet_pretrained_none_fails_as_under_torch_hub(world: World) -> None:
    """Upstream's ``pretrained=None`` branch passes ``override_params={...}`` as one keyword: ``ValueError``
    under torch.hub, ``entrypoint-error`` quoting it here."""
    with pytest.raises(ValueError, match="override_params"):
        world.direct("effnet", "efficientnet_b0", pretrained=None)
    code, message = refused(lambda: securehub.load(world.specs["effnet"], "efficientnet_b0", pretrained=None,
                                                    policy="default", verbose=False))  # fmt: skip
    assert code == "entrypoint-error", message
    assert "raised ValueError: Got unexpected field names: ['override_params']" in message, message
