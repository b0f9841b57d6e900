"""What a recorded config may name besides classes: an enumerated list of pure functions.

The ``trusted`` strategy instantiates allowlisted ``nn.Module`` classes with
recorded arguments. Some constructors take a *callable* argument
(``TransformerEncoderLayer(activation=F.gelu)``) and call it later, in the
parent, on every forward pass. Admitting "any function under a trusted
module" let a forged config pass
``torch.nn.modules.module:register_module_forward_hook`` as the activation:
the first forward installed a process-wide hook and broke every later
``nn.Linear`` in the process (issue 8, finding 3).

So callables are not admitted by module but by name, from
:data:`TRUSTED_CALLABLES`: element-wise activations and normalisations that
read their input and return a new tensor. Deliberately absent:

- anything with a global effect: hook registration (``register_*``),
  ``set_*``/``manual_seed`` (process-wide defaults and RNG state), ``load``/
  ``save``/file I/O, ``setattr``, every non-class name of
  ``torch.nn.modules.module``;
- ``torch.nn.init.*``: they overwrite the tensor they are given in place and
  most draw from the process-wide default generator, so calling one moves the
  parent's RNG state; no ``torch.nn`` constructor takes one as an argument;
- random functions (``rrelu``, ``dropout``): they also advance the global RNG;
- in-place variants (``relu_``): they rewrite the caller's tensor;
- private names (a leading ``_``), which carry no stability promise.

This is a fixed list, not a policy key: admitting a callable is a code-review
decision about what that function does, not a deployment setting.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "REFUSED_CLASS_MODULES",
    "TRUSTED_CALLABLES",
    "in_packages",
    "is_public_qualname",
    "refused_class_module",
]

_FUNCTIONAL = (
    "celu",
    "elu",
    "gelu",
    "glu",
    "hardshrink",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "leaky_relu",
    "log_softmax",
    "mish",
    "normalize",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softmin",
    "softplus",
    "softshrink",
    "softsign",
    "tanh",
    "tanhshrink",
)
_TORCH = ("celu", "relu", "selu", "sigmoid", "tanh")

#: ``module:name`` paths (as :mod:`securehub.sandbox.child.record` writes them) of the
#: only functions a config may pass as an argument. Resolved from the installed
#: package like classes are (see :func:`securehub.reconstruct.paths.resolve_installed`).
TRUSTED_CALLABLES: frozenset[str] = frozenset(
    {f"torch.nn.functional:{n}" for n in _FUNCTIONAL} | {f"torch:{n}" for n in _TORCH}
)


def is_public_qualname(qualname: str) -> bool:
    """No part of ``qualname`` starts with ``_`` (``_ConvNd``, ``Outer._Inner`` are private)."""
    return all(part and not part.startswith("_") for part in qualname.split("."))


#: Modules under ``torch.nn`` whose classes act outside the module they build, refused whatever
#: ``trusted_modules`` says: ``DistributedDataParallel.__init__`` runs collectives over the caller's
#: default process group (parameter shapes all-gathered, states broadcast to every rank: network
#: traffic and a hang of a distributed job, at load time, from a forged config);
#: ``DataParallel`` replicates onto every visible GPU; ``torch.nn.cpp.ModuleWrapper`` copies every
#: public attribute of whatever it is given. No hub model needs them to be rebuilt: unwrap the model
#: in the entrypoint (``model.module``).
REFUSED_CLASS_MODULES = ("torch.nn.parallel", "torch.nn.cpp")


def in_packages(module: str, packages: Sequence[str]) -> bool:
    """``module`` equals one of ``packages`` or is a submodule of one (``torch.nn.modules`` in ``torch.nn``)."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def refused_class_module(module: str) -> bool:
    """``module`` is one of :data:`REFUSED_CLASS_MODULES` or a submodule of one."""
    return in_packages(module, REFUSED_CLASS_MODULES)
