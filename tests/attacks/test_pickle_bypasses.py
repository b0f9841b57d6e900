"""Hostile checkpoints: every known pickle-scanner bypass class must be refused.

Each payload runs ``touch <canary>`` if anything ever executed it; every test
also asserts the canary was never created. Nothing here unpickles a payload
except ``_real_unpickler_globals``, which overrides ``find_class`` to record
the requested name and return an inert stub (nothing is imported or run).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from securehub.errors import UnsafePickle
from securehub.verify.formats import detect_format
from securehub.verify.pickle.scan import ScanLimits, ScanResult, check, scan_bytes, scan_file
from tests import _pickle_fixtures as fx


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "CANARY"


def _scan(tmp_path: Path, data: bytes, name: str = "ckpt.pt") -> ScanResult:
    return scan_file(fx.write(tmp_path / name, data))


def _assert_refused(result: ScanResult, canary: Path, global_name: str | None = None, kind: str | None = None) -> None:
    assert not result.clean
    if global_name is not None:
        assert global_name in result.globals, result.findings
    if kind is not None:
        assert kind in {f.kind for f in result.findings}, result.findings
    assert not canary.exists()


def _real_unpickler_globals(data: bytes) -> list[tuple[str, str]]:
    """Ground truth: which globals CPython's unpickler asks for (inert stubs, nothing imported)."""
    seen: list[tuple[str, str]] = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            seen.append((module, name))
            return lambda *a, **k: None

    Recorder(io.BytesIO(data)).load()
    return seen


# -- __reduce__ to code execution ---------------------------------------------------------------------

