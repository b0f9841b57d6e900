"""Repositories written like mit-han-lab/ProxylessNAS, mit-han-lab/once-for-all,
nicolalandro/ntsnet-cub200, snakers4/silero-vad and szq0214/MEAL-V2, end to end (real-code round 9).

Rounds 1-8 (test_real_hub_styles.py, test_real_hub_models.py, test_real_hub_zoo*.py) cover the others.
Here, their code written after the upstream repositories (narrowed) in tests/_realrepo_zoo9.py,
published on the loopback git server:

- ``proxyless``: upstream downloads with ``urlretrieve``: ``sandbox-violation`` naming the functions
  securehub answers. The fork (``torch.hub.download_url_to_file``) loads its ``functools.partial``
  entrypoints: a JSON net config downloaded and built by class name, the checkpoint ``torch.load``-ed
  from the downloaded path; both files in the audit line, through export and source;
- ``ofa``: upstream imports ``gdown``: ``dependency-missing``. The fork's supernet (dynamic layers slicing
  their weights in forward) loads through export and source; ``set_active_subnet``/``get_active_subnet``
  work on the source model and are an ``AttributeError`` saying why on the exported one; the fork's
  ``ofa_subnet`` (sliced copies) loads through export; ``ofa_specialized_get`` returns a function;
- ``ntsnet``: upstream's ``np.int`` fails in the entrypoint (numpy >= 1.24) as with torch.hub:
  ``entrypoint-error``. The fork (two downloads: the backbone's, the model's; numpy anchors as a plain
  attribute; a forward doing NMS in numpy and returning a 7-tuple with Python lists) loads through
  source; its forward cannot be exported, so ``lock -e`` is ``reconstruct-refused`` saying so;
- ``silero``: upstream imports torchaudio: ``dependency-missing``. The fork's ``silero_vad`` loads its
  TorchScript archive with ``torch.jit.load`` in the sandbox and returns ``(model, utils)``:
  ``reconstruct-refused`` naming ``builtins.tuple`` under every policy; the model alone is refused
  as a TorchScript module; ``onnx=True`` is ``dependency-missing`` (onnxruntime);
- ``meal``: upstream imports timm: ``dependency-missing``. The fork (a vendored timm-like registry)
  calls ``.cuda()`` on CPU-only torch: ``entrypoint-error`` with torch's message; ``meal_v2_cpu``
  (``module.`` stripped) loads through export and source.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
import torch.hub
from torch import nn

import securehub
from securehub._util.determinism import preserved_rng, seed_all
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import HubEnv, audit_records, hub_env_context, publish, refused
from tests._hubconf_import import imported_like_the_child
from tests._realrepo_checks import assert_used_like_the_direct_model, expected_strategy, jittered, pickled
from tests._realrepo_world import ZOO_MARKS, ZooWorld, substituted
from tests._realrepo_zoo9 import (
    MEAL_FILES,
    MEAL_FORK_FILES,
    NTSNET_FILES,
    NTSNET_FORK_FILES,
    OFA_FILES,
    OFA_FORK_FILES,
    PROXYLESS_FILES,
    PROXYLESS_FORK_FILES,
    PROXYLESS_TORCH_ONLY_FILES,
    SILERO_FILES,
    SILERO_FORK_FILES,
    SILERO_JIT_PATH,
)
from tests._servers import GitServer

pytestmark = ZOO_MARKS

PROXYLESS = "han-cai/files/master/proxylessnas"
URL_PATHS = {
    "CPU_CONFIG_URL": f"{PROXYLESS}/proxyless_cpu.config",
    "CPU_WEIGHT_URL": f"{PROXYLESS}/proxyless_cpu.pth",
    "MOBILE_CONFIG_URL": f"{PROXYLESS}/proxyless_mobile.config",
    "MOBILE_WEIGHT_URL": f"{PROXYLESS}/proxyless_mobile.pth",
    "OFA_URL": "han-cai/files/master/ofa/ofa_nets/ofa_proxyless_d12_e23_k35_w1.0",
    "NTS_URL": "nicolalandro/ntsnet_cub200/releases/download/0.2/nts_net_cub200.pt",
    "RESNET_URL": "models/resnet50-@.pth",
    "MEAL_MBV3_URL": "szq0214/MEAL-V2/releases/download/v1.0.0/MEALV2_MobileNet_V3_Small_1.0_224.pth",
}
PLACEHOLDERS = dict.fromkeys([*URL_PATHS, "OFA_URL_BASE", "MEAL_RESNET_URL"], "https://weights.example.com/placeholder")


def _net_config(first: int, mix: int, kernel: int) -> dict[str, Any]:
    """A ProxylessNAS net config (the JSON served next to the weights), narrowed."""

    def mb(cin: int, cout: int, k: int, s: int, e: int) -> dict[str, Any]:
        return {"name": "MBInvertedConvLayer", "in_channels": cin, "out_channels": cout, "kernel_size": k,
                "stride": s, "expand_ratio": e}  # fmt: skip

    identity = {"name": "IdentityLayer", "in_channels": 8, "out_channels": 8}
    return {
        "name": "ProxylessNASNets",
        "bn": {"momentum": 0.1, "eps": 0.001},
        "first_conv": {"name": "ConvLayer", "in_channels": 3, "out_channels": first, "kernel_size": 3, "stride": 2,
                       "use_bn": True, "act_func": "relu6", "dropout_rate": 0, "ops_order": "weight_bn_act"},
        "blocks": [
            {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": mb(first, 4, 3, 1, 1), "shortcut": None},
            {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": mb(4, 8, kernel, 2, 3), "shortcut": None},
            {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": mb(8, 8, 3, 1, 3), "shortcut": identity},
            {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": {"name": "ZeroLayer", "stride": 1},
             "shortcut": identity},
        ],
        "feature_mix_layer": {"name": "ConvLayer", "in_channels": 8, "out_channels": mix, "kernel_size": 1,
                              "stride": 1, "use_bn": True, "act_func": "relu6", "dropout_rate": 0,
                              "ops_order": "weight_bn_act"},
        "classifier": {"name": "LinearLayer", "in_features": mix, "out_features": 10, "bias": True,
                       "dropout_rate": 0.0},
    }  # fmt: skip


def _jit_vad() -> bytes:
    """A TorchScript archive standing for silero's ``silero_vad.jit`` (``forward(x, sr)``, ``reset_states``)."""

    class Vad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 4, 8, stride=4)
            self.out = nn.Linear(4, 1)

        def forward(self, x: torch.Tensor, sr: int) -> torch.Tensor:
            h = torch.relu(self.conv(x.unsqueeze(1))).mean(-1)
            return torch.sigmoid(self.out(h)) * (sr / 16000)

        @torch.jit.export
        def reset_states(self) -> None:
            pass

    import io

    buf = io.BytesIO()
    with preserved_rng():
        seed_all()
        torch.jit.save(torch.jit.script(Vad()), buf)
    return buf.getvalue()


