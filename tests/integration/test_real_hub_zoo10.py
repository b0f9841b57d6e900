"""Repositories written like facebookresearch/dinov2 (register models), facebookresearch/deit
(distilled models), ultralytics/yolov5's ``custom`` and NVIDIA-style precision/device entrypoints,
end to end (real-code round 10).

Rounds 1-9 (test_real_hub_styles.py, test_real_hub_models.py, test_real_hub_zoo*.py) cover the others.
Here, their code written after the upstream repositories (narrowed) in tests/_realrepo_zoo10.py,
published on the loopback git server:

- ``dinov2-reg``: ``try: from xformers.ops import ... except ImportError`` at import, with
  ``warnings.warn``: the fallback runs in the sandbox as under torch.hub (no ``dependency-missing``, no
  violation) and the warnings reach the caller where hubconf runs in their process (``source``);
  register tokens, LayerScale, an interpolated (bicubic, antialiased) position grid, ``block_chunks``
  padded with one shared ``nn.Identity``; through export and source;
- ``deit-fork``: a distilled ViT (two class tokens, two heads, a tuple in train mode and the average in
  eval mode), ``check_hash=True``: export keeps the eval-mode average, source both modes;
- ``yolo-custom``: ``custom(path="best.pt")`` names a file on the caller's machine, which the sandbox
  cannot read: ``sandbox-violation`` naming the file and the argument and saying what to do instead;
  ``yolov5n`` (a release asset) loads through source, with ``model.conf`` set after loading;
- ``x3d``: pytorchvideo's ``x3d_s``, whose ``Swish`` is a custom ``torch.autograd.Function``
  (traced through by export; its own backward under source), a (2+1)D stem, squeeze-excitation and a
  head applying softmax in eval mode;
- ``dtype``: float16/bfloat16 states (``.to(device=..., dtype=...)``, NVIDIA's ``model_math="fp16"``
  with float batch norms, DistributedDataParallel ``module.`` keys unwrapped) through trusted, export
  and source.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import HubEnv, audit_records, hub_env_context, publish, refused
from tests._hubconf_import import imported_like_the_child
from tests._realrepo_checks import assert_used_like_the_direct_model, expected_strategy, jittered, pickled
from tests._realrepo_world import ZOO_MARKS, ZooWorld, substituted
from tests._realrepo_zoo10 import DEIT_FORK_FILES, DINOV2_REG_FILES, DTYPE_FILES, X3D_FILES, YOLO_CUSTOM_FILES
from tests._servers import GitServer

pytestmark = ZOO_MARKS

DINOV2 = "dinov2"
URL_PATHS = {
    "DINOV2_S14": f"{DINOV2}/dinov2_vits14/dinov2_vits14_pretrain.pth",
    "DINOV2_S14_REG": f"{DINOV2}/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth",
    "DEIT_TINY_URL": "deit/deit_tiny_patch16_224-@.pth",
    "DEIT_TINY_DISTILLED_URL": "deit/deit_tiny_distilled_patch16_224-@.pth",
    "YOLO_N": "ultralytics/yolov5/releases/download/v7.0/yolov5n.pt",
    "DTYPE_MLP_URL": "nvidia/mlp/versions/20.0/files/mlp_fp32_@.pt",
    "DTYPE_CONV_URL": "nvidia/convnet/versions/20.0/files/convnet_fp16_@.pt",
    "X3D_S": "pytorchvideo/model_zoo/kinetics/X3D_S.pyth",
}
PLACEHOLDERS = dict.fromkeys(
    [*URL_PATHS, "DINOV2_BASE", "YOLO_RELEASES", "X3D_ROOT"], "https://weights.example.com/placeholder"
)


class World(ZooWorld):
    url_paths = URL_PATHS

    def __init__(self, env: HubEnv, tmp: Path) -> None:
        super().__init__(env, tmp)
        gen = torch.Generator().manual_seed(10)
        ph = PLACEHOLDERS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with imported_like_the_child(substituted(DINOV2_REG_FILES, ph), tmp, {}) as module:
                for name, entry in (("DINOV2_S14", "dinov2_vits14"), ("DINOV2_S14_REG", "dinov2_vits14_reg")):
                    state = getattr(module, entry)(pretrained=False).state_dict()
                    self._serve(name, pickled(jittered(state, gen)))
        self.urls["DINOV2_BASE"] = self.urls["DINOV2_S14"].rsplit("/", 2)[0]
        with imported_like_the_child(substituted(DEIT_FORK_FILES, ph), tmp, {}) as module:
            for name, entry in (("DEIT_TINY_URL", "deit_tiny_patch16_224"),
                                ("DEIT_TINY_DISTILLED_URL", "deit_tiny_distilled_patch16_224")):  # fmt: skip
                state = getattr(module, entry)(pretrained=False).state_dict()
                self._serve(name, pickled({"model": jittered(state, gen), "epoch": 299}))
        with imported_like_the_child(substituted(YOLO_CUSTOM_FILES, ph), tmp, {}) as module:
            state = module.yolov5n(pretrained=False, autoshape=False).state_dict()
            self.yolo_ckpt = {"model": jittered(state, gen), "names": {i: f"part{i}" for i in range(4)}}
            self._serve("YOLO_N", pickled(self.yolo_ckpt))
        self.urls["YOLO_RELEASES"] = self.urls["YOLO_N"].rsplit("/", 1)[0]
        with imported_like_the_child(substituted(DTYPE_FILES, ph), tmp, {}) as module:
            for name, entry in (("DTYPE_MLP_URL", "mlp"), ("DTYPE_CONV_URL", "convnet")):
                state = jittered(getattr(module, entry)(pretrained=False).state_dict(), gen)
                # convnet's saved from DistributedDataParallel: every key under ``module.``
                prefix = "module." if entry == "convnet" else ""
                self._serve(name, pickled({"state_dict": {f"{prefix}{k}": v for k, v in state.items()}}))
        with imported_like_the_child(substituted(X3D_FILES, ph), tmp, {}) as module:
            self._serve("X3D_S", pickled({"model_state": jittered(module.x3d_s().state_dict(), gen), "epoch": 300}))
        self.urls["X3D_ROOT"] = self.urls["X3D_S"].rsplit("/", 1)[0]
        names = {**PLACEHOLDERS, **self.urls}
        self.files = {
            "dinov2-reg": substituted(DINOV2_REG_FILES, names),
            "deit-fork": substituted(DEIT_FORK_FILES, names),
            "yolo-custom": substituted(YOLO_CUSTOM_FILES, names),
            "dtype": substituted(DTYPE_FILES, names),
            "x3d": substituted(X3D_FILES, names),
        }
        self.specs = {repo: env.spec(publish(env, repo, files)) for repo, files in self.files.items()}

    def direct(self, repo: str, entry: str, **kw: Any) -> nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return super().direct(repo, entry, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    direct = tmp_path_factory.mktemp("direct")
    with hub_env_context(tmp_path_factory.mktemp("real-hub-zoo10"), git_server) as env:
        yield World(env, direct)


def _x(size: int, batch: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, batch * 3 * size * size).reshape(batch, 3, size, size).to(dtype)


def _load(world: World, repo: str, entry: str, policy: str, tmp_path: Path, *, inputs: list[str] | None,
          **kw: Any) -> nn.Module:  # fmt: skip
    """Locked (``lock -e`` with ``inputs`` under ``policy``) unless ``inputs`` is None."""
    spec, lock = world.specs[repo], tmp_path / "hub.lock"
    if inputs is not None:
        lock_repos([spec], entrypoints=[entry], policy=policy, lock=lock, example_inputs=inputs, args=kw)
    return securehub.load(spec, entry, policy=policy, lock=lock if inputs is not None else None, verbose=False,
                          force_reload=True, **kw)  # fmt: skip


# ------------------------------------------------------------------------------------------ dinov2


def _no_head(m: nn.Module) -> None:
    m.head = nn.Linear(16, 3)


@pytest.mark.parametrize(("policy", "entry", "kw"), [
    ("default", "dinov2_vits14_reg", {}),
    ("permissive", "dinov2_vits14_reg", {}),
    ("default", "dinov2_vits14", {"pretrained": False, "block_chunks": 2, "depth": 4}),
])  # fmt: skip
def test_dinov2_register_model_with_xformers_missing(
    world: World, policy: str, entry: str, kw: dict[str, Any], tmp_path: Path
) -> None:
    """The optional xformers import fails and its fallback runs (no ``dependency-missing``, no violation),
    as under torch.hub; under source hubconf runs in this process too, so its import-time warnings are
    the caller's, as with torch.hub."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _load(world, "dinov2-reg", entry, policy, tmp_path,
                      inputs=["1x3x28x28:float32"] if policy == "default" else None, **kw)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == expected_strategy(policy)
    said = {str(w.message) for w in caught}
    if policy == "permissive":
        assert {"xFormers is not available (Attention)", "xFormers is not available (Block)"} <= said, said
        assert {type(b.attn).__name__ for b in model.modules() if hasattr(b, "attn")} == {"MemEffAttention"}
    state = model.state_dict()
    if kw.get("pretrained", True):
        assert [a["url"] for a in record["artifacts"]] == [world.urls["DINOV2_S14_REG"]]
        assert state["register_tokens"].shape == (1, 4, 16) and "blocks.1.ls2.gamma" in state
    else:
        assert record["artifacts"] == []
        # the chunks' padding is one nn.Identity repeated: no state of its own; the blocks keep their index
        assert "blocks.1.2.ls1.gamma" in state and "blocks.1.0.ls1.gamma" not in state
    x = _x(28)

    def extra(m: nn.Module) -> None:
        if record["strategy"] == "source":
            feats = m.forward_features(x)
            registers = 4 if entry.endswith("_reg") else 0
            assert feats["x_norm_regtokens"].shape == (2, registers, 16)
            assert feats["x_norm_patchtokens"].shape == (2, 4, 16)

    assert_used_like_the_direct_model(model, record["strategy"], lambda: world.direct("dinov2-reg", entry, **kw), x,
                                      tmp_path, head=_no_head, extra=extra)  # fmt: skip


