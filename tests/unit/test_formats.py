"""Format detection is by content only; policy mapping and refusal messages."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import pytest
import safetensors.torch
import torch

from securehub.errors import FormatNotAllowed
from securehub.verify.formats import check_format_allowed, detect_format, policy_format
from tests import _pickle_fixtures as fx


def _torch_bytes(**kwargs: object) -> bytes:
    return fx.torch_zip_bytes({"w": torch.ones(2)}, **kwargs)


def test_torch_zip_is_pickle_zip(tmp_path: Path) -> None:
    assert detect_format(fx.write(tmp_path / "x.bin", _torch_bytes())) == "pickle-zip"
    assert detect_format(_torch_bytes()) == "pickle-zip"


def test_torch_legacy_stream_is_pickle_legacy(tmp_path: Path) -> None:
    data = _torch_bytes(_use_new_zipfile_serialization=False)
    assert detect_format(fx.write(tmp_path / "x.safetensors", data)) == "pickle-legacy"


def test_legacy_tar_is_pickle_legacy() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        payload = pickle.dumps({"a": 1}, protocol=2)
        info = tarfile.TarInfo("pickle")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    assert detect_format(buf.getvalue()) == "pickle-legacy"


def test_safetensors_detected_regardless_of_name(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    safetensors.torch.save_file({"a": torch.ones(3)}, str(path))
    assert detect_format(path) == "safetensors"


@pytest.mark.parametrize("protocol", range(6))
def test_raw_pickles_of_every_protocol(protocol: int) -> None:
    assert detect_format(pickle.dumps({"a": [1, "x"]}, protocol=protocol)) == "pickle"


def test_pickle_named_safetensors_is_pickle(tmp_path: Path) -> None:
    path = fx.write(tmp_path / "model.safetensors", fx.reduce_call("posix", "system", "true"))
    assert detect_format(path) == "pickle"


@pytest.mark.parametrize("data", [b"", b"hello world, not a checkpoint", b"\x00" * 1024, b'{"a": 1}'])
def test_unknown_content(data: bytes) -> None:
    assert detect_format(data) == "unknown"


def test_safetensors_header_that_is_not_json_is_not_safetensors() -> None:
    assert detect_format(b"\x05\x00\x00\x00\x00\x00\x00\x00{abcd") == "unknown"


@pytest.mark.parametrize(
    ("detected", "expected"),
    [
        ("safetensors", "safetensors"),
        ("pickle-zip", "pickle"),
        ("pickle-legacy", "pickle"),
        ("pickle", "pickle"),
        ("unknown", None),
    ],
)
def test_policy_format(detected: str, expected: str | None) -> None:
    assert policy_format(detected) == expected


def test_check_format_allowed_accepts_allowed() -> None:
    check_format_allowed("pickle-zip", ["safetensors", "pickle"])
    check_format_allowed("safetensors", ("safetensors",))


def test_check_format_allowed_refuses_pickle_under_safetensors_only() -> None:
    with pytest.raises(FormatNotAllowed) as err:
        check_format_allowed("pickle-zip", ["safetensors"])
    assert err.value.code == "format-not-allowed"
    assert "'pickle'" in str(err.value) and "safetensors" in str(err.value)


def test_check_format_allowed_refuses_unknown_always() -> None:
    with pytest.raises(FormatNotAllowed) as err:
        check_format_allowed("unknown", ["safetensors", "pickle"])
    assert err.value.code == "format-not-allowed"
