"""Load a safetensors file whose sha256 is known, reading it once and keeping one copy in memory.

:func:`load_verified` is the loader of the result cache (and of any caller
that holds a pinned digest). Compared with ``safetensors.torch.load_file``:

* the file is read **once**, with ``readinto`` into a single anonymous
  memory mapping the size of the file (pre-faulted with ``MAP_POPULATE``:
  page faults dominate the cost of filling fresh memory), and hashed in the same pass (the
  hashing of one chunk overlaps the read of the next: both release the GIL);
* **nothing is parsed before the digest matched**: the header is validated
  with :func:`securehub.verify.safetensors_check.check_safetensors` on the
  very bytes that were hashed, so a file swapped or edited between the check
  and the use cannot slip through (no time-of-check/time-of-use gap);
* the returned tensors are **views** into that one buffer
  (``buf[begin:end].view(dtype).view(shape)``), so the process's peak memory
  is about 1x the file instead of the 2x of "read, then copy into tensors".
  A tensor whose offset is not a multiple of its element size (legal in
  safetensors, never written by the reference writer) is copied instead.

Guarantees: the returned tensors hold exactly the bytes of a file whose
sha256 and size equal the expected ones; on any mismatch
:class:`~securehub.errors.HashMismatch` is raised and nothing is returned.
The tensors share one storage (non-overlapping views); they are writable,
like the tensors ``load_file`` returns. Only little-endian hosts are supported
(safetensors is little-endian).
"""

from __future__ import annotations

import errno
import hashlib
import io
import mmap
import os
import stat
import sys
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import MappingProxyType
from typing import Final

import torch

from securehub.errors import FormatNotAllowed, HashMismatch
from securehub.verify.safetensors_check import MalformedSafetensors, TensorInfo, check_safetensors

__all__ = ["TORCH_DTYPES", "load_verified"]

_CHUNK: Final = 8 << 20

#: safetensors dtype name -> torch dtype, for every dtype this torch can represent.
#: F4 / F6_* are packed sub-byte formats with no per-element torch dtype: refused.
TORCH_DTYPES: Final[Mapping[str, torch.dtype]] = MappingProxyType(
    {
        name: dtype
        for name, dtype in {
            "BOOL": torch.bool,
            "U8": torch.uint8,
            "I8": torch.int8,
            "I16": torch.int16,
            "U16": getattr(torch, "uint16", None),
            "F16": torch.float16,
            "BF16": torch.bfloat16,
            "I32": torch.int32,
            "U32": getattr(torch, "uint32", None),
            "F32": torch.float32,
            "C64": torch.complex64,
            "F64": torch.float64,
            "I64": torch.int64,
            "U64": getattr(torch, "uint64", None),
            "F8_E5M2": getattr(torch, "float8_e5m2", None),
            "F8_E4M3": getattr(torch, "float8_e4m3fn", None),
            "F8_E4M3FNUZ": getattr(torch, "float8_e4m3fnuz", None),
            "F8_E5M2FNUZ": getattr(torch, "float8_e5m2fnuz", None),
            "F8_E8M0": getattr(torch, "float8_e8m0fnu", None),
        }.items()
        if isinstance(dtype, torch.dtype)
    }
)

_DEFAULT_REMEDY = (
    "The file changed after its digest was recorded (tampering or corruption); nothing from it was used. "
    "Run `securehub cache verify`, then `securehub cache prune`, or reload with force_reload=True"
)


