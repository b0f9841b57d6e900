"""Static scanner for pickle-based checkpoints (torch.save zip, legacy, raw pickle).

What is guaranteed: :func:`scan_file` and :func:`scan_bytes` never import,
resolve or call anything named in the file and never call ``pickle.load``.
Every pickle stream the file holds -- every ``*.pkl`` zip member, every
pickle in a legacy stream, the pickles after the first ``STOP`` -- is walked
opcode by opcode (:mod:`securehub.verify.pickle.ops`) with a symbolic stack
and memo, and every global is checked against the set torch 2.13's
``weights_only`` unpickler accepts. Anything the scanner cannot prove benign
is a :class:`Finding`: unknown globals, unresolvable ``STACK_GLOBAL``,
truncation, unknown opcodes, frame tricks, trailing data, zip structure that
differs between the central directory and the local headers (hidden members,
name/flag/CRC mismatches, encryption, unusual compression), decompression and
expansion bombs.

What the caller must still do: load a clean checkpoint with
``torch.load(weights_only=True)`` (the scan is a second, independent line of
defence, not a licence for ``weights_only=False``), and load by the format
*detected here*, never by file extension.

Exceptions: :func:`check` raises :class:`securehub.errors.UnsafePickle`.
"""

from __future__ import annotations

import io
import mmap
import struct
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from securehub.errors import UnsafePickle
from securehub.verify import formats
from securehub.verify.pickle.ops import (
    LEGACY_MAGIC_NUMBER,
    PickleLimits,
    RawFinding,
    Value,
    walk_pickle,
)
from securehub.verify.safetensors_check import MalformedSafetensors, check_safetensors

__all__ = ["Finding", "PickleLimits", "ScanLimits", "ScanResult", "check", "scan_bytes", "scan_file"]

_GiB: Final = 1024**3


@dataclass(frozen=True)
class ScanLimits:
    """Resource caps. Exceeding any of them is a finding (kind ``limit`` or ``zip``)."""

    pickle: PickleLimits = field(default_factory=PickleLimits)
    max_pickle_bytes: int = 1 * _GiB
    max_total_uncompressed_bytes: int = 16 * _GiB
    max_compression_ratio: int = 100
    max_members: int = 100_000


@dataclass(frozen=True)
class Finding:
    """One problem. ``member`` is the container member ("" for a bare stream).

    ``kind`` is one of: ``global`` (detail: the dotted global, e.g.
    ``os.system``), ``unresolvable-global``, ``call``, ``build``,
    ``malformed``, ``protocol``, ``frame``, ``data-after-stop``, ``limit``,
    ``zip``, ``tar``, ``legacy``, ``polyglot``, ``format``, ``safetensors``.
    ``offset`` is a byte offset within the member (or file).
    """

    member: str
    offset: int
    kind: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.member}@{self.offset}" if self.member else f"@{self.offset}"
        return f"{where}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class ScanResult:
    """Outcome of a scan. ``clean`` iff there are no findings."""

    name: str
    format: str
    findings: tuple[Finding, ...]
    members_scanned: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.findings

    @property
    def globals(self) -> tuple[str, ...]:
        """The refused globals, in order of first appearance."""
        seen: dict[str, None] = {}
        for f in self.findings:
            if f.kind == "global":
                seen.setdefault(f.detail.split(" ", 1)[0], None)
        return tuple(seen)

    def lines(self) -> list[str]:
        """Human-readable lines, one per finding (or one ``ok`` line)."""
        if self.clean:
            scanned = f" ({len(self.members_scanned)} pickle stream(s))" if self.members_scanned else ""
            return [f"{self.name}: ok [{self.format}]{scanned}"]
        return [f"{self.name}: {f} [{self.format}]" for f in self.findings]

    def __str__(self) -> str:
        return "\n".join(self.lines())


# --------------------------------------------------------------------------------------------------
# public entry points


def scan_file(path: str | Path, *, limits: ScanLimits | None = None) -> ScanResult:
    """Scan a checkpoint file on disk (memory-mapped; large files are not read into memory)."""
    p = Path(path)
    with _open_buffer(p) as buf:
        return _scan(buf, p.name, limits or ScanLimits())