GADGETS = [
    # direct command execution
    ("posix", "system"),
    ("os", "system"),
    ("nt", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    # universal resolvers
    ("pkgutil", "resolve_name"),
    ("importlib", "import_module"),
    ("pydoc", "locate"),
    # code-object builders
    ("types", "CodeType"),
    ("types", "FunctionType"),
    ("marshal", "loads"),
    # nested loaders
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("torch", "load"),
    ("numpy", "load"),
    # rare stdlib / third-party gadgets
    ("cProfile", "run"),
    ("timeit", "timeit"),
    ("pty", "spawn"),
    ("ctypes", "CDLL"),
    ("torch.utils.collect_env", "run"),
    ("numpy.f2py", "compile"),
    ("pandas", "read_csv"),
    ("runpy", "run_path"),
    ("code", "InteractiveInterpreter"),
    ("webbrowser", "open"),
    # submodule of a blocked module (allowlist is exact-match)
    ("os.path", "join"),
    ("torch.serialization", "load"),
    ("torch._utils", "_rebuild_tensor_v2_not"),
]


@pytest.mark.parametrize(("module", "name"), GADGETS, ids=[f"{m}.{n}" for m, n in GADGETS])
def test_reduce_gadget_global_is_refused(tmp_path: Path, canary: Path, module: str, name: str) -> None:
    result = _scan(tmp_path, fx.reduce_call(module, name, f"touch {canary}"))
    _assert_refused(result, canary, f"{module}.{name}", "global")


def test_reduce_os_system_via_real_pickler(tmp_path: Path, canary: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {canary}",))

    for protocol in range(6):
        result = _scan(tmp_path, pickle.dumps({"w": Payload()}, protocol=protocol))
        _assert_refused(result, canary, f"{os.system.__module__}.system")


def test_getattr_chain_is_refused(tmp_path: Path, canary: Path) -> None:
    # getattr(__import__('os'), 'system')('touch canary') spelled in opcodes.
    data = (
        b"\x80\x02"
        + fx.glob("builtins", "getattr")
        + b"("
        + fx.glob("builtins", "__import__")
        + b"("
        + fx.ustr("os")
        + b"tR"
        + fx.ustr("system")
        + b"tR("
        + fx.ustr(f"touch {canary}")
        + b"tR."
    )
    result = _scan(tmp_path, data)
    _assert_refused(result, canary, "builtins.getattr")
    assert "builtins.__import__" in result.globals


def test_python2_alias_of_eval_is_refused(tmp_path: Path, canary: Path) -> None:
    result = _scan(tmp_path, fx.reduce_call("__builtin__", "eval", "1"))
    _assert_refused(result, canary, "builtins.eval")


def test_copyreg_reconstructor_is_refused(tmp_path: Path, canary: Path) -> None:
    result = _scan(tmp_path, fx.reduce_call("copy_reg", "_reconstructor", "x"))
    _assert_refused(result, canary, "copyreg._reconstructor")


def test_stack_global_protocol4_is_refused(tmp_path: Path, canary: Path) -> None:
    result = _scan(tmp_path, fx.stack_global_call("posix", "system", f"touch {canary}"))
    _assert_refused(result, canary, "posix.system")


def test_inst_protocol0_is_refused(tmp_path: Path, canary: Path) -> None:
    result = _scan(tmp_path, fx.inst_call("posix", "system", f"touch {canary}"))
    _assert_refused(result, canary, "posix.system")


def test_ext_registry_global_is_refused(tmp_path: Path, canary: Path) -> None:
    data = b"\x80\x02\x82\x01" + fx.ustr("x") + b"\x85R."
    _assert_refused(_scan(tmp_path, data), canary, kind="unresolvable-global")


# -- BUILD / setattr ----------------------------------------------------------------------------------


def test_build_setattr_setstate_payload_is_refused(tmp_path: Path, canary: Path) -> None:
    result = _scan(tmp_path, fx.build_setattr(f"touch {canary}"))
    _assert_refused(result, canary, "posix.system", "build")
    assert any("__setstate__" in f.detail for f in result.findings if f.kind == "build")


def test_build_setattr_with_only_allowed_globals_is_refused(tmp_path: Path, canary: Path) -> None:
    result = _scan(tmp_path, fx.build_setattr_allowed_only())
    _assert_refused(result, canary, kind="build")
    assert result.globals == ()


def test_append_to_a_non_list_is_refused(tmp_path: Path, canary: Path) -> None:
    # pickle calls obj.append(...) on whatever is below; torch allows lists only.
    data = b"\x80\x02" + fx.glob("collections", "OrderedDict") + b")R" + fx.ustr("x") + b"a."
    _assert_refused(_scan(tmp_path, data), canary, kind="call")


# -- scanner/loader differentials --------------------------------------------------------------------


def test_memo_confusion_memoize_vs_binput(tmp_path: Path, canary: Path) -> None:
    data = fx.memo_confusion(f"touch {canary}")
    # Ground truth from CPython's unpickler (inert find_class): posix.system.
    assert _real_unpickler_globals(data) == [("posix", "system")]
    result = _scan(tmp_path, data)
    _assert_refused(result, canary, "posix.system")
    assert result.globals == ("posix.system",)


def test_computed_stack_global_operands(tmp_path: Path, canary: Path) -> None:
    result = _scan(tmp_path, fx.computed_stack_global(f"touch {canary}"))
    _assert_refused(result, canary, kind="unresolvable-global")
    assert any("unresolvable STACK_GLOBAL" in f.detail for f in result.findings)


def test_payload_after_first_stop_raw(tmp_path: Path, canary: Path) -> None:
    data = fx.benign_pickle() + fx.reduce_call("posix", "system", f"touch {canary}")
    result = _scan(tmp_path, data)
    _assert_refused(result, canary, "posix.system", "data-after-stop")


def test_payload_after_first_stop_in_zip_member(tmp_path: Path, canary: Path) -> None:
    members = fx.torch_members(fx.torch_zip_bytes({"a": torch.ones(2)}))
    members[0].data += fx.reduce_call("posix", "system", f"touch {canary}")
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(members)))
    _assert_refused(result, canary, "posix.system", "data-after-stop")


def test_trailing_garbage_after_stop_in_zip_member(tmp_path: Path, canary: Path) -> None:
    members = fx.torch_members(fx.torch_zip_bytes({"a": torch.ones(2)}))
    members[0].data += b"\xff\xfe garbage"
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(members)))
    _assert_refused(result, canary, kind="data-after-stop")


def test_payload_after_legacy_pickles(tmp_path: Path, canary: Path) -> None:
    buf = io.BytesIO()
    torch.save({"a": torch.ones(2)}, buf, _use_new_zipfile_serialization=False)
    result = _scan(tmp_path, buf.getvalue() + fx.reduce_call("posix", "system", f"touch {canary}"))
    assert result.format == "pickle-legacy"
    _assert_refused(result, canary, "posix.system", "data-after-stop")


def test_payload_in_legacy_main_pickle(tmp_path: Path, canary: Path) -> None:
    legacy = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    legacy += pickle.dumps({}, protocol=2) + fx.reduce_call("posix", "system", f"touch {canary}")
    result = _scan(tmp_path, legacy)
    assert result.format == "pickle-legacy"
    _assert_refused(result, canary, "posix.system")


def test_frame_length_beyond_data(tmp_path: Path, canary: Path) -> None:
    data = b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + fx.glob("posix", "system") + b"."
    _assert_refused(_scan(tmp_path, data), canary, kind="frame")


