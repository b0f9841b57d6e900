"""Checkpoint format detection by content, never by file name.

A pickle named ``model.safetensors`` is a pickle (extension spoofing). The
order of the checks follows what ``torch.load`` does with a file, so the
format we report is the one torch would load it as:

1. ``PK\\x03\\x04`` at offset 0 -> zip (``torch.save`` since 1.6;
   ``torch.serialization._is_zipfile`` checks exactly these four bytes);
2. a tar header Python's :mod:`tarfile` accepts -> legacy tar
   (``torch.serialization._legacy_load`` tries ``tarfile.open`` next);
3. 8-byte little-endian length ``N`` followed by ``N`` bytes of JSON
   object -> safetensors (``torch.load`` would fail on it; it is loaded
   with the safetensors library, after :mod:`.safetensors_check`);
4. a pickle: protocol 2+ starts with ``\\x80`` and the protocol byte;
   protocol 0/1 pickles are recognised by parsing the first pickle. A first
   pickle equal to torch's legacy magic number -> the legacy stream format.

Guarantee: detection reads at most the first ``8 + 100 MiB`` bytes and never
imports or runs anything from the data.
"""

from __future__ import annotations

import io
import json
import mmap
import struct
import tarfile
from pathlib import Path
from typing import Final, Literal

from securehub.errors import FormatNotAllowed
from securehub.verify.pickle.ops import HIGHEST_PROTOCOL, LEGACY_MAGIC_NUMBER, walk_pickle

__all__ = [
    "DetectedFormat",
    "PolicyFormat",
    "check_format_allowed",
    "detect_format",
    "policy_format",
    "sniff",
]

DetectedFormat = Literal["safetensors", "pickle-zip", "pickle-legacy", "pickle", "unknown"]
PolicyFormat = Literal["safetensors", "pickle"]
Sniffed = Literal["zip", "tar", "safetensors", "legacy-stream", "pickle", "empty", "unknown"]

#: Sniffed container -> the format name used in results and policies.
FORMAT_OF_SNIFF: Final[dict[str, DetectedFormat]] = {
    "zip": "pickle-zip",
    "tar": "pickle-legacy",
    "legacy-stream": "pickle-legacy",
    "safetensors": "safetensors",
    "pickle": "pickle",
    "empty": "unknown",
    "unknown": "unknown",
}

SAFETENSORS_MAX_HEADER_BYTES: Final = 100 * 1024 * 1024
_HEAD_BYTES: Final = 1 << 20
_Buf = bytes | mmap.mmap


def sniff(buf: _Buf) -> Sniffed:
    """Classify the data in ``buf`` (the whole file, or a head of it)."""
    n = len(buf)
    if n == 0:
        return "empty"
    if bytes(buf[:4]) == b"PK\x03\x04":
        return "zip"
    if n >= 512 and _is_tar(buf):
        return "tar"
    if _is_safetensors(buf):
        return "safetensors"
    return _sniff_pickle(buf)


def _is_tar(buf: _Buf) -> bool:
    fileobj = io.BytesIO(bytes(buf[: 1 << 16]))
    try:
        with tarfile.open(fileobj=fileobj, mode="r:", format=tarfile.PAX_FORMAT) as tar:
            # An all-zero block opens as an empty archive; torch then fails on
            # the missing members without unpickling anything.
            return tar.next() is not None
    except tarfile.TarError:
        return False


def _is_safetensors(buf: _Buf) -> bool:
    n = len(buf)
    if n < 9:
        return False
    (length,) = struct.unpack_from("<Q", buf, 0)
    if length < 2 or length > SAFETENSORS_MAX_HEADER_BYTES or 8 + length > n or buf[8] != ord("{"):
        return False
    try:
        header = json.loads(bytes(buf[8 : 8 + length]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: a header nested thousands of levels deep (a hostile artifact server) is not
        # safetensors either; letting it escape turned a refusal into an internal error.
        return False
    return isinstance(header, dict)


def _sniff_pickle(buf: _Buf) -> Sniffed:
    head = bytes(buf[:_HEAD_BYTES])
    first = walk_pickle(head, 0, None, 100_000)
    root = first.root
    if first.end is not None and root is not None and root.kind == "int" and root.text == str(LEGACY_MAGIC_NUMBER):
        return "legacy-stream"
    if head[0] == 0x80 and len(head) > 1 and head[1] <= HIGHEST_PROTOCOL:
        return "pickle"
    if first.end is not None:
        return "pickle"
    # A protocol 0/1 pickle longer than the head: parsed cleanly up to the cut.
    truncated = [f for f in first.findings if f.kind == "malformed" and f.detail.startswith("truncated")]
    if len(head) < len(buf) and truncated and len(first.findings) == len(truncated):
        return "pickle"
    return "unknown"


def detect_format(path_or_bytes_head: str | Path | bytes) -> DetectedFormat:
    """Detect a checkpoint's format from its content.

    Pass a path, or the file's bytes; a head is enough when it holds at least
    the first 1 MiB (or, for safetensors, the whole ``8 + N``-byte header).
    """
    if isinstance(path_or_bytes_head, bytes):
        return FORMAT_OF_SNIFF[sniff(path_or_bytes_head)]
    p = Path(path_or_bytes_head)
    with p.open("rb") as fh:
        if p.stat().st_size == 0:
            return "unknown"
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return FORMAT_OF_SNIFF[sniff(mm)]


def policy_format(detected: DetectedFormat | str) -> PolicyFormat | None:
    """Map a detected format to the name ``artifacts.formats`` uses; None for unknown."""
    if detected == "safetensors":
        return "safetensors"
    if detected in ("pickle-zip", "pickle-legacy", "pickle"):
        return "pickle"
    return None


def check_format_allowed(detected: DetectedFormat | str, allowed_formats: list[str] | tuple[str, ...]) -> None:
    """Raise :class:`FormatNotAllowed` unless ``detected`` maps to one of ``allowed_formats``."""
    allowed = ", ".join(allowed_formats) or "nothing"
    mapped = policy_format(detected)
    if mapped is None:
        raise FormatNotAllowed(
            f"artifact format not recognised (expected one of: {allowed}; found content that is neither "
            "safetensors nor a torch/pickle checkpoint); check the URL points at the checkpoint itself"
        )
    if mapped not in allowed_formats:
        raise FormatNotAllowed(
            f"artifact format {mapped!r} (detected {detected!r} from the file's content) is not allowed by "
            f"the policy (artifacts.formats: {allowed}); use a {allowed} artifact or a policy that allows "
            f"{mapped}"
        )