def scan_bytes(data: bytes, *, name: str = "<bytes>", limits: ScanLimits | None = None) -> ScanResult:
    """Scan a checkpoint held in memory."""
    return _scan(data, name, limits or ScanLimits())


def check(path: str | Path, *, limits: ScanLimits | None = None, name: str | None = None) -> ScanResult:
    """Scan ``path`` and raise :class:`UnsafePickle` unless it is clean. Returns the clean result.

    ``name``: what messages call the file (the artifact's URL), instead of the
    file name on disk -- which for a download is a meaningless temp file.
    """
    p = Path(path)
    with _open_buffer(p) as buf:
        result = _scan(buf, name if name is not None else p.name, limits or ScanLimits())
    if result.clean:
        return result
    raise UnsafePickle(_unsafe_message(result))


#: How a finding names a torch.package archive (silero-models' TTS models ship as one).
_TORCH_PACKAGE = "a torch.package archive"


def _unsafe_message(result: ScanResult) -> str:
    first = result.findings[0]
    if first.kind == "zip" and first.detail.startswith(_TORCH_PACKAGE):
        return (
            f"checkpoint {result.name!r} [{result.format}] is {first.detail}: it ships Python code and pickles "
            "arbitrary objects for torch.package.PackageImporter, and securehub downloads weights only, never "
            "code (expected safetensors or a pickle torch.load(weights_only=True) accepts). Do not load it; use a "
            "repository that commits the archive to its tree (the sandbox then opens it as repository code, "
            "pinned with the tree, and the export strategy rebuilds the model), or ask the publisher for a "
            "safetensors file and the model's code."
        )
    globs = result.globals
    what = (
        f"globals not allowed by torch weights_only: {', '.join(globs[:5])}"
        + (f" (+{len(globs) - 5} more)" if len(globs) > 5 else "")
        if globs
        else f"{first.kind}: {first.detail}"
    )
    member = next((f.member for f in result.findings if f.kind == "global"), first.member)
    where = f" in member {member!r}" if member else ""
    return (
        f"checkpoint {result.name!r} [{result.format}] is unsafe{where}: {what}; "
        f"{len(result.findings)} finding(s) in total. Expected a pickle that uses only tensors, "
        "containers and the globals torch.load(weights_only=True) accepts. Do not load it; ask the "
        "publisher for a safetensors file, or run `securehub scan FILE` on it for the full list."
    )


# --------------------------------------------------------------------------------------------------
# dispatch

_Buf = bytes | mmap.mmap


@contextmanager
def _open_buffer(path: Path) -> Iterator[_Buf]:
    with path.open("rb") as fh:
        size = path.stat().st_size
        if size == 0:
            yield b""
            return
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield mm
        finally:
            mm.close()


class _Collector:
    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.members: list[str] = []

    def add(self, member: str, offset: int, kind: str, detail: str) -> None:
        self.findings.append(Finding(member, offset, kind, detail))

    def add_raw(self, member: str, raws: tuple[RawFinding, ...], base: int = 0) -> None:
        for r in raws:
            self.add(member, r.offset - base, r.kind, r.detail)


def _scan(buf: _Buf, name: str, limits: ScanLimits) -> ScanResult:
    out = _Collector()
    kind = formats.sniff(buf)
    if kind == "zip":
        _scan_zip(buf, limits, out)
    elif kind == "tar":
        _scan_tar(buf, limits, out)
    elif kind == "safetensors":
        _scan_safetensors(buf, out)
    elif kind == "empty":
        out.add("", 0, "format", "empty file: not a checkpoint")
    else:
        if kind == "unknown":
            out.add("", 0, "format", "not a recognised checkpoint format; scanned as a pickle stream")
        _scan_stream(buf, limits, out)
        _check_appended_zip(buf, out)
    return ScanResult(name, formats.FORMAT_OF_SNIFF[kind], tuple(out.findings), tuple(out.members))