def test_frame_shorter_than_its_opcodes(tmp_path: Path, canary: Path) -> None:
    body = fx.sstr("a" * 20) + b"."
    data = b"\x80\x04\x95" + struct.pack("<Q", 5) + body
    _assert_refused(_scan(tmp_path, data), canary, kind="frame")


def test_frame_inside_frame(tmp_path: Path, canary: Path) -> None:
    inner = b"\x95" + struct.pack("<Q", 2) + b"N."
    data = b"\x80\x04\x95" + struct.pack("<Q", len(inner)) + inner
    _assert_refused(_scan(tmp_path, data), canary, kind="frame")


def test_protocol_above_5(tmp_path: Path, canary: Path) -> None:
    _assert_refused(_scan(tmp_path, b"\x80\x06N."), canary, kind="protocol")


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_pickle(tmp_path: Path, canary: Path, cut: int) -> None:
    data = fx.reduce_call("collections", "OrderedDict")
    result = _scan(tmp_path, data[: len(data) - cut])
    _assert_refused(result, canary, kind="malformed")


def test_unknown_opcode(tmp_path: Path, canary: Path) -> None:
    _assert_refused(_scan(tmp_path, b"\x80\x02N\xff."), canary, kind="malformed")


def test_memo_get_of_missing_key(tmp_path: Path, canary: Path) -> None:
    _assert_refused(_scan(tmp_path, b"\x80\x02h\x07."), canary, kind="malformed")


# -- zip container lies ---------------------------------------------------------------------------------


def _torch_zip_members() -> list[fx.Member]:
    return fx.torch_members(fx.torch_zip_bytes({"a": torch.ones(2)}))


def test_rewritten_clean_zip_is_clean(tmp_path: Path) -> None:
    # Control for the zip tests below: our writer alone produces no findings.
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(_torch_zip_members())))
    assert result.findings == ()


def test_zip_hidden_member_not_in_central_directory(tmp_path: Path, canary: Path) -> None:
    members = _torch_zip_members()
    members.insert(
        1,
        fx.Member("archive/data.pkl", fx.reduce_call("posix", "system", f"touch {canary}"), in_central=False),
    )
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(members)))
    _assert_refused(result, canary, kind="zip")
    assert any("hidden member" in f.detail for f in result.findings)


def test_zip_crc_mismatch(tmp_path: Path, canary: Path) -> None:
    members = _torch_zip_members()
    members[0].crc = 0x12345678
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(members)))
    _assert_refused(result, canary, kind="zip")
    assert any("CRC mismatch" in f.detail for f in result.findings)


def test_zip_member_with_encryption_flag(tmp_path: Path, canary: Path) -> None:
    members = _torch_zip_members()
    members[0].flags = 0x1
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(members)))
    _assert_refused(result, canary, kind="zip")
    assert any("encryption" in f.detail for f in result.findings)


def test_zip_name_mismatch_local_vs_central(tmp_path: Path, canary: Path) -> None:
    members = _torch_zip_members()
    members[0].local_name = "archive/evil.pkl"
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(members)))
    _assert_refused(result, canary, kind="zip")
    assert any("local header names" in f.detail for f in result.findings)


def test_zip_duplicate_member_names(tmp_path: Path, canary: Path) -> None:
    members = _torch_zip_members()
    members.append(fx.Member("archive/data.pkl", fx.reduce_call("posix", "system", f"touch {canary}")))
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(members)))
    _assert_refused(result, canary, "posix.system", "zip")
    assert any("duplicate" in f.detail for f in result.findings)


def test_zip_unusual_compression_method(tmp_path: Path, canary: Path) -> None:
    members = _torch_zip_members()
    members[0].method = 12  # bzip2: miniz cannot read it, zipfile can
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(members)))
    _assert_refused(result, canary, kind="zip")


def test_zip_clean_data_pkl_but_malicious_other_pkl(tmp_path: Path, canary: Path) -> None:
    members = _torch_zip_members()
    members.append(fx.Member("archive/constants.pkl", fx.reduce_call("posix", "system", f"touch {canary}")))
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(members)))
    _assert_refused(result, canary, "posix.system")
    assert any(f.member == "archive/constants.pkl" for f in result.findings)


def test_zip_with_prepended_data(tmp_path: Path, canary: Path) -> None:
    data = fx.write_zip(fx.ZipSpec(_torch_zip_members(), prefix=b"PK\x03\x04junk"))
    _assert_refused(_scan(tmp_path, data), canary, kind="zip")


def test_zip_without_data_pkl(tmp_path: Path, canary: Path) -> None:
    data = fx.write_zip(fx.ZipSpec([fx.Member("archive/other", b"x")]))
    _assert_refused(_scan(tmp_path, data), canary, kind="zip")