class World(ZooWorld):
    url_paths = URL_PATHS

    def __init__(self, env: HubEnv, tmp: Path) -> None:
        super().__init__(env, tmp)
        gen = torch.Generator().manual_seed(9)
        # ProxylessNAS: the configs first (the network is built from them), then the weights
        for name, config in (("CPU", _net_config(8, 16, 5)), ("MOBILE", _net_config(6, 12, 3))):
            self._serve(f"{name}_CONFIG_URL", json.dumps(config).encode())
        blobs = dict(self.blobs)
        ph = {**PLACEHOLDERS, **self.urls}
        with self._home(), preserved_rng(), imported_like_the_child(substituted(PROXYLESS_FORK_FILES, ph), tmp,
                                                                    blobs) as module:  # fmt: skip
            for name, entry in (("CPU", "proxyless_cpu"), ("MOBILE", "proxyless_mobile")):
                seed_all()
                state = getattr(module, entry)(pretrained=False).state_dict()
                self._serve(f"{name}_WEIGHT_URL", pickled({"state_dict": jittered(state, gen), "epoch": 299}))
        with preserved_rng(), imported_like_the_child(substituted(OFA_FORK_FILES, ph), tmp, {}) as module:
            seed_all()
            state = module.ofa_supernet_proxyless(pretrained=False).state_dict()
        self._serve("OFA_URL", pickled({"state_dict": jittered(state, gen), "epoch": 120}))
        self.urls["OFA_URL_BASE"] = self.urls["OFA_URL"].rsplit("/", 1)[0]
        # ntsnet: the backbone's ImageNet weights are downloaded by the constructor itself
        resnet_ph = {**ph, "RESNET_URL": "https://download.example.com/models/resnet50-00000000.pth"}
        with preserved_rng(), imported_like_the_child(substituted(NTSNET_FORK_FILES, resnet_ph), tmp, {}) as module:
            seed_all()
            backbone = module.attention_net.__init__.__globals__["resnet"].resnet50(pretrained=False)
            self._serve("RESNET_URL", pickled(jittered(backbone.state_dict(), gen)))
        with preserved_rng(), imported_like_the_child(substituted(NTSNET_FORK_FILES, {**ph, **self.urls}), tmp,
                                                      dict(self.blobs)) as module:  # fmt: skip
            seed_all()
            self._serve("NTS_URL", pickled(jittered(module.ntsnet(pretrained=False).state_dict(), gen)))
        with preserved_rng(), imported_like_the_child(substituted(MEAL_FORK_FILES, ph), tmp, {}) as module:
            seed_all()
            state = module.meal_v2_cpu("mealv2_mobilenetv3_small_100", pretrained=False).state_dict()
        self._serve("MEAL_MBV3_URL", pickled({f"module.{k}": v for k, v in jittered(state, gen).items()}))
        names = {**PLACEHOLDERS, **self.urls}
        jit = _jit_vad()
        self.files = {
            "proxyless": substituted(PROXYLESS_FILES, names),
            "proxyless-torch-only": substituted(PROXYLESS_TORCH_ONLY_FILES, names),
            "proxyless-fork": substituted(PROXYLESS_FORK_FILES, names),
            "ofa": substituted(OFA_FILES, names),
            "ofa-fork": substituted(OFA_FORK_FILES, names),
            "ntsnet": substituted(NTSNET_FILES, names),
            "ntsnet-fork": substituted(NTSNET_FORK_FILES, names),
            "silero": {**substituted(SILERO_FILES, names), SILERO_JIT_PATH: jit},
            "silero-fork": {**substituted(SILERO_FORK_FILES, names), SILERO_JIT_PATH: jit},
            "meal": substituted(MEAL_FILES, names),
            "meal-fork": substituted(MEAL_FORK_FILES, names),
        }
        self.specs = {repo: env.spec(publish(env, repo, files)) for repo, files in self.files.items()}

    def _home(self) -> Any:
        """ProxylessNAS downloads into ``~/.torch/proxyless_nas``: a HOME under the test's tmp."""
        return mock.patch.dict(os.environ, {"HOME": str(self.tmp / "home")})

    def direct(self, repo: str, entry: str, **kw: Any) -> nn.Module:
        with self._home():
            return super().direct(repo, entry, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    direct = tmp_path_factory.mktemp("direct")
    with hub_env_context(tmp_path_factory.mktemp("real-hub-zoo9"), git_server) as env:
        yield World(env, direct)


def _x(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, batch * 3 * size * size).reshape(batch, 3, size, size)


def _lock(spec: str, entry: str, policy: str, lock: Path, **kw: Any) -> None:
    lock_repos([spec], entrypoints=[entry], policy=policy, lock=lock, example_inputs=["1x3x32x32:float32"], **kw)


def _load(world: World, repo: str, entry: str, policy: str, tmp_path: Path, *, locked: bool, **kw: Any) -> nn.Module:
    """Locked (``lock -e --example-input auto`` under ``policy``) unless ``locked`` is False."""
    spec, lock = world.specs[repo], tmp_path / "hub.lock"
    if locked:
        _lock(spec, entry, policy, lock, args=kw)
    return securehub.load(spec, entry, policy=policy, lock=lock if locked else None, verbose=False,
                          force_reload=True, **kw)  # fmt: skip


def _declared_missing(world: World, repo: str, entry: str, package: str) -> None:
    """Upstream declares a package that is not installed: refused before anything runs, as torch.hub does."""
    code, message = refused(lambda: securehub.load(world.specs[repo], entry, policy="permissive", lock=None,
                                                    verbose=False))  # fmt: skip
    assert code == "dependency-missing", message
    assert f"hubconf.py declares dependencies that are not installed: {package}" in message, message
    assert "install them in this environment yourself" in message, message


def test_upstreams_declaring_packages_that_are_not_installed(world: World) -> None:
    """ProxylessNAS declares torchvision (its model code does not use it), MEAL-V2 timm. hubconf.py is
    imported before its ``dependencies`` are checked (as torch.hub does), so where an import fails first
    that is what is named: silero-vad's utils_vad imports the declared torchaudio, once-for-all's
    model_zoo the undeclared gdown (below)."""
    _declared_missing(world, "proxyless", "proxyless_cpu", "torchvision")
    for repo, entry, where in (("silero", "silero_vad", "src/silero_vad/utils_vad.py imports 'torchaudio'"),
                               ("meal", "meal_v2", "hubconf.py imports 'timm'")):  # fmt: skip
        code, message = refused(lambda: securehub.load(world.specs[repo], entry, policy="permissive", lock=None,
                                                        verbose=False))  # fmt: skip
        assert code == "dependency-missing", message
        assert f"{where}, which is not installed; install it" in message, message


def test_proxyless_urlretrieve_is_a_named_violation(world: World) -> None:
    """Upstream's ``download_url`` calls ``urlretrieve``: no network in the sandbox, the message says what does."""
    world.env.clear_logs()
    code, message = refused(lambda: securehub.load(world.specs["proxyless-torch-only"], "proxyless_cpu",
                                                    policy="permissive", lock=None, verbose=False))  # fmt: skip
    assert code == "sandbox-violation", message
    assert "torch.hub.load_state_dict_from_url" in message and "urllib" in message, message
    assert not world.env.artifacts.requests  # nothing reached the artifact server
    assert audit_records(world.env)[-1]["code"] == "sandbox-violation"


@pytest.mark.parametrize(("policy", "entry"), [("strict", "proxyless_cpu"), ("permissive", "proxyless_mobile")])
def test_proxyless_fork_builds_from_its_downloaded_net_config(
    world: World, policy: str, entry: str, tmp_path: Path
) -> None:
    """``functools.partial`` entrypoints; the JSON net config and the checkpoint both fetched through
    ``download_url_to_file``, the checkpoint then ``torch.load``-ed from the copy in ``~/.torch``."""
    model = _load(world, "proxyless-fork", entry, policy, tmp_path, locked=policy != "permissive")
    record = audit_records(world.env)[-1]
    assert record["strategy"] == expected_strategy(policy)
    name = "CPU" if entry == "proxyless_cpu" else "MOBILE"
    assert [a["url"] for a in record["artifacts"]] == [world.urls[f"{name}_CONFIG_URL"],
                                                       world.urls[f"{name}_WEIGHT_URL"]]  # fmt: skip
    if record["strategy"] == "source":
        bn = model.first_conv.bn
        assert (bn.momentum, bn.eps) == (0.1, 0.001)  # set from the config (export bakes eps in its program)

    def head(m: nn.Module) -> None:
        m.classifier.linear = nn.Linear(m.classifier.linear.in_features, 3)

    assert_used_like_the_direct_model(model, record["strategy"], lambda: world.direct("proxyless-fork", entry), _x(),
                                      tmp_path, head=head)  # fmt: skip


def test_ofa_undeclared_gdown(world: World) -> None:
    """Upstream's model_zoo imports gdown (undeclared) at the top; hubconf.py is imported before its
    ``dependencies`` are checked (as torch.hub does), so this is what fails, not the declared torchvision."""
    code, message = refused(lambda: securehub.load(world.specs["ofa"], "ofa_supernet_proxyless",
                                                    policy="permissive", lock=None, verbose=False))  # fmt: skip
    assert code == "dependency-missing", message
    assert "ofa/model_zoo.py imports 'gdown'" in message and "install it" in message, message


def _ofa_head(m: nn.Module) -> None:
    m.classifier[1] = nn.Linear(m.classifier[1].in_features, 3)


@pytest.mark.parametrize("policy", ["strict", "permissive"])
def test_ofa_supernet_and_its_active_subnet(world: World, policy: str, tmp_path: Path) -> None:
    """The supernet's forward slices its largest weights; ``set_active_subnet``/``get_active_subnet`` are
    methods of the repository's class: kept by source, an AttributeError saying why on the exported model."""
    entry = "ofa_supernet_proxyless"
    model = _load(world, "ofa-fork", entry, policy, tmp_path, locked=policy == "strict")
    record = audit_records(world.env)[-1]
    assert record["strategy"] == expected_strategy(policy)
    assert [a["url"] for a in record["artifacts"]] == [world.urls["OFA_URL"]]
    assert "blocks.1.conv.depth_conv.conv.5to3_matrix" in model.state_dict()
    x = _x()
    assert_used_like_the_direct_model(model, record["strategy"], lambda: world.direct("ofa-fork", entry), x, tmp_path,
                                      head=_ofa_head)  # fmt: skip
    if record["strategy"] == "export":
        with pytest.raises(AttributeError) as excinfo:
            model.set_active_subnet(ks=3, e=2, d=1)
        assert "'set_active_subnet'" in str(excinfo.value) and "rebuilt by securehub's export strategy" in str(
            excinfo.value
        )
        assert "trusted or source" in str(excinfo.value)
        return
    direct = world.direct("ofa-fork", entry).eval()
    for net in (model, direct):
        net.set_active_subnet(ks=3, e=2, d=1)
    subnet = model.get_active_subnet(preserve_weight=True).eval()
    assert type(subnet).__name__ == "ProxylessNASNets" and len(subnet.blocks) == 3
    with torch.no_grad():
        torch.testing.assert_close(subnet(x), model(x), rtol=1e-5, atol=1e-5)  # sliced copies compute the same
        torch.testing.assert_close(subnet(x), direct(x), rtol=1e-5, atol=1e-5)


def test_ofa_fork_subnet_entrypoint(world: World, tmp_path: Path) -> None:
    """The active subnet returned by the entrypoint (weights sliced and copied in the sandbox)."""
    model = _load(world, "ofa-fork", "ofa_subnet", "default", tmp_path, locked=True, ks=3, e=2, d=1)
    record = audit_records(world.env)[-1]
    assert record["strategy"] == "export"
    state = model.state_dict()
    assert state["blocks.1.conv.depth_conv.conv.weight"].shape[-1] == 3  # the 3x3 kernel, not the 5x5
    assert not any(k.endswith("_matrix") for k in state)
    assert_used_like_the_direct_model(model, "export", lambda: world.direct("ofa-fork", "ofa_subnet", ks=3, e=2, d=1),
                                      _x(), tmp_path, head=_ofa_head)  # fmt: skip
    code, message = refused(lambda: securehub.load(world.specs["ofa-fork"], "ofa_specialized_get",
                                                    policy="permissive", lock=None, verbose=False))  # fmt: skip
    assert code == "reconstruct-refused" and "the entrypoint returned a builtins.function" in message, message


def test_ntsnet_upstream_np_int_fails_in_the_entrypoint(world: World) -> None:
    """``np.int`` was removed in numpy 1.24: torch.hub fails the same way."""
    code, message = refused(lambda: securehub.load(world.specs["ntsnet"], "ntsnet", policy="permissive", lock=None,
                                                    verbose=False))  # fmt: skip
    assert code == "entrypoint-error", message
    assert "module 'numpy' has no attribute 'int'" in message, message


class _Tensors(nn.Module):
    """ntsnet's 7-tuple without its first item (lists of numpy ints): what the shared checks compare."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)[1:]


def test_ntsnet_fork_loads_through_source_only(world: World, tmp_path: Path) -> None:
    """numpy NMS in forward: no program can be exported, so ``lock -e`` is refused saying so (nothing
    written); permissive loads it with its numpy anchors."""
    import numpy as np

    spec, lock = world.specs["ntsnet-fork"], tmp_path / "hub.lock"
    code, message = refused(lambda: _lock(spec, "ntsnet", "strict", lock, args={"pretrained": True}))
    assert code == "reconstruct-refused", message
    assert "torch.export failed in the sandbox" in message and ".numpy() is not supported" in message, message
    assert "nothing was recorded" in message and "allows the source strategy" in message, message
    assert not lock.exists()
    model = securehub.load(spec, "ntsnet", pretrained=True, policy="permissive", lock=None, verbose=False)
    record = audit_records(world.env)[-1]
    assert record["strategy"] == "source"
    assert [a["url"] for a in record["artifacts"]] == [world.urls["RESNET_URL"], world.urls["NTS_URL"]]
    assert isinstance(model.edge_anchors, np.ndarray) and model.edge_anchors.shape == (129, 4)
    x = _x()
    with torch.no_grad():
        coordinates, *_, top_n_index, top_n_prob = model.eval()(x)
    assert len(coordinates) == 2 * 4 and top_n_index.shape == top_n_prob.shape == (2, 4)

    def head(m: nn.Module) -> None:
        m.model.concat_net = nn.Linear(48, 3)

    assert_used_like_the_direct_model(_Tensors(model), "source",
                                      lambda: _Tensors(world.direct("ntsnet-fork", "ntsnet", pretrained=True)), x,
                                      tmp_path, head=head)  # fmt: skip


def test_silero_fork_returns_a_torchscript_model_with_utils(world: World, tmp_path: Path) -> None:
    """``torch.jit.load`` of the repository's archive runs in the sandbox; what it returns never crosses."""
    spec, lock = world.specs["silero-fork"], tmp_path / "hub.lock"
    code, message = refused(lambda: lock_repos([spec], entrypoints=["silero_vad"], policy="strict", lock=lock))
    assert code == "reconstruct-refused" and "the entrypoint returned a builtins.tuple" in message, message
    assert not lock.exists()
    for policy in ("default", "permissive"):  # permissive too: the child refuses it before any strategy
        code, message = refused(lambda: securehub.load(spec, "silero_vad", policy=policy, lock=None, verbose=False))
        assert code == "reconstruct-refused", message
        assert "the entrypoint returned a builtins.tuple" in message and "return the model alone" in message
        assert audit_records(world.env)[-1]["code"] == "reconstruct-refused"
    code, message = refused(lambda: securehub.load(spec, "silero_vad_jit", policy="permissive", lock=None,
                                                    verbose=False))  # fmt: skip
    assert code == "reconstruct-refused", message
    assert "the entrypoint returned a TorchScript module (torch.jit.ScriptModule)" in message, message
    assert "return the eager nn.Module instead" in message, message
    code, message = refused(lambda: securehub.load(spec, "silero_vad", onnx=True, policy="permissive", lock=None,
                                                    verbose=False))  # fmt: skip
    assert code == "dependency-missing" and "'onnxruntime'" in message, message


def test_meal_v2_cuda_call_fails_on_cpu_torch(world: World) -> None:
    """``DataParallel(model).cuda()`` before loading the weights: torch built without CUDA raises, as with
    torch.hub on a CPU machine."""
    code, message = refused(lambda: securehub.load(world.specs["meal-fork"], "meal_v2", "mealv2_mobilenetv3_small_100",
                                                    policy="permissive", lock=None, verbose=False))  # fmt: skip
    assert code == "entrypoint-error", message
    assert "Torch not compiled with CUDA enabled" in message, message


@pytest.mark.parametrize("policy", ["strict", "permissive"])
def test_meal_v2_cpu_strips_the_data_parallel_prefix(world: World, policy: str, tmp_path: Path) -> None:
    """A builder looked up by name in a vendored timm-like registry; the checkpoint's ``module.`` keys stripped."""
    name = "mealv2_mobilenetv3_small_100"
    model = _load(world, "meal-fork", "meal_v2_cpu", policy, tmp_path, locked=policy == "strict", model_name=name)
    record = audit_records(world.env)[-1]
    assert record["strategy"] == expected_strategy(policy)
    assert [a["url"] for a in record["artifacts"]] == [world.urls["MEAL_MBV3_URL"]]
    assert not any(k.startswith("module.") for k in model.state_dict())

    def head(m: nn.Module) -> None:
        m.classifier = nn.Linear(32, 3)

    assert_used_like_the_direct_model(model, record["strategy"],
                                      lambda: world.direct("meal-fork", "meal_v2_cpu", model_name=name), _x(),
                                      tmp_path, head=head)  # fmt: skip
