"""Canonical digests of what a sandbox child produced: state, config, exported program (output pinning).

hub.lock pins, per entrypoint and argument set, the digests of the child's
output (SPEC section 4, ``outputs``). They must not depend on how the bytes
were laid out in a file (header key order, offsets, padding, safetensors
metadata), only on what a rebuilt model holds, so they are computed from a
canonical form, identically from a safetensors file (:func:`file_digests`)
and from an in-memory state dict (:func:`state_sha256`).

``state_sha256`` is the ``securehub-state/1`` digest
(:mod:`securehub.verify.tensor_digest` documents its byte format; the result
cache's ``state_digest`` is the same digest over every tensor of a file).

Only the module's own tensors count: keys under the export prefixes
(``__export_state__.``, ``__export_constant__.``) belong to the exported
program and are covered by ``program_sha256`` instead, so the state digest is
the same whether or not a run exported (a lock with example inputs, a load
without). Per-tensor hashes run on a thread pool, so a large state uses every
core, and a caller that already hashed each tensor's bytes on the way in
passes those digests (``data_sha256=``) instead of hashing again.

``config_sha256`` (``securehub-config/2``) = ``sha256(b"securehub-config/2\n"
+ canonical JSON of portable(config))``, where the canonical JSON is
``json.dumps(..., sort_keys=True, ensure_ascii=False, separators=(",", ":"),
allow_nan=False)`` in UTF-8, and ``portable`` drops the ``export_error`` key
(a diagnostic message that depends on the example inputs a call happened to
pass, never used to build anything) and rewrites every string, object keys
included, by :func:`portable_text`: ``$`` becomes ``$$``, then a string that
*is* the load's tree path T, or starts with ``T + "/"``, has that T replaced
by ``${tree}``. T is the absolute path the child saw its tree at
(``Path.resolve()`` of the tree the sandbox was given); it holds the cache
directory, so a repository class given a path inside its tree (YOLOv5's
``cfg=``) recorded another config in every cache (red team 13). The rewrite
is injective for a given T (an escaped string never starts with ``${``), so
a config holding the literal ``${tree}`` cannot collide with one holding the
path; a path that merely shares a prefix with T (``T + "x"``) is kept as it
is. Only the digest uses the rewrite: the parent builds from the config as
the child sent it. (``securehub-config/1``, before 2026-12-08: the plain
sha256 of the canonical JSON, no prefix, no rewrite.)

``program_sha256`` (``None`` when no program was exported) =
``sha256(b"securehub-program/2\\n" + JSON(meta) + b"\\n" + export_tensors
+ b"\\n" + sha256_hex(program_json))`` where ``JSON(meta)`` is the canonical
JSON (sorted keys, as above) of the export frame's meta
(:meth:`securehub.sandbox.wire.messages.ExportInfo.to_meta`) and ``export_tensors``
is the ``securehub-state/1`` digest (hex, as above) of only the tensors under
the export prefixes. So the program, its name mapping and every tensor only
the program uses are pinned. ``program_json`` is what the child sends: torch's
JSON with node metadata emptied (:func:`securehub.sandbox.child.result.without_metadata`;
its stack traces named the tree's path in one cache, ``securehub-program/1``).

Guarantee: two outputs with equal digests hold the same tensor names,
dtypes, shapes and bytes, the same config (up to where each load's tree lay:
equal after each one's own tree path is replaced by ``${tree}``) and the same
program (up to sha256 collisions). Nothing here decides policy or trusts the file: the header is
checked by the same strict checker that admits the child's output.
"""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch

from securehub._util.canonical import canonical_json
from securehub.sandbox.wire.messages import EXPORT_CONSTANT_PREFIX, EXPORT_STATE_PREFIX, ExportInfo
from securehub.verify.fast_safetensors import DTYPE_NAMES
from securehub.verify.tensor_digest import STATE_FORMAT, WORKERS, lines_digest, tensor_line
from securehub.verify.tensor_digest import file_lines as _file_lines

__all__ = [
    "STATE_FORMAT",
    "OutputDigests",
    "CONFIG_DIGEST_FORMAT",
    "TREE_PLACEHOLDER",
    "config_sha256",
    "file_digests",
    "first_difference",
    "names_tree",
    "output_digests",
    "portable_config",
    "portable_text",
    "file_lines",
    "file_output",
    "program_sha256",
    "state_output",
    "state_sha256",
]

_PROGRAM_FORMAT: Final = "securehub-program/2"
#: The config digest's definition (module docstring); bump it whenever the bytes it hashes change.
CONFIG_DIGEST_FORMAT: Final = "securehub-config/2"
#: What the load's own tree path becomes in the bytes the config digest hashes.
TREE_PLACEHOLDER: Final = "${tree}"
_EXPORT_PREFIXES: Final = (EXPORT_STATE_PREFIX, EXPORT_CONSTANT_PREFIX)