def test_decompression_bomb_ratio(tmp_path: Path, canary: Path) -> None:
    members = _torch_zip_members()
    members.append(fx.Member("archive/data/9", b"\0" * (8 << 20), method=zipfile.ZIP_DEFLATED))
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(members)))
    _assert_refused(result, canary, kind="zip")
    assert any("decompression bomb" in f.detail for f in result.findings)


def test_decompression_bomb_total_size_cap(tmp_path: Path, canary: Path) -> None:
    members = _torch_zip_members()
    members.append(fx.Member("archive/data/9", os.urandom(1 << 16), method=zipfile.ZIP_DEFLATED))
    path = fx.write(tmp_path / "b.pt", fx.write_zip(fx.ZipSpec(members)))
    result = scan_file(path, limits=ScanLimits(max_total_uncompressed_bytes=1 << 15))
    _assert_refused(result, canary, kind="zip")


def test_deflated_member_inflating_beyond_declared_size(tmp_path: Path, canary: Path) -> None:
    members = _torch_zip_members()
    members.append(fx.Member("archive/data/9", b"\0" * 100_000, method=zipfile.ZIP_DEFLATED, declared_size=10))
    result = _scan(tmp_path, fx.write_zip(fx.ZipSpec(members)))
    _assert_refused(result, canary, kind="zip")
    assert any("beyond its declared size" in f.detail for f in result.findings)


# -- format confusion --------------------------------------------------------------------------------------


def test_extension_spoofing_pickle_named_safetensors(tmp_path: Path, canary: Path) -> None:
    path = fx.write(tmp_path / "model.safetensors", fx.reduce_call("posix", "system", f"touch {canary}"))
    assert detect_format(path) == "pickle"
    result = scan_file(path)
    assert result.format == "pickle"
    _assert_refused(result, canary, "posix.system")


def test_polyglot_pickle_with_appended_clean_zip(tmp_path: Path, canary: Path) -> None:
    # zipfile.is_zipfile() says yes and the appended data.pkl is clean, but
    # torch (no PK\x03\x04 at offset 0) unpickles the leading payload.
    clean_zip = fx.torch_zip_bytes({"a": torch.ones(2)})
    data = fx.reduce_call("posix", "system", f"touch {canary}") + clean_zip
    path = fx.write(tmp_path / "poly.pt", data)
    assert zipfile.is_zipfile(path)
    assert detect_format(path) == "pickle"
    result = scan_file(path)
    _assert_refused(result, canary, "posix.system", "polyglot")


def test_billion_laughs_dup_get_expansion(tmp_path: Path, canary: Path) -> None:
    result = _scan(tmp_path, fx.billion_laughs())
    _assert_refused(result, canary, kind="limit")
    assert any("billion-laughs" in f.detail for f in result.findings)


def test_billion_laughs_via_dup(tmp_path: Path, canary: Path) -> None:
    data = b"\x80\x02]" + b"2(" * 0 + b"".join([b"2\x86"] * 40) + b"."  # DUP + TUPLE2, 40 levels: 2**40 nodes
    _assert_refused(_scan(tmp_path, data), canary, kind="limit")


def test_self_referencing_container(tmp_path: Path, canary: Path) -> None:
    data = b"\x80\x02]q\x00h\x00a."  # l = []; l.append(l)
    _assert_refused(_scan(tmp_path, data), canary, kind="limit")


def test_check_raises_unsafe_pickle_with_code(tmp_path: Path, canary: Path) -> None:
    path = fx.write(tmp_path / "x.pt", fx.memo_confusion(f"touch {canary}"))
    with pytest.raises(UnsafePickle) as err:
        check(path)
    assert err.value.code == "unsafe-pickle"
    assert "posix.system" in str(err.value)
    assert not canary.exists()


def test_scan_bytes_matches_scan_file_for_hostile_input(tmp_path: Path, canary: Path) -> None:
    data = fx.stack_global_call("posix", "system", f"touch {canary}")
    assert scan_bytes(data, name="ckpt.pt").findings == _scan(tmp_path, data).findings


def test_legacy_tar_with_malicious_pickle_member(tmp_path: Path, canary: Path) -> None:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, payload in (
            ("sys_info", pickle.dumps({"little_endian": True}, protocol=2)),
            ("pickle", fx.reduce_call("posix", "system", f"touch {canary}")),
            ("storages", pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2)),
            ("tensors", pickle.dumps(0, protocol=2)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    result = _scan(tmp_path, buf.getvalue())
    assert result.format == "pickle-legacy"
    _assert_refused(result, canary, "posix.system")
    assert [f.member for f in result.findings] == ["pickle"]