# ------------------------------------------------------------------------------------------ deit


@pytest.mark.parametrize("policy", ["default", "permissive"])
def test_deit_distilled_two_tokens_two_heads(world: World, policy: str, tmp_path: Path) -> None:
    """Eval mode averages the two heads (what export keeps); train mode returns both (source)."""
    entry = "deit_tiny_distilled_patch16_224"
    model = _load(world, "deit-fork", entry, policy, tmp_path, inputs=["auto"] if policy == "default" else None,
                  pretrained=True)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == expected_strategy(policy)
    assert [a["url"] for a in record["artifacts"]] == [world.urls["DEIT_TINY_DISTILLED_URL"]]
    assert model.state_dict()["pos_embed"].shape == (1, 16 + 2, 16) and "dist_token" in model.state_dict()
    x = _x(32)
    with torch.no_grad():
        state = model.state_dict()
        direct = world.direct("deit-fork", entry, pretrained=False)
        direct.load_state_dict(state)
        cls, dist = direct.forward_features(x)
        both = (direct.head(cls) + direct.head_dist(dist)) / 2
        torch.testing.assert_close(model.eval()(x), both, rtol=1e-5, atol=1e-5)

    def head(m: nn.Module) -> None:
        m.head, m.head_dist = nn.Linear(16, 3), nn.Linear(16, 3)

    def extra(m: nn.Module) -> None:
        if record["strategy"] == "source":
            m.train()
            out = m(x)
            assert isinstance(out, tuple) and len(out) == 2 and out[0].shape == out[1].shape == (2, 10)
            m.eval()

    assert_used_like_the_direct_model(model, record["strategy"],
                                      lambda: world.direct("deit-fork", entry, pretrained=True), x, tmp_path,
                                      head=head, extra=extra)  # fmt: skip


