"""Turn the entrypoint's module into (config, safetensors file, exported program) (runs in the child).

State file layout (safetensors):

- every ``state_dict()`` key whose tensor is not an alias of an earlier key;
- aliases (tied weights: the same tensor under several names) are written
  once, under the first name; the config's ``"aliases"`` maps each dropped
  name to the kept one;
- non-persistent buffers under ``__nonpersistent__.<name>`` (they are not in
  ``state_dict()`` but the module needs them);
- with an export, the program's constants under ``__export_constant__.<n>``
  and any program state that differs from the module's under
  ``__export_state__.<n>``.

Tensors that share storage without being the same view (a transposed view of
a parameter kept as a buffer) and non-contiguous tensors are written as
contiguous copies: safetensors refuses shared storage, and the values are
what the parent needs.

The ``result`` frame's body is that safetensors file, streamed by
:func:`state_parts` straight from the tensors' memory (no file is written and
read back). Its layout follows safetensors' rules: tensors ordered by element
size (largest first) then name, each at an offset that is a multiple of its
element size, the header padded with spaces to a multiple of 8 bytes (the
parent's checker admits any well-formed layout; the digests pinned in hub.lock
do not depend on it).
"""

from __future__ import annotations

import ctypes
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils._pytree import tree_flatten

from securehub.sandbox.wire import messages as m
from securehub.verify.fast_safetensors import DTYPE_NAMES

__all__ = ["ExportPackage", "export_program", "state_parts", "write_state"]


class ResultRefused(Exception):  # noqa: N818
    """The module holds something that cannot travel as safetensors; message says what."""


def _view_key(t: torch.Tensor) -> tuple[Any, ...]:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _plain(name: str, t: torch.Tensor) -> torch.Tensor:
    if t.is_sparse or t.layout != torch.strided:
        raise ResultRefused(f"tensor {name!r} has layout {t.layout}; only dense tensors travel as safetensors")
    if t.is_quantized:
        raise ResultRefused(f"tensor {name!r} is quantized; only plain dtypes travel as safetensors")
    if t.device.type == "meta":
        raise ResultRefused(f"tensor {name!r} is on the meta device (no data); materialise the weights")
    out = t.detach()
    if type(out) is not torch.Tensor:
        out = out.as_subclass(torch.Tensor)
    return out.to("cpu")