def _is_int(v: Value | None, expected: int) -> bool:
    return v is not None and v.kind == "int" and v.text == str(expected)


# --------------------------------------------------------------------------------------------------
# pickle streams


def _scan_stream(buf: _Buf, limits: ScanLimits, out: _Collector, member: str = "") -> None:
    """A raw pickle file or a legacy (pre-1.6) torch stream of several pickles.

    The first pickle is what ``torch.load``/``pickle.load`` execute; legacy
    files hold five pickles followed by raw storage bytes. Anything after the
    last pickle a loader reads is scanned as further pickles and reported as
    ``data-after-stop``.
    """
    data = buf
    out.members.append(member or "<stream>")
    budget = limits.pickle.max_opcodes
    first = walk_pickle(data, 0, limits.pickle, budget)
    out.add_raw(member, first.findings)
    if first.end is None:
        return
    budget -= first.opcodes
    if _is_int(first.root, LEGACY_MAGIC_NUMBER):
        _scan_legacy_rest(data, first.end, limits, out, budget=budget, member=member)
        return
    _scan_trailing(data, first.end, limits, out, budget=budget, member=member)


def _scan_trailing(data: _Buf, pos: int, limits: ScanLimits, out: _Collector, *, budget: int, member: str) -> None:
    """Everything after the STOP a loader stops at: report it, and scan it as pickles."""
    if pos >= len(data):
        return
    out.add(
        member,
        pos,
        "data-after-stop",
        f"{len(data) - pos} byte(s) after the pickle's STOP; a loader that reads on would unpickle them",
    )
    while pos < len(data) and budget > 0:
        nxt = walk_pickle(data, pos, limits.pickle, budget)
        # Structural problems of trailing garbage are already covered by the
        # data-after-stop finding; globals it reaches are reported in full.
        for r in nxt.findings:
            if r.kind not in ("malformed", "protocol", "frame"):
                out.add(member, r.offset, r.kind, r.detail)
        if nxt.end is None:
            return
        budget -= nxt.opcodes
        pos = nxt.end


_STORAGE_ELEMENT_SIZE: Final[dict[str, int]] = {
    "torch.DoubleStorage": 8,
    "torch.FloatStorage": 4,
    "torch.HalfStorage": 2,
    "torch.BFloat16Storage": 2,
    "torch.LongStorage": 8,
    "torch.IntStorage": 4,
    "torch.ShortStorage": 2,
    "torch.CharStorage": 1,
    "torch.ByteStorage": 1,
    "torch.BoolStorage": 1,
    "torch.ComplexFloatStorage": 8,
    "torch.ComplexDoubleStorage": 16,
    "torch.QInt8Storage": 1,
    "torch.QUInt8Storage": 1,
    "torch.QInt32Storage": 4,
    "torch.QUInt4x2Storage": 1,
    "torch.QUInt2x4Storage": 1,
}


def _storage_sizes(pids: tuple[Value, ...]) -> dict[str, int] | str:
    """Root key -> element size, from legacy ids ``("storage", type, key, location, numel, view)``."""
    sizes: dict[str, int] = {}
    for pid in pids:
        kids = pid.children or []
        if pid.kind != "tuple" or len(kids) < 3 or kids[0].text != "storage":
            return "a persistent id is not a ('storage', type, key, ...) tuple"
        stype, key = kids[1], kids[2]
        if stype.kind != "global" or stype.text not in _STORAGE_ELEMENT_SIZE:
            return f"storage type {stype.text or stype.kind} is unknown"
        if key.kind != "str" or key.text is None:
            return "a storage key is not a string constant"
        sizes[key.text] = _STORAGE_ELEMENT_SIZE[stype.text]
    return sizes