@dataclass(frozen=True)
class OutputDigests:
    """The three pinned digests of one child output (see the module docstring)."""

    state_sha256: str
    config_sha256: str
    program_sha256: str | None


@dataclass(frozen=True)
class _Entry:
    """One tensor of the canonical form: everything its line holds except the data digest."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: memoryview


def _is_export_key(name: str) -> bool:
    return name.startswith(_EXPORT_PREFIXES)


def _sha256_hex(data: memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _tensor_lines(entries: Iterable[_Entry], pool: ThreadPoolExecutor) -> dict[str, bytes]:
    """name -> its canonical line (``JSON([name, dtype, shape, nbytes, data_sha256]) + b"\\n"``)."""
    ordered = sorted(entries, key=lambda e: e.name.encode("utf-8"))
    digests = pool.map(_sha256_hex, [e.data for e in ordered])
    pairs = zip(ordered, digests, strict=True)
    return {e.name: tensor_line(e.name, e.dtype, e.shape, len(e.data), d) for e, d in pairs}


def _outputs(
    lines: Mapping[str, bytes], config: Mapping[str, Any], export: ExportInfo | None, tree: Path | None
) -> tuple[OutputDigests, dict[str, bytes]]:
    """The output digests from every tensor's line, and the lines of the module's own tensors."""
    own = {n: line for n, line in lines.items() if not _is_export_key(n)}
    exp = {n: line for n, line in lines.items() if _is_export_key(n)}
    config_digest = config_sha256(config, tree=tree)
    return OutputDigests(lines_digest(own), config_digest, program_sha256(export, lines_digest(exp))), own


def _tensor_entry(name: str, t: torch.Tensor) -> _Entry:
    """A view of the raw bytes of ``t`` (a contiguous CPU tensor the caller keeps alive while hashing)."""
    dtype = DTYPE_NAMES.get(t.dtype)
    if dtype is None:
        raise ValueError(f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot store")
    nbytes = t.numel() * t.element_size()
    if nbytes == 0:
        return _Entry(name, dtype, tuple(t.shape), memoryview(b""))
    # No copy: a read-only view of the tensor's own memory (kept alive by the caller's dict).
    buf = (ctypes.c_char * nbytes).from_address(t.data_ptr())
    return _Entry(name, dtype, tuple(t.shape), memoryview(buf).cast("B"))


def _state_lines(state: Mapping[str, torch.Tensor], pool: ThreadPoolExecutor) -> dict[str, bytes]:
    # Contiguous CPU tensors (a copy only for those that are not), alive until every line is hashed.
    keep = [t.detach() if t.device.type == "cpu" and t.is_contiguous() else t.detach().cpu().contiguous()
            for t in state.values()]  # fmt: skip
    return _tensor_lines((_tensor_entry(n, t) for n, t in zip(state, keep, strict=True)), pool)


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """The ``securehub-state/1`` digest of an in-memory state dict's own (non-export) tensors."""
    own = {n: t for n, t in state.items() if not _is_export_key(n)}
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="securehub-digest") as pool:
        return lines_digest(_state_lines(own, pool))


def _tree_text(tree: Path | None) -> str | None:
    """The tree's path as the child saw it (the sandbox hands it ``tree.resolve()``), or ``None``."""
    return None if tree is None else str(tree.resolve())


def _names(text: str, tree: str | None) -> bool:
    """Whether ``text`` is the path ``tree`` or a path inside it (not merely one sharing its prefix)."""
    return tree is not None and (text == tree or text.startswith(tree + "/"))


def names_tree(value: Any, tree: Path) -> bool:
    """Whether a JSON value holds a string, object keys included, that :func:`portable_text` rewrites for ``tree``."""
    return _holds(value, _tree_text(tree))


def _holds(value: Any, tree: str | None) -> bool:
    if isinstance(value, str):
        return _names(value, tree)
    if isinstance(value, dict):
        return any(_names(k, tree) or _holds(v, tree) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_holds(v, tree) for v in value)
    return False


def portable_text(text: str, tree: str | None) -> str:
    """``text`` with ``$`` escaped as ``$$`` and a leading tree path ``tree`` replaced by ``${tree}``.

    Only the whole path counts: ``text == tree`` or ``text.startswith(tree + "/")``. Injective for a given
    ``tree``: the escaped rest never starts with ``${``, so the placeholder cannot be forged by a string.
    """
    if tree is not None and _names(text, tree):
        return TREE_PLACEHOLDER + text[len(tree) :].replace("$", "$$")
    return text.replace("$", "$$")