def load_verified(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str,
    expected_size: int,
    dir_fd: int | None = None,
    remedy: str = _DEFAULT_REMEDY,
) -> dict[str, torch.Tensor]:
    """Read ``path`` once, check its sha256 and size, and return its tensors as views of one buffer.

    ``dir_fd``: resolve a relative ``path`` against this open directory (so a
    caller can pin a directory that may be renamed meanwhile). The file is
    opened with ``O_NOFOLLOW`` and must be a regular file.

    Raises :class:`HashMismatch` (wrong size, wrong digest, a file that grew
    or shrank while being read, not a regular file), and
    :class:`FormatNotAllowed` when the verified bytes are not a well-formed
    safetensors file or hold a dtype torch cannot represent. ``remedy`` ends
    every ``HashMismatch`` message (what the user should do).
    """
    if sys.byteorder != "little":
        raise FormatNotAllowed("safetensors data is little-endian; this loader supports little-endian hosts only")
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise HashMismatch(f"{name}: expected a regular file, found a symbolic link. {remedy}") from None
    with io.FileIO(fd, "rb", closefd=True) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise HashMismatch(f"{name}: expected a regular file, found a {stat.filemode(st.st_mode)} entry. {remedy}")
        if st.st_size != expected_size:
            raise HashMismatch(
                f"{name}: expected {expected_size} bytes (sha256 {expected_sha256}), found {st.st_size} bytes. {remedy}"
            )
        buf = _read_hashed(fh, name, expected_sha256, expected_size, remedy)
    try:
        header = check_safetensors(buf)
    except MalformedSafetensors as exc:
        raise FormatNotAllowed(
            f"{name} has the expected sha256 but is not a well-formed safetensors file: {exc}. "
            "The digest that was recorded for it is of a malformed file; discard it and reload"
        ) from None
    base = torch.frombuffer(buf, dtype=torch.uint8) if expected_size else torch.empty(0, dtype=torch.uint8)
    return {t.name: _tensor(base, header.data_offset, t, name) for t in header.tensors}


def _read_hashed(fh: io.FileIO, name: str, expected_sha256: str, size: int, remedy: str) -> mmap.mmap:
    """The whole file in one anonymous mapping, its sha256 checked; the hash of chunk k overlaps reading k+1."""
    populate = getattr(mmap, "MAP_POPULATE", 0)
    # MAP_POPULATE faults the whole buffer in with one call instead of one page fault per 4 KiB page
    # during the reads: measured ~2x faster for a 700 MB file; the memory is needed anyway.
    buf = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    view = memoryview(buf)
    h = hashlib.sha256()
    pos = 0
    pending: Future[None] | None = None
    readinto = fh.readinto
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="securehub-sha256") as pool:
            while pos < size:
                n = readinto(view[pos : min(pos + _CHUNK, size)])
                if not n:
                    break
                if pending is not None:
                    pending.result()
                pending = pool.submit(h.update, view[pos : pos + n])
                pos += n
            if pending is not None:
                pending.result()
        extra = readinto(bytearray(1))
    finally:
        view.release()
    if pos != size or extra:
        buf.close()
        raise HashMismatch(f"{name}: expected {size} bytes, the file changed size while it was read. {remedy}")
    found = h.hexdigest()
    if found != expected_sha256:
        buf.close()
        raise HashMismatch(f"{name}: expected sha256 {expected_sha256}, found {found}. {remedy}")
    return buf


def _tensor(base: torch.Tensor, data_offset: int, info: TensorInfo, name: str) -> torch.Tensor:
    dtype = TORCH_DTYPES.get(info.dtype)
    if dtype is None:
        raise FormatNotAllowed(
            f"{name}: tensor {info.name!r} has dtype {info.dtype}, which this torch ({torch.__version__}) cannot "
            f"represent; expected one of {sorted(TORCH_DTYPES)}"
        )
    begin, end = data_offset + info.begin, data_offset + info.end
    if begin == end:
        return torch.empty(info.shape, dtype=dtype)
    raw = base[begin:end]
    itemsize = torch.empty((), dtype=dtype).element_size()
    if begin % itemsize == 0:
        return raw.view(dtype).view(info.shape)
    # A misaligned offset cannot be viewed as a wider dtype: copy this one tensor.
    out = torch.empty(info.shape, dtype=dtype)
    out.reshape(-1).view(torch.uint8).copy_(raw)
    return out