def _scan_legacy_rest(data: _Buf, pos: int, limits: ScanLimits, out: _Collector, *, budget: int, member: str) -> None:
    # torch/serialization.py _legacy_load: magic, protocol version, sys_info,
    # the object, the storage keys -- five pickles -- then raw storages.
    names = ("protocol version", "sys_info", "main object", "storage keys")
    results = []
    for what in names:
        if pos >= len(data):
            out.add(member, pos, "legacy", f"legacy stream ends before its {what} pickle")
            return
        r = walk_pickle(data, pos, limits.pickle, budget)
        out.add_raw(member, r.findings)
        if r.end is None:
            return
        results.append(r)
        budget -= r.opcodes
        pos = r.end
    if not _is_int(results[0].root, 1001):
        out.add(member, 0, "legacy", "legacy stream's protocol version is not 1001")
    sizes = _storage_sizes(results[2].persistent_ids)
    if isinstance(sizes, str):
        out.add(member, 0, "legacy", f"cannot account for the raw storage data: {sizes}")
        return
    keys_root = results[3].root
    keys = keys_root.children if keys_root is not None and keys_root.kind == "list" else None
    if keys is None or any(k.kind != "str" or k.text not in sizes for k in keys):
        out.add(member, pos, "legacy", "storage keys pickle is not a list of keys the object references")
        return
    for k in keys:
        if pos + 8 > len(data):
            out.add(member, pos, "legacy", "truncated storage record")
            return
        (numel,) = struct.unpack_from("<q", data, pos)
        nbytes = numel * sizes[k.text or ""]
        if numel < 0 or pos + 8 + nbytes > len(data):
            out.add(
                member,
                pos,
                "legacy",
                f"storage {k.text!r} claims {numel} elements beyond the end of the file",
            )
            return
        pos += 8 + nbytes
    if pos != len(data):
        _scan_trailing(data, pos, limits, out, budget=budget, member=member)


def _check_appended_zip(buf: _Buf, out: _Collector) -> None:
    # Python's zipfile finds an archive appended to anything; torch reads a
    # file that does not start with PK\x03\x04 as a pickle. A scanner that
    # trusts zipfile.is_zipfile() scans the zip while torch runs the pickle.
    if _find_eocd(buf) >= 0:
        out.add("", 0, "polyglot", "a pickle stream that also contains a zip archive (zip/pickle polyglot)")


# --------------------------------------------------------------------------------------------------
# zip (torch.save since 1.6)

_LOCAL: Final = struct.Struct("<4s5H3L2H")
_CENTRAL: Final = struct.Struct("<4s6H3L5H2L")
_EOCD: Final = struct.Struct("<4s4H2LH")
_Z64_LOCATOR: Final = struct.Struct("<4sLQL")
_Z64_EOCD: Final = struct.Struct("<4sQ2H2L4Q")
_U16: Final = 0xFFFF
_U32: Final = 0xFFFFFFFF


@dataclass
class _Entry:
    name: bytes
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    offset: int
    data_start: int = -1

    @property
    def label(self) -> str:
        return self.name.decode("utf-8", "replace")


def _zip64_extra(extra: bytes, want: list[str]) -> dict[str, int] | None:
    p = 0
    while p + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, p)
        body = extra[p + 4 : p + 4 + size]
        if tag == 1:
            vals: dict[str, int] = {}
            q = 0
            for w in want:
                if q + 8 > len(body):
                    return None
                vals[w] = struct.unpack_from("<Q", body, q)[0]
                q += 8
            return vals
        p += 4 + size
    return None if want else {}


def _find_eocd(buf: _Buf) -> int:
    n = len(buf)
    end = n
    while True:
        pos = buf.rfind(b"PK\x05\x06", max(0, n - 22 - 65535), end)
        if pos < 0:
            return -1
        if pos + 22 <= n and pos + 22 + struct.unpack_from("<H", buf, pos + 20)[0] == n:
            return pos
        end = pos + 3


def _scan_zip(buf: _Buf, limits: ScanLimits, out: _Collector) -> None:
    entries = _read_central_directory(buf, limits, out)
    if entries is None:
        return
    _walk_local_headers(buf, entries, out)
    _check_members(buf, entries, limits, out)


