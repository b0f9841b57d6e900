"""Generators for checkpoint fixtures: benign torch files and hand-written hostile pickles/zips.

Nothing here ever unpickles a payload. Hostile pickles are written opcode by
opcode; their command is ``touch <canary>`` so a test can prove nothing ran.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

# -- opcode helpers -----------------------------------------------------------------------------


def ustr(s: str) -> bytes:
    """BINUNICODE (protocol 2 style) push of a str."""
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def sstr(s: str) -> bytes:
    """SHORT_BINUNICODE push (protocol 4)."""
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def reduce_call(module: str, name: str, *args: str, protocol: int = 2) -> bytes:
    """PROTO p, GLOBAL module name, (args...), REDUCE, STOP."""
    body = glob(module, name) + b"(" + b"".join(ustr(a) for a in args) + b"tR."
    return b"\x80" + bytes([protocol]) + body


def stack_global_call(module: str, name: str, arg: str) -> bytes:
    """Protocol 4: STACK_GLOBAL via MEMOIZE'd SHORT_BINUNICODE operands, inside one FRAME."""
    body = sstr(module) + b"\x94" + sstr(name) + b"\x94" + b"\x93\x94" + sstr(arg) + b"\x94\x85\x94R\x94."
    return b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body


def inst_call(module: str, name: str, arg: str) -> bytes:
    """Protocol 0 INST."""
    return b"(S'" + arg.encode() + b"'\ni" + module.encode() + b"\n" + name.encode() + b"\n."


def benign_pickle() -> bytes:
    return pickle.dumps({"a": [1, 2.0, "x"], "b": (None, True)}, protocol=2)


def memo_confusion(arg: str) -> bytes:
    """MEMOIZE stores at len(memo), overwriting explicit BINPUT indices.

    Final real memo: {1: 'posix', 2: 'system'}. A scanner that numbers MEMOIZE
    as max(index)+1 ends with {1: 'collections', 2: 'OrderedDict', 3: 'system'}
    and resolves ``BINGET 1; BINGET 2; STACK_GLOBAL`` to collections.OrderedDict.
    """
    ops = (
        sstr("collections")
        + b"q\x01"  # BINPUT 1          -> {1: collections}
        + sstr("posix")
        + b"\x94"  # MEMOIZE at len=1 -> {1: posix}
        + sstr("OrderedDict")
        + b"q\x02"  # BINPUT 2   -> {1: posix, 2: OrderedDict}
        + sstr("system")
        + b"\x94"  # MEMOIZE at len=2 -> {1: posix, 2: system}
        + b"0000"  # POP x4
        + b"h\x01h\x02\x93"  # BINGET 1, BINGET 2, STACK_GLOBAL
        + sstr(arg)
        + b"\x85R."
    )
    return b"\x80\x04" + ops


def computed_stack_global(arg: str) -> bytes:
    """STACK_GLOBAL whose module operand is the result of a call, not a constant."""
    module = glob("_codecs", "encode") + ustr("posix") + ustr("latin1") + b"\x86R"
    return b"\x80\x04" + module + sstr("system") + b"\x93" + sstr(arg) + b"\x85R."


def build_setattr(arg: str) -> bytes:
    """OrderedDict(), BUILD (None, {'__setstate__': posix.system}), BUILD 'cmd' -> system('cmd')."""
    od = glob("collections", "OrderedDict") + b")R"
    slot = b"N}" + ustr("__setstate__") + glob("posix", "system") + b"s\x86b"
    return b"\x80\x02" + od + slot + ustr(arg) + b"b."


def build_setattr_allowed_only() -> bytes:
    """The same BUILD trick with only allowlisted globals: still refused (dunder set)."""
    od = glob("collections", "OrderedDict") + b")R"
    slot = b"N}" + ustr("__setstate__") + glob("builtins", "set") + b"s\x86b"
    return b"\x80\x02" + od + slot + b"]b."


def billion_laughs(levels: int = 9, fan: int = 10) -> bytes:
    out = b"\x80\x02]q\x00"  # EMPTY_LIST, BINPUT 0
    for i in range(levels):
        out += b"(" + (b"h" + bytes([i])) * fan + b"lq" + bytes([i + 1])
    return out + b"."


# -- zip writer with knobs for every structural lie ---------------------------------------------


@dataclass
class Member:
    name: str
    data: bytes
    method: int = zipfile.ZIP_STORED
    flags: int = 0
    local_name: str | None = None  # name in the local header when it differs
    crc: int | None = None  # CRC recorded in both headers (None: correct)
    declared_size: int | None = None  # uncompressed size recorded (None: correct)
    in_central: bool = True  # False: a hidden member (local header only)


@dataclass
class ZipSpec:
    members: list[Member] = field(default_factory=list)
    prefix: bytes = b""


def write_zip(spec: ZipSpec) -> bytes:
    out = io.BytesIO()
    out.write(spec.prefix)
    central = []
    for m in spec.members:
        payload = m.data
        if m.method == zipfile.ZIP_DEFLATED:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            payload = c.compress(m.data) + c.flush()
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        usize = len(m.data) if m.declared_size is None else m.declared_size
        offset = out.tell() - len(spec.prefix)
        lname = (m.local_name if m.local_name is not None else m.name).encode()
        out.write(
            struct.pack(
                "<4s5H3L2H",
                b"PK\x03\x04",
                20,
                m.flags,
                m.method,
                0,
                0x21,
                crc,
                len(payload),
                usize,
                len(lname),
                0,
            )
        )
        out.write(lname)
        out.write(payload)
        if m.in_central:
            central.append((m, crc, len(payload), usize, offset))
    cd_start = out.tell() - len(spec.prefix)
    for m, crc, csize, usize, offset in central:
        name = m.name.encode()
        out.write(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                m.flags,
                m.method,
                0,
                0x21,
                crc,
                csize,
                usize,
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
        )
        out.write(name)
    cd_size = out.tell() - len(spec.prefix) - cd_start
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), cd_size, cd_start, 0))
    return out.getvalue()


def torch_members(data: bytes) -> list[Member]:
    """The members of a torch.save zip, ready to be re-written with write_zip."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [Member(i.filename, z.read(i.filename)) for i in z.infolist()]


def torch_zip_bytes(obj: object, **kwargs: object) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)  # type: ignore[arg-type]
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