# ------------------------------------------------------------------------------------------ yolov5 custom


def test_yolov5_custom_with_a_local_checkpoint_path(world: World, tmp_path: Path) -> None:
    """``custom(path=...)`` names a file on this machine: the sandbox cannot read it, under every policy
    (never a silent read); the message names the file and the argument and says what to do."""
    best = tmp_path / "runs" / "train" / "exp" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(pickled(world.yolo_ckpt))
    for policy in ("default", "permissive"):
        world.env.clear_logs()
        code, message = refused(lambda: securehub.load(world.specs["yolo-custom"], "custom", path=str(best),
                                                        policy=policy, lock=None, verbose=False))  # fmt: skip
        assert code == "sandbox-violation", message
        assert f"open {best}" in message and "[Errno 13] Permission denied" in message, message
        assert (
            f"The entrypoint's argument 'path' names {str(best)!r}; the sandbox cannot read files of this "
            "machine" in message
        ), message
        assert "download it in the entrypoint with torch.hub.load_state_dict_from_url" in message, message
        assert not world.env.artifacts.requests
        assert audit_records(world.env)[-1]["code"] == "sandbox-violation"
    # a relative path: looked up in the child's private working directory (never the caller's)
    code, message = refused(lambda: securehub.load(world.specs["yolo-custom"], "custom", "best.pt",
                                                    policy="permissive", lock=None, verbose=False))  # fmt: skip
    assert code == "entrypoint-error", message
    assert "No such file or directory: 'best.pt'" in message, message
    assert (
        "positional argument 1 names 'best.pt', a file of this machine: a relative path is looked up in "
        "the sandbox's own empty working directory, not yours; the sandbox cannot read" in message
    ), message