def _read_central_directory(buf: _Buf, limits: ScanLimits, out: _Collector) -> list[_Entry] | None:
    n = len(buf)
    eocd = _find_eocd(buf)
    if eocd < 0:
        out.add("", 0, "zip", "no end-of-central-directory record at the end of the file")
        return None
    _, disk, cd_disk, ent_disk, ent_total, cd_size, cd_off, _ = _EOCD.unpack_from(buf, eocd)
    cd_end = eocd
    if eocd >= 20 and bytes(buf[eocd - 20 : eocd - 16]) == b"PK\x06\x07":
        _, _, z64_off, _ = _Z64_LOCATOR.unpack_from(buf, eocd - 20)
        if z64_off + _Z64_EOCD.size > eocd - 20 or bytes(buf[z64_off : z64_off + 4]) != b"PK\x06\x06":
            out.add("", eocd - 20, "zip", "zip64 locator points at no zip64 end record")
            return None
        rec = _Z64_EOCD.unpack_from(buf, z64_off)
        if z64_off + 12 + rec[1] != eocd - 20:
            out.add("", z64_off, "zip", "bytes between the zip64 end record and its locator")
        z = {"disk": rec[4], "cd_disk": rec[5], "ent_disk": rec[6], "ent_total": rec[7], "size": rec[8]}
        for label, classic, wide, sat in (
            ("entry count", ent_total, rec[7], _U16),
            ("central directory size", cd_size, rec[8], _U32),
            ("central directory offset", cd_off, rec[9], _U32),
        ):
            if classic not in (sat, wide):
                out.add("", eocd, "zip", f"zip64 and classic end records disagree on the {label}")
        disk, cd_disk, ent_disk, ent_total, cd_size, cd_off = (
            z["disk"],
            z["cd_disk"],
            z["ent_disk"],
            z["ent_total"],
            z["size"],
            rec[9],
        )
        cd_end = z64_off
    if disk or cd_disk or ent_disk != ent_total:
        out.add("", eocd, "zip", "multi-disk (spanned) zip archives are not accepted")
        return None
    if ent_total > limits.max_members:
        out.add("", eocd, "zip", f"{ent_total} members exceed the limit of {limits.max_members}")
        return None
    if cd_off + cd_size != cd_end:
        out.add(
            "",
            cd_end,
            "zip",
            f"central directory ({cd_off}+{cd_size}) does not end at the end record ({cd_end}): "
            "prepended or hidden data",
        )
        return None
    entries: list[_Entry] = []
    p = cd_off
    for _ in range(ent_total):
        if p + _CENTRAL.size > cd_end or bytes(buf[p : p + 4]) != b"PK\x01\x02":
            out.add("", p, "zip", "central directory entry missing or truncated")
            return None
        f = _CENTRAL.unpack_from(buf, p)
        flags, method, crc, csize, usize, nlen, xlen, clen, disk_start, offset = (
            f[3],
            f[4],
            f[7],
            f[8],
            f[9],
            f[10],
            f[11],
            f[12],
            f[13],
            f[16],
        )
        name = bytes(buf[p + 46 : p + 46 + nlen])
        extra = bytes(buf[p + 46 + nlen : p + 46 + nlen + xlen])
        want = [k for k, v in (("usize", usize), ("csize", csize), ("offset", offset)) if v == _U32]
        if want:
            z64 = _zip64_extra(extra, want)
            if z64 is None:
                out.add(name.decode("utf-8", "replace"), p, "zip", "zip64 sizes missing from the extra field")
                return None
            usize, csize, offset = z64.get("usize", usize), z64.get("csize", csize), z64.get("offset", offset)
        if disk_start:
            out.add(name.decode("utf-8", "replace"), p, "zip", "member on another disk")
        entries.append(_Entry(name, flags, method, crc, csize, usize, offset))
        p += 46 + nlen + xlen + clen
    if p != cd_end:
        out.add("", p, "zip", "central directory size does not match its entries")
    if n and not entries:
        out.add("", 0, "zip", "zip archive has no members")
    return entries


