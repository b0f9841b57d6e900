"""The canonical digest of a set of tensors (``securehub-state/1``): per-tensor SHA-256, computed on every core.

One digest serves two jobs: hub.lock's pinned ``state_sha256`` (over a
model's own tensors, :mod:`securehub.pipeline.state_digest`) and the result
cache's ``state_digest`` (over every tensor of a cached state file,
:mod:`securehub.store.results`). Both are computed from the same per-tensor
SHA-256s, so a state that arrives from the sandbox or is read from the cache
is hashed exactly once, tensor by tensor on a thread pool (hashlib releases
the GIL on large buffers), while the next tensors are still arriving.

Byte format (version ``securehub-state/1``)::

    sha256(
        b"securehub-state/1\\n"
        + for each tensor, in ascending order of its name's UTF-8 bytes:
            JSON([name, dtype, shape, nbytes, data_sha256]) + b"\\n"
    )

* ``name``: the state-dict key; ``dtype``: the safetensors dtype name
  (``F32``, ``BF16``, ``I64``, ``BOOL``, ...); ``shape``: list of ints;
  ``nbytes``: the byte length of the tensor's data;
* ``data_sha256``: lowercase hex sha256 of the tensor's raw bytes, row-major
  (C-contiguous), little-endian -- exactly the bytes safetensors stores;
* ``JSON(x)``: :func:`securehub._util.canonical.canonical_json` (sorted keys,
  no spaces, UTF-8, no NaN); names are JSON strings, so a newline or quote in
  a name cannot forge a second line.

The digest does not depend on how a file laid the bytes out (header key
order, offsets, padding, ``__metadata__``, which nothing reads): two sets of
tensors with equal digests hold the same names, dtypes, shapes and bytes (up to
SHA-256 collisions). Nothing here decides policy or trusts a file: headers are
checked by :func:`securehub.verify.safetensors_check.check_safetensors_head`.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Final

from securehub._util.canonical import canonical_json
from securehub.verify.safetensors_check import TensorInfo, check_safetensors_head

__all__ = ["STATE_FORMAT", "TensorHasher", "file_lines", "lines_digest", "tensor_line"]

STATE_FORMAT: Final = "securehub-state/1"
#: Threads hashing tensors (one per core, at most 8).
WORKERS: Final = max(1, min(8, os.cpu_count() or 1))


def tensor_line(name: str, dtype: str, shape: Iterable[int], nbytes: int, data_sha256: str) -> bytes:
    """One tensor's canonical line: ``JSON([name, dtype, shape, nbytes, data_sha256]) + b"\\n"``."""
    return canonical_json([name, dtype, list(shape), nbytes, data_sha256]) + b"\n"


def lines_digest(lines: Mapping[str, bytes]) -> str:
    """The ``securehub-state/1`` digest of the tensors whose lines (name -> line) are given."""
    h = hashlib.sha256(STATE_FORMAT.encode() + b"\n")
    for name in sorted(lines, key=lambda n: n.encode("utf-8")):
        h.update(lines[name])
    return h.hexdigest()


#: A tensor smaller than this is hashed in a batch with its neighbours, not on its own task.
_SMALL: Final = 256 << 10
#: A batch of small tensors is handed to the pool once it holds this many bytes or tensors.
_BATCH_BYTES: Final = 4 << 20
_BATCH_COUNT: Final = 1024


def _sha256_hex_each(views: list[memoryview]) -> list[str]:
    return [hashlib.sha256(data).hexdigest() for data in views]


class TensorHasher:
    """The sha256 of each tensor's raw bytes, hashed on a thread pool as soon as each tensor is added.

    Hand :meth:`add` to a reader that reports each tensor once its bytes are in
    memory (``on_tensor`` of :func:`securehub.verify.fast_safetensors.load_verified`
    and ``receive_state``): each tensor is hashed while the next ones are read.
    Small tensors are hashed in batches (one pool task per :data:`_BATCH_COUNT`
    tensors or :data:`_BATCH_BYTES` bytes): a task per tensor cost the parent
    ~30 s and ~0.6 GiB for a hostile state of 190,000 tiny tensors (red team 14),
    and real models hold thousands of small biases and norms.
    Use as a context manager (the pool is shut down on exit); the views handed
    to :meth:`add` must stay valid until :meth:`data_sha256` returns.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="securehub-digest")
        self._infos: dict[str, TensorInfo] = {}
        self._tasks: list[tuple[list[str], Future[list[str]]]] = []
        self._batch: tuple[list[str], list[memoryview]] = ([], [])
        self._batch_bytes = 0

    def __enter__(self) -> TensorHasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the pool (waits for a hash in progress; drops the ones not started)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, info: TensorInfo, data: memoryview) -> None:
        """Start hashing one tensor: its (checked) header entry and exactly its raw bytes."""
        if len(data) != info.end - info.begin:
            raise ValueError(f"tensor {info.name!r}: expected {info.end - info.begin} bytes, given {len(data)}")
        if info.name in self._infos:
            raise ValueError(f"tensor {info.name!r} added twice")
        self._infos[info.name] = info
        if len(data) >= _SMALL:
            self._tasks.append(([info.name], self._pool.submit(_sha256_hex_each, [data])))
            return
        names, views = self._batch
        names.append(info.name)
        views.append(data)
        self._batch_bytes += len(data)
        if self._batch_bytes >= _BATCH_BYTES or len(names) >= _BATCH_COUNT:
            self._flush()

    def _flush(self) -> None:
        names, views = self._batch
        if names:
            self._tasks.append((names, self._pool.submit(_sha256_hex_each, views)))
        self._batch, self._batch_bytes = ([], []), 0

    def data_sha256(self) -> dict[str, str]:
        """name -> sha256 of the tensor's raw bytes, for every tensor added, in the order added (waits for them)."""
        self._flush()
        digests: dict[str, str] = {}
        for names, task in self._tasks:
            digests.update(zip(names, task.result(), strict=True))
        return {name: digests[name] for name in self._infos}

    def lines(self) -> dict[str, bytes]:
        """name -> canonical line, for every tensor added (waits for them)."""
        digests = self.data_sha256()
        return {
            name: tensor_line(name, info.dtype, info.shape, info.end - info.begin, digests[name])
            for name, info in self._infos.items()
        }


def file_lines(path: Path) -> dict[str, bytes]:
    """The canonical line of every tensor of the safetensors file ``path``, read through one read-only mmap.

    ``MalformedSafetensors`` (from the strict checker) when ``path`` is not well-formed.
    """
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            check_safetensors_head(b"", 0)  # raises: an empty file is not safetensors
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                head = check_safetensors_head(mapped, size)
                with TensorHasher() as hasher:
                    for t in head.tensors:
                        hasher.add(t, view[head.data_offset + t.begin : head.data_offset + t.end])
                    lines = hasher.lines()
            finally:
                view.release()
    return lines