def test_yolov5n_release_asset_with_autoshape_through_source(world: World, tmp_path: Path) -> None:
    """``attempt_download`` of a known asset name goes through torch.hub.download_url_to_file;
    ``AutoShape`` with class attributes the user sets after loading (``model.conf``)."""
    model = securehub.load(world.specs["yolo-custom"], "yolov5n", policy="permissive", lock=None, verbose=False)
    record = audit_records(world.env)[-1]
    assert record["strategy"] == "source"
    assert [a["url"] for a in record["artifacts"]] == [world.urls["YOLO_N"]]
    assert type(model).__name__ == "AutoShape" and model.names == {i: f"part{i}" for i in range(4)}
    x = _x(32)
    direct = world.direct("yolo-custom", "yolov5n")
    for m in (model, direct):
        m.conf = 0.5
    torch.testing.assert_close(model(x), direct(x))
    assert (model(x) == 0).any()


# ------------------------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize(("policy", "entry", "kw", "dtype"), [
    ("strict", "mlp", {"dtype": "bfloat16"}, torch.bfloat16),
    ("permissive", "mlp", {"dtype": "float16", "device": "cpu"}, torch.float16),
    ("strict", "convnet", {"model_math": "fp16"}, torch.float16),
    ("permissive", "convnet", {"model_math": "fp16"}, torch.float16),
])  # fmt: skip
def test_half_and_bfloat16_states(
    world: World, policy: str, entry: str, kw: dict[str, Any], dtype: torch.dtype, tmp_path: Path
) -> None:
    """States converted by the entrypoint keep their dtypes through every strategy (float batch norms
    next to half convolutions included)."""
    shape = "2x12" if entry == "mlp" else "1x3x8x8"
    name = str(dtype).removeprefix("torch.")
    model = _load(world, "dtype", entry, policy, tmp_path,
                  inputs=[f"{shape}:{name}"] if policy == "strict" else None, **kw)  # fmt: skip
    record = audit_records(world.env)[-1]
    # torch.nn classes only: trusted under both policies (permissive lists it first too)
    assert record["strategy"] == ("trusted" if entry == "mlp" else expected_strategy(policy))
    assert [a["url"] for a in record["artifacts"]] == [world.urls["DTYPE_MLP_URL" if entry == "mlp" else
                                                                  "DTYPE_CONV_URL"]]  # fmt: skip
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    direct = world.direct("dtype", entry, **kw)
    assert dtypes == {k: v.dtype for k, v in direct.state_dict().items()}
    if entry == "convnet":
        assert dtypes["conv.weight"] == torch.float16 and dtypes["bn.weight"] == torch.float32
    else:
        assert set(dtypes.values()) == {dtype}
    x = torch.linspace(-1, 1, 24).reshape(2, 12).to(dtype) if entry == "mlp" else _x(8, dtype=dtype)

    def head(m: nn.Module) -> None:
        if entry == "mlp":
            m[3] = nn.Linear(16, 3, dtype=dtype)
        else:
            m.fc = nn.Linear(8, 3, dtype=dtype)

    assert_used_like_the_direct_model(model, record["strategy"], lambda: world.direct("dtype", entry, **kw), x,
                                      tmp_path, head=head)  # fmt: skip


# ------------------------------------------------------------------------------------------ x3d


@pytest.mark.parametrize("policy", ["default", "permissive"])
def test_x3d_s_with_a_custom_autograd_swish(world: World, policy: str, tmp_path: Path) -> None:
    """``SwishFunction.apply`` in forward: export traces through the custom autograd Function (eval), source
    keeps it, and fine-tuning runs its own backward."""
    model = _load(world, "x3d", "x3d_s", policy, tmp_path, inputs=["1x3x4x16x16:float32"] if policy == "default"
                  else None, pretrained=True)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == expected_strategy(policy)
    assert [a["url"] for a in record["artifacts"]] == [world.urls["X3D_S"]]
    x = torch.linspace(-1.0, 1.0, 2 * 3 * 4 * 16 * 16).reshape(2, 3, 4, 16, 16)
    with torch.no_grad():
        probs = model.eval()(x)
    torch.testing.assert_close(probs.sum(1), torch.ones(2))  # the head's softmax, applied in eval mode

    def head(m: nn.Module) -> None:
        m.blocks[-1].proj = nn.Linear(16, 3)
        m.blocks[-1].activation = None

    def extra(m: nn.Module) -> None:
        if record["strategy"] == "source":
            assert type(m.blocks[1].branch2.act_b).__name__ == "Swish"

    assert_used_like_the_direct_model(model, record["strategy"], lambda: world.direct("x3d", "x3d_s", pretrained=True),
                                      x, tmp_path, head=head, extra=extra)  # fmt: skip