def _walk_local_headers(buf: _Buf, entries: list[_Entry], out: _Collector) -> None:
    """Every byte from 0 to the central directory must belong to a listed member."""
    seen: dict[bytes, int] = {}
    for e in entries:
        if e.name in seen:
            out.add(e.label, e.offset, "zip", "duplicate member name (loaders disagree on which copy wins)")
        seen[e.name] = seen.get(e.name, 0) + 1
        if e.flags & 0x41:
            out.add(e.label, e.offset, "zip", "member has the encryption flag set")
        if e.method not in (0, 8):
            out.add(e.label, e.offset, "zip", f"compression method {e.method} (only stored and deflated accepted)")
    cd_start = _cd_start(buf)
    ordered = sorted(entries, key=lambda e: e.offset)
    expected = 0
    for i, e in enumerate(ordered):
        if e.offset != expected:
            _report_gap(buf, expected, e.offset, e.label, out)
        p = e.offset
        if p + _LOCAL.size > len(buf) or bytes(buf[p : p + 4]) != b"PK\x03\x04":
            out.add(e.label, p, "zip", "central directory points at no local file header")
            return
        f = _LOCAL.unpack_from(buf, p)
        flags, method, crc, csize, usize, nlen, xlen = f[2], f[3], f[6], f[7], f[8], f[9], f[10]
        lname = bytes(buf[p + 30 : p + 30 + nlen])
        if lname != e.name:
            out.add(
                e.label,
                p,
                "zip",
                f"local header names the member {lname.decode('utf-8', 'replace')!r}, "
                "the central directory a different name",
            )
        if (flags ^ e.flags) & 0x49 or method != e.method:
            out.add(e.label, p, "zip", "local header flags or compression differ from the central directory")
        if not flags & 0x08:
            lextra = bytes(buf[p + 30 + nlen : p + 30 + nlen + xlen])
            want = [k for k, v in (("usize", usize), ("csize", csize)) if v == _U32]
            z64 = _zip64_extra(lextra, want) if want else {}
            if z64 is not None:
                usize, csize = z64.get("usize", usize), z64.get("csize", csize)
            if z64 is None or (crc, csize, usize) != (e.crc, e.csize, e.usize):
                out.add(e.label, p, "zip", "local header CRC/sizes differ from the central directory")
        e.data_start = p + 30 + nlen + xlen
        data_end = e.data_start + e.csize
        nxt = ordered[i + 1].offset if i + 1 < len(ordered) else cd_start
        if data_end > nxt:
            out.add(e.label, p, "zip", "member data overlaps the next member or the central directory")
            return
        expected = data_end
        if flags & 0x08:
            expected = _data_descriptor(buf, e, data_end, nxt, out)
    if expected != cd_start:
        _report_gap(buf, expected, cd_start, "", out)


def _cd_start(buf: _Buf) -> int:
    eocd = _find_eocd(buf)
    off: int = _EOCD.unpack_from(buf, eocd)[6]
    if eocd >= 20 and bytes(buf[eocd - 20 : eocd - 16]) == b"PK\x06\x07":
        z64_off = _Z64_LOCATOR.unpack_from(buf, eocd - 20)[2]
        off = _Z64_EOCD.unpack_from(buf, z64_off)[9]
    return off


def _data_descriptor(buf: _Buf, e: _Entry, pos: int, nxt: int, out: _Collector) -> int:
    length = nxt - pos
    has_sig = bytes(buf[pos : pos + 4]) == b"PK\x07\x08"
    layouts = {(True, 16): "<4sLLL", (True, 24): "<4sLQQ", (False, 12): "<LLL", (False, 20): "<LQQ"}
    fmt = layouts.get((has_sig, length))
    if fmt is None:
        out.add(e.label, pos, "zip", f"{length} unaccounted byte(s) after the member data")
        return nxt
    vals = struct.unpack_from(fmt, buf, pos)[-3:]
    if tuple(vals) != (e.crc, e.csize, e.usize):
        out.add(e.label, pos, "zip", "data descriptor CRC/sizes differ from the central directory")
    return nxt


