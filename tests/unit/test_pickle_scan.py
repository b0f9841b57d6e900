"""Benign checkpoints scan clean (no false positives); allowlist and API behaviour."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.package
from torch import nn

from securehub.errors import UnsafePickle
from securehub.verify.pickle import ops as _pickle_ops
from securehub.verify.pickle.scan import ScanLimits, check, scan_bytes, scan_file
from tests import _pickle_fixtures as fx


def _resnet_like() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def _checkpoints() -> dict[str, object]:
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    sgd = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    lin(torch.ones(2, 4)).sum().backward()
    sgd.step()
    shared = torch.arange(12.0)
    return {
        "linear": lin.state_dict(),
        "conv2d": nn.Conv2d(3, 4, 3).state_dict(),
        "batchnorm": nn.BatchNorm2d(4).state_dict(),
        "lstm": nn.LSTM(4, 5, num_layers=2).state_dict(),
        "embedding": nn.Embedding(10, 4).state_dict(),
        "transformer": nn.TransformerEncoderLayer(8, 2, dim_feedforward=16).state_dict(),
        "resnet_like": _resnet_like().state_dict(),
        "half_types": {
            "f16": torch.ones(3, dtype=torch.float16),
            "bf16": torch.ones(3, dtype=torch.bfloat16),
        },
        "shared_and_views": {"a": shared, "b": shared[2:6], "t": shared.view(3, 4).t(), "s": shared[::3]},
        "nested": {"l": [torch.zeros(2), {"x": (1, 2.5, "s")}], "od": OrderedDict(k=torch.ones(1))},
        "training": {"epoch": 3, "state_dict": lin.state_dict(), "optimizer": sgd.state_dict(), "best": 0.25},
        "parameter": {"p": nn.Parameter(torch.ones(2))},
        "misc_types": {
            "dev": torch.device("cpu"),
            "size": torch.Size([2, 3]),
            "dtype": torch.int64,
            "set": {1, 2},
        },
    }


CHECKPOINTS = _checkpoints()
VARIANTS = {
    "zip": {},
    "legacy": {"_use_new_zipfile_serialization": False},
    "zip_proto4": {"pickle_protocol": 4},
    "legacy_proto4": {"_use_new_zipfile_serialization": False, "pickle_protocol": 4},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_benign_checkpoint_scans_clean(tmp_path: Path, name: str, variant: str) -> None:
    path = tmp_path / f"{name}.pt"
    torch.save(CHECKPOINTS[name], path, **VARIANTS[variant])  # type: ignore[arg-type]
    result = scan_file(path)
    assert result.findings == ()
    assert result.clean
    assert result.format == ("pickle-zip" if variant.startswith("zip") else "pickle-legacy")
    assert check(path) == result
    if variant == "zip":
        # Sanity: torch's own weights_only loader accepts what we call clean.
        torch.load(path, weights_only=True)


def test_protocol_4_is_clean_for_us_but_torch_weights_only_refuses_it(tmp_path: Path) -> None:
    # Documented: torch 2.13's weights_only unpickler lacks FRAME/MEMOIZE, so a
    # protocol-4 torch.save cannot be loaded with weights_only=True at all.
    path = tmp_path / "p4.pt"
    torch.save(CHECKPOINTS["linear"], path, pickle_protocol=4)
    assert scan_file(path).clean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, weights_only=True)


def test_legacy_format_is_accepted_by_torch_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save(CHECKPOINTS["resnet_like"], path, _use_new_zipfile_serialization=False)
    assert scan_file(path).clean
    torch.load(path, weights_only=True)


def test_allowlist_matches_installed_torch() -> None:
    from torch._weights_only_unpickler import _get_allowed_globals

    assert {f"{m}.{n}" for m, n in _pickle_ops.ALLOWED_GLOBALS} == set(_get_allowed_globals())


def test_name_mappings_match_installed_torch() -> None:
    from torch._utils import IMPORT_MAPPING, NAME_MAPPING

    assert _pickle_ops.IMPORT_MAPPING == IMPORT_MAPPING
    assert _pickle_ops.NAME_MAPPING == NAME_MAPPING


def test_every_pickle_opcode_is_modelled() -> None:
    import pickletools

    assert len(_pickle_ops._DISPATCH) == len(pickletools.opcodes)


@pytest.mark.parametrize("protocol", range(6))
def test_plain_python_pickles_of_allowed_types_are_clean(protocol: int) -> None:
    obj = {"a": [1, 2.0, "x", b"raw", None, True], "t": (1, (2, 3)), "s": {1}, "big": 2**80, "c": 1 + 2j}
    result = scan_bytes(pickle.dumps(obj, protocol=protocol), name="plain")
    assert result.findings == ()
    assert result.format == "pickle"


def test_python2_style_global_is_mapped_like_torch() -> None:
    data = b"\x80\x02" + fx.glob("__builtin__", "set") + b"]\x85R."
    assert scan_bytes(data).clean


def test_non_canonical_split_of_an_allowed_global_is_refused() -> None:
    # torch's string lookup would accept "torch" + "_utils._rebuild_tensor_v2";
    # pickle resolves dotted names by getattr. We accept only the canonical split.
    data = b"\x80\x02" + fx.glob("torch", "_utils._rebuild_tensor_v2") + b"."
    result = scan_bytes(data)
    assert result.globals == ("torch._utils._rebuild_tensor_v2",)


def test_scan_result_is_printable() -> None:
    bad = scan_bytes(fx.reduce_call("posix", "system", "true"), name="bad.pt")
    text = str(bad)
    assert "bad.pt" in text and "global" in text and "posix.system" in text
    good = scan_bytes(fx.benign_pickle(), name="good.pt")
    assert str(good) == "good.pt: ok [pickle] (1 pickle stream(s))"


def test_check_raises_unsafe_pickle_naming_global_and_member(tmp_path: Path) -> None:
    members = fx.torch_members(fx.torch_zip_bytes({"a": torch.ones(1)}))
    members[0].data = fx.reduce_call("posix", "system", "true")
    path = fx.write(tmp_path / "m.pt", fx.write_zip(fx.ZipSpec(members)))
    with pytest.raises(UnsafePickle) as err:
        check(path)
    assert err.value.code == "unsafe-pickle"
    assert "posix.system" in str(err.value)
    assert "archive/data.pkl" in str(err.value)


def test_opcode_limit_is_a_finding() -> None:
    data = pickle.dumps(list(range(1000)), protocol=2)
    limits = ScanLimits(pickle=_pickle_ops.PickleLimits(max_opcodes=100))
    result = scan_bytes(data, limits=limits)
    assert [f.kind for f in result.findings] == ["limit"]


def test_scan_bytes_and_scan_file_agree(tmp_path: Path) -> None:
    data = fx.torch_zip_bytes(CHECKPOINTS["training"])
    path = fx.write(tmp_path / "t.pt", data)
    assert scan_bytes(data, name="t.pt") == scan_file(path)


def test_empty_file_is_a_finding(tmp_path: Path) -> None:
    result = scan_file(fx.write(tmp_path / "empty.pt", b""))
    assert [f.kind for f in result.findings] == ["format"]


def test_torch_package_archive_is_refused_naming_it_and_what_to_do(tmp_path: Path) -> None:
    """silero-models' TTS models are torch.package archives: code plus arbitrary pickled objects, which a
    download is never allowed to be; the message names the format (not 'no data.pkl') and the way out."""
    path = tmp_path / "v3_en.pt"
    with torch.package.PackageExporter(path) as exporter:
        exporter.save_source_string("tts_models", "import torch\nSCALE = 2\n")
        exporter.save_pickle("tts_models", "model", {"scale": torch.ones(2)})
    with pytest.raises(UnsafePickle) as err:
        check(path, name="https://models.example.com/tts/v3_en.pt")
    message = err.value.message
    assert err.value.code == "unsafe-pickle"
    assert (
        "checkpoint 'https://models.example.com/tts/v3_en.pt' [pickle-zip] is a torch.package archive "
        "('v3_en/.data/extern_modules'), not a torch.save checkpoint" in message
    ), message
    assert "securehub downloads weights only, never code" in message, message
    assert "use a repository that commits the archive to its tree" in message, message
    # a zip that is neither keeps the generic finding
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("plain/notes.txt", "hello")
    with pytest.raises(UnsafePickle) as err:
        check(plain)
    assert "no 'plain/data.pkl': not a torch.save checkpoint" in err.value.message