def collect_tensors(module: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors to write and the alias map, following the rules in the module docstring."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen_views: dict[tuple[Any, ...], str] = {}
    storages: dict[int, str] = {}
    items: list[tuple[str, torch.Tensor]] = list(module.state_dict(keep_vars=True).items())
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for bname in sorted(sub._non_persistent_buffers_set):
            buf = sub._buffers.get(bname)
            if buf is not None:
                full = f"{prefix}.{bname}" if prefix else bname
                items.append((m.NONPERSISTENT_PREFIX + full, buf))
    for name, value in items:
        if not isinstance(value, torch.Tensor):
            raise ResultRefused(
                f"state entry {name!r} is a {type(value).__name__}, not a tensor; "
                "extra state cannot travel as safetensors"
            )
        t = _plain(name, value)
        key = _view_key(t)
        if key in seen_views and not name.startswith(m.NONPERSISTENT_PREFIX):
            aliases[name] = seen_views[key]
            continue
        ptr = t.untyped_storage().data_ptr()
        if not t.is_contiguous() or (ptr in storages and t.numel() > 0):
            t = t.clone(memory_format=torch.contiguous_format)
        else:
            storages[ptr] = name
        seen_views.setdefault(key, name)
        tensors[name] = t
    return tensors, aliases


def _safetensors_ready(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy any tensor that still shares storage with another (safetensors' own rule)."""
    by_storage: dict[int, int] = {}
    for t in tensors.values():
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            by_storage[ptr] = by_storage.get(ptr, 0) + 1
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        shared = t.numel() > 0 and by_storage[t.untyped_storage().data_ptr()] > 1
        partial = t.numel() > 0 and t.untyped_storage().nbytes() != t.numel() * t.element_size()
        if shared or partial:
            t = t.clone(memory_format=torch.contiguous_format)
        out[name] = t
    return out


def write_state(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``tensors`` to ``path`` as safetensors."""
    save_file(_safetensors_ready(tensors), str(path), metadata={"format": "pt"})


def state_parts(tensors: dict[str, torch.Tensor]) -> tuple[list[memoryview], list[torch.Tensor]]:
    """``tensors`` as a safetensors file in parts: the header, then each tensor's bytes, without a copy.

    Returns the parts and the tensors they point into (keep them alive until the parts are sent).
    ``ResultRefused`` for a dtype safetensors cannot hold.
    """
    ready = {name: t.detach().to("cpu").contiguous() for name, t in _safetensors_ready(tensors).items()}
    order = sorted(ready, key=lambda name: (-ready[name].element_size(), name))
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in order:
        t = ready[name]
        dtype = DTYPE_NAMES.get(t.dtype)
        if dtype is None:
            raise ResultRefused(f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot hold")
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    parts = [memoryview(len(raw).to_bytes(8, "little") + raw)]
    for name in order:
        parts.append(_raw_bytes(ready[name]))
    return parts, [ready[name] for name in order]


def _raw_bytes(t: torch.Tensor) -> memoryview:
    """The bytes of the contiguous CPU tensor ``t``, without a copy (valid while ``t`` lives)."""
    nbytes = t.numel() * t.element_size()
    if nbytes == 0:
        return memoryview(b"")
    return memoryview((ctypes.c_ubyte * nbytes).from_address(t.data_ptr())).cast("B")


class ExportPackage:
    """An exported program split into JSON (``program_json``) and tensors (into the state file)."""

    def __init__(
        self,
        program_json: bytes,
        state: dict[str, str],
        constants: dict[str, str],
        parameters: list[str],
        dynamic_batch: bool = False,
        dynamic_dims: list[list[int]] | None = None,
    ) -> None:
        self.program_json = program_json
        self.state = state
        self.constants = constants
        self.parameters = parameters
        self.dynamic_batch = dynamic_batch
        self.dynamic_dims = dynamic_dims if dynamic_dims is not None else []

    def meta(self) -> dict[str, Any]:
        return {
            "format": m.EXPORT_FORMAT,
            "state": self.state,
            "constants": self.constants,
            "parameters": self.parameters,
            "dynamic_batch": self.dynamic_batch,
            "dynamic_dims": self.dynamic_dims,
        }


def _batch_shapes(
    module: nn.Module, example_inputs: tuple[torch.Tensor, ...], *, sizes: bool = False
) -> tuple[Any, ...]:
    """``dynamic_shapes`` marking dim 0 of every (non-scalar) input as one shared symbolic batch size >= 1.

    With ``sizes``, every other dim of every input is ``Dim.AUTO`` too (torch
    makes it symbolic where the model allows, and fixes it where the model
    specialises it: a ViT's position embeddings, ``AvgPool2d(7)`` at the end).

    torch.export matches ``dynamic_shapes`` to ``forward``'s parameters as the
    inputs bind to them, so inputs that land in ``*args`` get one nested tuple
    of specs (DINOv2's ``forward(self, *args, is_training=False, **kwargs)``:
    a flat tuple is refused there and the batch was silently fixed). When the
    signature cannot be read, the flat form is used (torch says if it does not fit).
    """
    batch = torch.export.Dim("batch", min=1)
    specs: list[dict[int, Any] | None] = []
    for t in example_inputs:
        spec: dict[int, Any] | None = None
        if t.dim() > 0:
            spec = {0: batch}
            if sizes:
                spec.update(dict.fromkeys(range(1, t.dim()), torch.export.Dim.AUTO))
        specs.append(spec)
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return tuple(specs)
    bound: list[Any] = []
    for param in params:
        if len(bound) == len(specs):
            break
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            bound.append(specs[len(bound)])
        elif param.kind is param.VAR_POSITIONAL:
            return (*bound, tuple(specs[len(bound) :]))
        else:
            break
    return tuple(bound) if len(bound) == len(specs) else tuple(specs)


def _fresh(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Copies of ``inputs`` for one ``torch.export`` call to trace.

    ``Dim.AUTO`` makes torch mark the traced tensors themselves
    (``_dynamo_weak_dynamic_indices``) and a failed export leaves the marks: a
    later static export of the same tensors then traced them symbolically
    again, and IBN-Net's ``AvgPool2d(7)`` at 224x224 made that fallback fail
    with sympy's ``NotImplementedError``. Each attempt traces its own copies.
    """
    return tuple(t.clone() for t in inputs)


def _doubled(example_inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The example inputs with every size-1 batch repeated to 2 (torch specialises a traced size of 1)."""
    return tuple(torch.cat([t, t]) if t.dim() > 0 and t.shape[0] == 1 else t for t in example_inputs)


def _same_outputs(want: Any, have: Any) -> bool:
    """Same pytree structure, same tensor shapes/dtypes, values equal up to float rounding."""
    want_leaves, want_spec = tree_flatten(want)
    have_leaves, have_spec = tree_flatten(have)
    if want_spec != have_spec:
        return False
    for a, b in zip(want_leaves, have_leaves, strict=True):
        if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
            return False
        if not isinstance(a, torch.Tensor):
            if a != b:
                return False
        elif a.shape != b.shape or a.dtype != b.dtype or not torch.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True):
            return False
    return True


def _export_dynamic_sizes(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> Any | None:
    """Export with a symbolic batch and every other dim ``Dim.AUTO``, or None (one export attempt at most).

    A batch of 1 is traced repeated to 2 (not size-obliviously: that would let
    every size range down to 0 and make torch guard against sizes of 1
    everywhere); kept only if torch made some non-batch dim symbolic, recorded
    no equality between sizes its range constraints do not imply
    (:func:`_unranged_size_equality`), and the program reproduces the module
    on the traced and the example inputs and on other sizes
    (:func:`_checked_other_sizes`). Not tried when no input has a non-batch dim.
    """
    if not example_inputs or any(t.dim() == 0 for t in example_inputs) or all(t.dim() < 2 for t in example_inputs):
        return None
    traced = _doubled(example_inputs) if any(t.shape[0] <= 1 for t in example_inputs) else example_inputs
    return _checked_export(module, traced, example_inputs, oblivious=False, sizes=True)


def _export_dynamic_batch(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> Any | None:
    """Export with a symbolic batch size, or None when torch cannot (the caller exports statically).

    An example batch of 1 is specialised by torch (sizes 0 and 1 are
    special-cased), so such inputs are traced with ``backed_size_oblivious``;
    when torch still specialises (IBN-Net's instance norm over a split), they
    are traced once more with each size-1 batch repeated to 2. Either way the
    program is only kept if it reproduces the module's own outputs on the
    example inputs themselves (and on the repeated ones, when those were traced).
    """
    if not example_inputs or any(t.dim() == 0 for t in example_inputs):
        return None
    if not any(t.shape[0] <= 1 for t in example_inputs):
        return _checked_export(module, example_inputs, example_inputs, oblivious=False)
    return _checked_export(module, example_inputs, example_inputs, oblivious=True) or _checked_export(
        module, _doubled(example_inputs), example_inputs, oblivious=False
    )


def _checked_export(
    module: nn.Module,
    traced: tuple[torch.Tensor, ...],
    examples: tuple[torch.Tensor, ...],
    *,
    oblivious: bool,
    sizes: bool = False,
) -> Any | None:
    """``traced`` exported with a symbolic batch, kept if it reproduces the module on ``traced`` and ``examples``.

    With ``sizes`` (every other dim ``Dim.AUTO``), the program is kept only if
    torch made at least one non-batch dim symbolic and it also reproduces the
    module on inputs whose symbolic dims all differ from the example's
    (:func:`_varied_inputs`); otherwise None (the caller exports batch-only).
    """
    import torch.fx.experimental._config as fx_config  # noqa: PLC0415 - lazy: torch.fx config, export only

    try:
        with fx_config.patch(backed_size_oblivious=oblivious):  # type: ignore[attr-defined] # installed at import
            shapes = _batch_shapes(module, traced, sizes=sizes)
            ep = torch.export.export(module, _fresh(traced), dynamic_shapes=shapes)
        _leaf_parameters(ep)
        program = ep.module()
        with torch.no_grad():
            for inputs in (traced,) if traced is examples else (traced, examples):
                if not _same_outputs(module(*inputs), program(*inputs)):
                    return None
            if sizes and (_unranged_size_equality(ep) or not _checked_other_sizes(module, program, ep, examples)):
                return None
    except Exception:  # any failure means "not this export": the caller falls back (and records which it kept)
        return None
    return ep


def symbolic_dims(ep: Any) -> list[list[int]]:
    """Per user input of ``ep`` (in order), the dims its program keeps symbolic (the rest are fixed)."""
    user = set(ep.graph_signature.user_inputs)
    dims: list[list[int]] = []
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            shape = val.shape if isinstance(val, torch.Tensor) else ()
            dims.append([i for i, d in enumerate(shape) if not _fixed(d)])
    return dims


def _unranged_size_equality(ep: Any) -> bool:
    """Whether torch guarded the program on an equality of non-batch sizes its range constraints do not imply.

    The parent checks an input's fixed sizes, equal dims and ranges (torch's
    input hook) but never runs torch's other guards (they are code). A ViT's
    fixed position embeddings make torch keep H and W symbolic under
    ``(H // 4) * (W // 4) == 16``: such a program is kept batch-only. Other
    unranged guards (a feature map never of size 1) stay unchecked, as for the
    batch (docs/reconstruction.md). True also when the guards cannot be read.
    """
    import sympy  # type: ignore[import-untyped]  # noqa: PLC0415 - lazy: torch's dependency, export only
    from torch.export.exported_program import _get_shape_env  # noqa: PLC0415 - lazy: export only
    from torch.utils._sympy.value_ranges import bound_sympy  # noqa: PLC0415 - lazy: export only

    shape_env = _get_shape_env(ep.graph_module)  # type: ignore[no-untyped-call] # torch private, untyped
    if shape_env is None:
        return True
    user = set(ep.graph_signature.user_inputs)
    sizes: set[Any] = set()
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user and isinstance(node.meta.get("val"), torch.Tensor):
            sizes.update(d.node.expr for d in node.meta["val"].shape[1:] if not _fixed(d))
    for guard in shape_env.guards:
        expr = shape_env.replace(guard.expr)
        if expr is sympy.true or not isinstance(expr, sympy.Eq) or not expr.free_symbols & sizes:
            continue
        try:
            bounds = bound_sympy(expr, ep.range_constraints)
        except Exception:  # unreadable: treated as not implied
            return True
        if not (bounds.is_singleton() and bounds.lower is sympy.true):
            return True
    return False


def _fixed(size: Any) -> bool:
    """Whether a traced size is a number (a traced ``SymInt`` may still be one: size-oblivious tracing)."""
    return isinstance(size, int) or bool(size.node.expr.is_number)


#: New sizes tried for the symbolic non-batch dims, in order (a model may reject some: a UNet wants even sizes).
_OTHER_SIZES: Final[tuple[Callable[[int], int], ...]] = (lambda n: n + 1, lambda n: n + 2, lambda n: 2 * n)


def _checked_other_sizes(module: nn.Module, program: nn.Module, ep: Any, examples: tuple[torch.Tensor, ...]) -> bool:
    """Whether ``program`` equals ``module`` on inputs whose symbolic non-batch dims differ from ``examples``.

    False when torch made no non-batch dim symbolic (the batch-only export is
    then the same model, and keeps its program digest), when the program
    fails or differs on a size the module accepts, or when the module
    accepts none of the :data:`_OTHER_SIZES` (the sizes stay unchecked).
    """
    for grow in _OTHER_SIZES:
        inputs = _varied_inputs(ep, examples, grow)
        if inputs is None:
            return False
        if not inputs:
            continue  # outside the program's ranges: the next size
        try:
            want = module(*inputs)
        except Exception:  # noqa: S112 - the model rejects this size: try the next one
            continue
        return _same_outputs(want, program(*inputs))
    return False


def _varied_inputs(
    ep: Any, examples: tuple[torch.Tensor, ...], grow: Callable[[int], int]
) -> tuple[torch.Tensor, ...] | None:
    """``examples`` with every symbol of a non-batch dim set to ``grow(example size)``, its values tiled.

    None when no non-batch dim is symbolic or one is an expression rather than
    a symbol; ``()`` when a new size is outside the program's range constraints.
    """
    user = set(ep.graph_signature.user_inputs)
    shapes = [n.meta["val"].shape for n in ep.graph.nodes if n.op == "placeholder" and n.name in user]
    if len(shapes) != len(examples):
        return None
    new: dict[Any, int] = {}
    for shape, t in zip(shapes, examples, strict=True):
        for i, d in enumerate(shape):
            if i == 0 or _fixed(d):
                continue
            expr = d.node.expr
            if not expr.is_Symbol:
                return None
            new[expr] = grow(t.shape[i])
    if not new:
        return None
    for sym, size in new.items():
        bounds = ep.range_constraints.get(sym)
        if bounds is None or not bounds.lower <= size <= bounds.upper:
            return ()
    varied: list[torch.Tensor] = []
    for shape, t in zip(shapes, examples, strict=True):
        for i, d in enumerate(shape):
            to = None if _fixed(d) else new.get(d.node.expr)
            if to is not None and to != t.shape[i]:
                t = t.index_select(i, torch.arange(to) % t.shape[i])
        varied.append(t)
    return tuple(varied)


def _leaf_parameters(ep: Any) -> None:
    """Replace non-leaf parameters in ``ep.state_dict`` by detached copies (same values and flags).

    yolov5's ``fuse_conv_and_bn`` copies into a fused weight with gradients enabled, which leaves the
    model's parameter a non-leaf tensor; ``ExportedProgram.module()`` refuses to register such a
    parameter, so the dynamic-batch check failed and the export fell back to static shapes. The
    parent never sees these tensors (the state travels detached, :func:`_plain`).
    """
    state = ep.state_dict
    for name, value in list(state.items()):
        if isinstance(value, torch.Tensor) and value.grad_fn is not None:
            state[name] = nn.Parameter(value.detach(), requires_grad=value.requires_grad)


def without_metadata(program_json: bytes) -> bytes:
    """The serialised program with every graph's node metadata and the graph module's metadata emptied.

    torch writes each node's ``stack_trace`` (absolute paths of the repository's files: the tree's place in
    *this* cache), ``nn_module_stack`` and ``torch_fn`` (per-process counters) into the program. The
    parent drops all of it before rebuilding, but ``program_sha256`` covers the bytes sent: a lock pinned
    with one ``SECUREHUB_DIR`` was ``output-mismatch`` on another machine or cache for every exported
    model. Emptied here, the program is the same wherever the tree lies. Only torch's own shapes are
    touched: anything else (a program a hostile hubconf rewrote) is passed on for the parent to refuse.
    """
    program = json.loads(program_json)
    module = program.get("graph_module") if isinstance(program, dict) else None
    if not isinstance(module, dict):
        return program_json  # not torch's shape: sent as is, for the parent's checks to refuse
    graphs = [module.get("graph")]
    while graphs:
        graph = graphs.pop()
        nodes = graph.get("nodes") if isinstance(graph, dict) else None
        for node in nodes if isinstance(nodes, list) else ():
            if not isinstance(node, dict):
                continue
            node["metadata"] = {}
            inputs = node.get("inputs")
            for item in inputs if isinstance(inputs, list) else ():
                arg = item.get("arg") if isinstance(item, dict) else None
                sub = arg.get("as_graph") if isinstance(arg, dict) else None
                if isinstance(sub, dict):
                    graphs.append(sub.get("graph"))
    module["metadata"] = {}
    return json.dumps(program, separators=(",", ":")).encode()


def export_program(
    module: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    tensors: dict[str, torch.Tensor],
    aliases: dict[str, str],
    *,
    sizes: str = "batch",
) -> ExportPackage:
    """``torch.export`` the module in eval mode, serialised without pickle.

    ``torch.export.save``/``load`` (torch 2.13) are NOT used: the pt2 archive
    pickles tensors that need it and pickled constants, and
    ``deserialize_torch_artifact`` falls back to ``torch.load(weights_only=False)``.
    Instead the graph goes through ``torch._export.serde.serialize.serialize``
    with ``serialize_state_dict/constants/example_inputs=False`` (the
    ``exported_program`` part is JSON), and the state and constants go into
    ``tensors`` (the safetensors file). The parent rebuilds a
    ``SerializedArtifact(program_json, state_dict, constants, b"")`` from
    plain dicts (``deserialize_torch_artifact`` passes dicts through untouched);
    entries named in ``parameters`` must be wrapped in ``nn.Parameter``
    (the program's verifier insists).

    With ``sizes="any"`` (policy ``reconstruct.export_sizes: any``), first every other dim of every input is
    ``Dim.AUTO`` as well (:func:`_export_dynamic_sizes`: kept only when some such dim became
    symbolic and the program matches the module at the example size and at
    another); not by default: torch's deserializer then builds every tensor's symbolic sizes, which made
    the parent's rebuild of a 245-node CNN (HarDNet-68) take 2-5 s instead of 0.6 s, on every load.
    Then dim 0 of every input alone is exported as a symbolic batch size (min 1;
    a batch of 1 is traced size-obliviously, then, if torch still
    specialises it, repeated to 2), so the program accepts other batch
    sizes; if torch refuses that (the model specialises on the batch size,
    inputs disagree on dim 0, a scalar input) or the result differs from the
    module's own outputs, the export is static (example shapes only). ``ExportPackage.dynamic_batch`` says
    whether the batch is symbolic, ``dynamic_dims`` which dims of each input the program keeps symbolic.
    Every attempt traces its own copies of the inputs (:func:`_fresh`), so a failed one cannot change the next.
    """
    from torch._export.serde.serialize import serialize  # noqa: PLC0415 - lazy: torch.export, only for the export strategy

    module.eval()
    ep = (_export_dynamic_sizes(module, example_inputs) if sizes == "any" else None) or _export_dynamic_batch(
        module, example_inputs
    )
    dynamic = ep is not None
    if ep is None:
        ep = torch.export.export(module, _fresh(example_inputs))
    art = serialize(ep, serialize_state_dict=False, serialize_constants=False, serialize_example_inputs=False)
    program_json = without_metadata(art.exported_program)  # fails here, not in the parent, if it is not JSON
    state: dict[str, str] = {}
    for name, value in ep.state_dict.items():
        t = _plain(name, value)
        have = aliases.get(name, name)
        if have in tensors and tensors[have].shape == t.shape and torch.equal(tensors[have], t):
            state[name] = have
        else:
            key = m.EXPORT_STATE_PREFIX + name
            tensors[key] = t.contiguous()
            state[name] = key
    constants: dict[str, str] = {}
    for name, value in ep.constants.items():
        if not isinstance(value, torch.Tensor):
            raise ResultRefused(f"exported constant {name!r} is a {type(value).__name__}, not a tensor")
        key = m.EXPORT_CONSTANT_PREFIX + name
        tensors[key] = _plain(name, value).contiguous()
        constants[name] = key
    return ExportPackage(
        program_json, state, constants, list(ep.graph_signature.parameters), dynamic, symbolic_dims(ep)
    )