def _report_gap(buf: _Buf, start: int, end: int, label: str, out: _Collector) -> None:
    if end < start:
        out.add(label, end, "zip", "members overlap")
        return
    hidden = buf.find(b"PK\x03\x04", start, end)
    if hidden >= 0:
        out.add("", hidden, "zip", "hidden member: a local file header the central directory does not list")
    else:
        out.add("", start, "zip", f"{end - start} unaccounted byte(s) between members")


def _check_members(buf: _Buf, entries: list[_Entry], limits: ScanLimits, out: _Collector) -> None:
    declared = sum(e.usize for e in entries)
    budget = limits.max_total_uncompressed_bytes
    if declared > budget:
        out.add("", 0, "zip", f"members declare {declared} uncompressed bytes, over the {budget}-byte cap")
    archive = entries[0].name.split(b"/", 1)[0] if entries else b""
    main = archive + b"/data.pkl"
    if all(e.name != main for e in entries):
        marker = archive + b"/.data/extern_modules"  # torch.package's PackageExporter writes it
        if any(e.name == marker for e in entries):
            shown = marker.decode("utf-8", "replace")
            out.add("", 0, "zip", f"{_TORCH_PACKAGE} ({shown!r}), not a torch.save checkpoint")
        else:
            out.add("", 0, "zip", f"no {main.decode('utf-8', 'replace')!r}: not a torch.save checkpoint")
    for e in entries:
        if e.data_start < 0 or e.method not in (0, 8) or e.flags & 0x41:
            continue
        is_pickle = e.name.endswith(b".pkl")
        if is_pickle and e.name != main:
            out.add(e.label, 0, "zip", "unexpected pickle member (torch.save writes only <archive>/data.pkl)")
        if e.usize > budget:
            out.add(e.label, 0, "zip", "member not read: over the remaining uncompressed-size budget")
            continue
        if e.method == 8 and e.usize > (1 << 20) and e.usize > limits.max_compression_ratio * max(e.csize, 1):
            out.add(e.label, 0, "zip", f"compression ratio {e.usize // max(e.csize, 1)}:1 (decompression bomb)")
            continue
        keep = is_pickle and e.usize <= limits.max_pickle_bytes
        if is_pickle and not keep:
            out.add(e.label, 0, "limit", f"pickle member of {e.usize} bytes exceeds {limits.max_pickle_bytes}")
        content = _read_member(buf, e, keep, out)
        budget -= e.usize
        if content is not None:
            _scan_member_pickle(content, e.label, limits, out)


def _read_member(buf: _Buf, e: _Entry, keep: bool, out: _Collector) -> bytes | None:
    """Verify size and CRC by reading the member; return its bytes when ``keep``."""
    chunk = 1 << 20
    start, end = e.data_start, e.data_start + e.csize
    crc = 0
    produced = 0
    parts: list[bytes] = []
    view = memoryview(buf)
    try:
        if e.method == 0:
            if e.csize != e.usize:
                out.add(e.label, 0, "zip", "stored member's sizes differ")
                return None
            for p in range(start, end, chunk):
                piece = view[p : min(end, p + chunk)]
                crc = zlib.crc32(piece, crc)
                if keep:
                    parts.append(bytes(piece))
            produced = e.usize
        else:
            d = zlib.decompressobj(-15)
            for p in range(start, end, chunk):
                data = d.decompress(view[p : min(end, p + chunk)], e.usize + 1 - produced)
                while True:
                    produced += len(data)
                    if produced > e.usize:
                        out.add(e.label, 0, "zip", "member inflates beyond its declared size (decompression bomb)")
                        return None
                    crc = zlib.crc32(data, crc)
                    if keep:
                        parts.append(data)
                    if not d.unconsumed_tail:
                        break
                    data = d.decompress(d.unconsumed_tail, e.usize + 1 - produced)
            if not d.eof or d.unused_data or produced != e.usize:
                out.add(e.label, 0, "zip", "deflated member is truncated or its size differs from the directory")
                return None
    except zlib.error as exc:
        out.add(e.label, 0, "zip", f"corrupt deflate stream: {exc}")
        return None
    finally:
        view.release()
    if crc != e.crc:
        out.add(e.label, 0, "zip", f"CRC mismatch (directory says {e.crc:08x}, data is {crc:08x})")
    return b"".join(parts) if keep else None