def portable_config(value: Any, tree: str | None) -> Any:
    """``value`` (a JSON value) with every string, object keys included, rewritten by :func:`portable_text`."""
    if isinstance(value, str):
        return portable_text(value, tree)
    if isinstance(value, dict):
        return {portable_text(k, tree): portable_config(v, tree) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable_config(v, tree) for v in value]
    return value


def config_sha256(config: Mapping[str, Any], *, tree: Path | None) -> str:
    """The ``securehub-config/2`` digest of a child's config (module docstring); the only one there is.

    ``tree``: the tree the sandbox ran the hubconf in (the load's own; ``None`` only when there was none).
    Every site that computes or compares a config digest gets it from here, through :func:`output_digests`,
    :func:`file_digests` and their variants, which all require ``tree``.
    """
    kept = {k: v for k, v in config.items() if k != "export_error"}
    body = canonical_json(portable_config(kept, _tree_text(tree)))
    return hashlib.sha256(CONFIG_DIGEST_FORMAT.encode() + b"\n" + body).hexdigest()


def program_sha256(export: ExportInfo | None, export_tensors_sha256: str) -> str | None:
    """The ``securehub-program/2`` digest, ``None`` when nothing was exported."""
    if export is None:
        return None
    h = hashlib.sha256(_PROGRAM_FORMAT.encode() + b"\n")
    h.update(canonical_json(export.to_meta()) + b"\n")
    h.update(export_tensors_sha256.encode() + b"\n")
    h.update(hashlib.sha256(export.program_json).hexdigest().encode())
    return h.hexdigest()


def file_digests(
    path: Path, config: Mapping[str, Any], export: ExportInfo | None, *, tree: Path | None
) -> OutputDigests:
    """The pinned digests of a child's output held in the safetensors file ``path``.

    ``MalformedSafetensors`` (from the strict checker) if ``path`` is not
    well-formed; the sandbox session has already checked a child's file.
    """
    return file_output(path, config, export, tree=tree)[0]


def file_output(
    path: Path, config: Mapping[str, Any], export: ExportInfo | None, *, tree: Path | None
) -> tuple[OutputDigests, dict[str, bytes]]:
    """:func:`file_digests` and the per-tensor lines of the module's own tensors (one read of the file)."""
    return _outputs(_file_lines(path), config, export, tree)


def output_digests(
    state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    export: ExportInfo | None,
    *,
    tree: Path | None,
    data_sha256: Mapping[str, str] | None = None,
) -> OutputDigests:
    """The pinned digests of an output held in memory (a fresh sandbox output, a verified result-cache entry).

    ``data_sha256``: the sha256 of each tensor's raw bytes, already computed by the parent over these
    very tensors as they arrived (``receive_state``, ``load_result``); then nothing is hashed again.
    """
    return state_output(state, config, export, tree=tree, data_sha256=data_sha256)[0]


def state_output(
    state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    export: ExportInfo | None,
    *,
    tree: Path | None,
    data_sha256: Mapping[str, str] | None = None,
) -> tuple[OutputDigests, dict[str, bytes]]:
    """:func:`output_digests` and the per-tensor lines of the module's own tensors (like :func:`file_output`)."""
    if data_sha256 is not None:
        return _outputs(_known_lines(state, data_sha256), config, export, tree)
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="securehub-digest") as pool:
        return _outputs(_state_lines(state, pool), config, export, tree)


def _known_lines(state: Mapping[str, torch.Tensor], data_sha256: Mapping[str, str]) -> dict[str, bytes]:
    """The canonical lines of ``state`` from data digests computed over these tensors' bytes beforehand."""
    if set(data_sha256) != set(state):
        raise ValueError("expected a data digest for exactly the tensors of the state")
    lines = {}
    for name, t in state.items():
        entry = _tensor_entry(name, t) if t.is_contiguous() else None
        if entry is None:
            raise ValueError(f"tensor {name!r} is not contiguous: its data digest cannot be of its bytes")
        lines[name] = tensor_line(name, entry.dtype, entry.shape, len(entry.data), data_sha256[name])
    return lines


def first_difference(a: Mapping[str, bytes], b: Mapping[str, bytes]) -> str | None:
    """The first tensor name (canonical order) whose line differs between two line maps, or ``None``."""
    for name in sorted(set(a) | set(b), key=lambda n: n.encode("utf-8")):
        if a.get(name) != b.get(name):
            return name
    return None


def file_lines(path: Path) -> dict[str, bytes]:
    """The canonical per-tensor lines of the module's own tensors in ``path`` (for :func:`first_difference`)."""
    return _outputs(_file_lines(path), {}, None, None)[1]