def _scan_member_pickle(data: bytes, member: str, limits: ScanLimits, out: _Collector) -> None:
    out.members.append(member)
    r = walk_pickle(data, 0, limits.pickle)
    out.add_raw(member, r.findings)
    if r.end is not None:
        _scan_trailing(data, r.end, limits, out, budget=limits.pickle.max_opcodes - r.opcodes, member=member)


# --------------------------------------------------------------------------------------------------
# legacy tar (torch < 0.4); torch 2.13 refuses it under weights_only=True


def _scan_tar(buf: _Buf, limits: ScanLimits, out: _Collector) -> None:
    data = bytes(buf[:]) if len(buf) <= limits.max_pickle_bytes else None
    if data is None:
        out.add("", 0, "limit", "legacy tar checkpoint too large to scan")
        return
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:", format=tarfile.PAX_FORMAT) as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            for dup in sorted({n for n in names if names.count(n) > 1}):
                out.add(dup, 0, "tar", "duplicate member name")
            contents: dict[str, bytes] = {}
            for m in members:
                if m.name in ("pickle", "storages", "tensors", "sys_info"):
                    if not m.isreg():
                        out.add(m.name, 0, "tar", "member is not a regular file")
                        continue
                    fh = tar.extractfile(m)
                    if fh is not None:
                        contents[m.name] = fh.read()
    except tarfile.TarError as exc:
        out.add("", 0, "tar", f"unreadable tar archive: {exc}")
        return
    if "pickle" not in contents:
        out.add("", 0, "tar", "legacy tar checkpoint without a 'pickle' member")
    for name in ("sys_info", "pickle"):
        if name in contents:
            _scan_member_pickle(contents[name], name, limits, out)
    if "storages" in contents:
        _scan_tar_records(contents["storages"], "storages", limits, out)
    if "tensors" in contents:
        _scan_tar_records(contents["tensors"], "tensors", limits, out)


def _scan_tar_records(data: bytes, member: str, limits: ScanLimits, out: _Collector) -> None:
    """``storages``/``tensors``: a count pickle, then per record a pickle and raw bytes."""
    out.members.append(member)
    r = walk_pickle(data, 0, limits.pickle)
    out.add_raw(member, r.findings)
    if r.end is None or r.root is None or r.root.kind != "int" or r.root.text is None:
        if r.end is not None:
            out.add(member, 0, "tar", "record count is not an integer")
        return
    count, pos = int(r.root.text), r.end
    for _ in range(count):
        rec = walk_pickle(data, pos, limits.pickle)
        out.add_raw(member, rec.findings)
        if rec.end is None or rec.root is None:
            return
        pos = rec.end
        kids = rec.root.children or []
        if member == "storages":
            stype = kids[2].text if len(kids) == 3 else None
            size = _STORAGE_ELEMENT_SIZE.get(stype or "")
            if size is None or pos + 8 > len(data):
                out.add(member, pos, "tar", "storage record without a known storage type")
                return
            pos += 8 + struct.unpack_from("<q", data, pos)[0] * size
        else:
            if pos + 8 > len(data):
                out.add(member, pos, "tar", "truncated tensor record")
                return
            ndim = struct.unpack_from("<i", data, pos)[0]
            pos += 8 + 16 * ndim + 8
        if pos > len(data) or pos < 0:
            out.add(member, len(data), "tar", "record runs past the end of the member")
            return
    if member == "storages":
        views = walk_pickle(data, pos, limits.pickle)
        out.add_raw(member, views.findings)
        if views.end is None:
            return
        pos = views.end
    _scan_trailing(data, pos, limits, out, budget=limits.pickle.max_opcodes, member=member)


# --------------------------------------------------------------------------------------------------
# safetensors (reported, so `securehub scan` covers every format)


def _scan_safetensors(buf: _Buf, out: _Collector) -> None:
    try:
        check_safetensors(buf)
    except MalformedSafetensors as exc:
        out.add("", 0, "safetensors", str(exc))
