"""The torch.hub-compatible API: load, list, help, load_state_dict_from_url, download_url_to_file.

torch.hub-shaped wrappers only: each calls one pipeline function, where the
steps are numbered (:mod:`securehub.pipeline.load` for ``load``: context ->
verified tree -> output guard -> result lookup -> sandbox -> admit the output
-> rebuild without running repo code -> store -> auto-lock -> one audit line).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Sequence
from typing import Any, Literal

import torch

from securehub._util.digest import args_sha256
from securehub._util.gc_pause import gc_paused
from securehub.pipeline import download as _download
from securehub.pipeline import load as _load
from securehub.pipeline import query as _query
from securehub.pipeline.context import LockArg, PolicyArg
from securehub.pipeline.sandbox_config import sandbox_config
from securehub.sandbox.example_inputs import check_example_tensors, example_tensors, format_example_inputs

__all__ = [
    "args_sha256",
    "check_example_tensors",
    "download_url_to_file",
    "example_tensors",
    "format_example_inputs",
    "help",
    "list",
    "load",
    "load_state_dict_from_url",
    "sandbox_config",
]


def load(
    repo_or_dir: str,
    model: str,
    *args: Any,
    source: str = "github",
    policy: PolicyArg = None,
    lock: LockArg = None,
    force_reload: bool = False,
    verbose: bool = True,
    example_inputs: Sequence[torch.Tensor] | Literal["auto"] | None = None,
    trust_repo: bool | str | None = None,
    skip_validation: bool = False,
    **kwargs: Any,
) -> torch.nn.Module:
    """Load ``model`` from ``repo_or_dir`` like ``torch.hub.load``, without running repo code here.

    ``*args``/``**kwargs`` go to the entrypoint and must be JSON values (they
    cross into the sandbox as JSON). torch.hub's own parameters are accepted
    and never reach the entrypoint: ``force_reload`` and ``verbose`` mean what
    they mean in torch.hub; ``trust_repo`` and ``skip_validation`` are decided
    by the policy instead, which the audit line records. ``example_inputs``:
    a tuple of tensors for the export strategy; ``None`` uses the shapes
    hub.lock records; ``"auto"`` lets the sandbox child find inputs the model
    accepts (``--example-input auto``; never served from the result cache).
    hub.lock is written (``lock.mode: auto``) only after every check passed and
    the module was rebuilt. Raises a ``SecureHubError`` subclass for every
    refusal or failure (SPEC section 9).
    """
    opts = _load.LoadOptions(
        source=source, policy=policy, lock=lock, force_reload=force_reload, verbose=verbose,
        example_inputs=example_inputs, trust_repo=trust_repo, skip_validation=skip_validation,
    )  # fmt: skip
    with gc_paused():  # a load's allocation burst would trigger full collections over torch's objects
        return _load.load(repo_or_dir, model, args, kwargs, opts)


def list(  # torch.hub's name
    repo_or_dir: str,
    *,
    source: str = "github",
    policy: PolicyArg = None,
    lock: LockArg = None,
    force_reload: bool = False,
    skip_validation: bool = False,
    trust_repo: bool | str | None = None,
    verbose: bool = True,
) -> builtins.list[str]:
    """The entrypoints ``repo_or_dir``'s hubconf defines, computed in the sandbox.

    torch.hub's ``skip_validation``/``trust_repo`` are accepted and decided by
    the policy (recorded in the audit line); ``verbose`` prints the verified
    commit and tree digest.
    """
    opts = _query.QueryOptions(source, policy, lock, force_reload, verbose, trust_repo, skip_validation)
    return _query.entrypoint_names(repo_or_dir, opts)


def help(  # torch.hub's name
    repo_or_dir: str,
    model: str,
    *,
    source: str = "github",
    policy: PolicyArg = None,
    lock: LockArg = None,
    force_reload: bool = False,
    skip_validation: bool = False,
    trust_repo: bool | str | None = None,
    verbose: bool = False,
) -> str:
    """The docstring of ``model`` in ``repo_or_dir``'s hubconf, computed in the sandbox.

    torch.hub's ``skip_validation``/``trust_repo`` are accepted and decided by
    the policy (recorded in the audit line).
    """
    opts = _query.QueryOptions(source, policy, lock, force_reload, verbose, trust_repo, skip_validation)
    return _query.entrypoint_doc(repo_or_dir, model, opts)


def load_state_dict_from_url(
    url: str,
    model_dir: str | None = None,
    map_location: Any = None,
    progress: bool = True,
    check_hash: bool = False,
    file_name: str | None = None,
    *,
    sha256: str | None = None,
    policy: PolicyArg = None,
    weights_only: bool = True,
) -> dict[str, torch.Tensor]:
    """``torch.hub.load_state_dict_from_url``, verified: lock/policy/digest, format by content, static scan.

    safetensors files are loaded with the safetensors library; pickle
    checkpoints only after a clean static scan and with
    ``torch.load(weights_only=True)`` -- in this process, or, under
    ``artifacts.pickle_in_parent: false`` (strict), only inside the sandbox,
    the tensors crossing back as safetensors. ``weights_only=False`` is refused.
    ``model_dir``: when given, a verified copy is also placed there under
    ``file_name`` (the cache itself is content-addressed). New artifacts are
    recorded (``lock.mode: auto``) only once the state dict was loaded.
    """
    opts = _download.StateDictOptions(
        model_dir, map_location, progress, check_hash, file_name, sha256, policy, weights_only
    )
    return _download.load_state_dict_from_url(url, opts)


def download_url_to_file(
    url: str,
    dst: str | os.PathLike[str],
    hash_prefix: str | None = None,
    progress: bool = True,
    *,
    sha256: str | None = None,
    policy: PolicyArg = None,
) -> None:
    """``torch.hub.download_url_to_file``, verified; ``dst`` is replaced atomically after every check."""
    _download.download_url_to_file(url, dst, hash_prefix, progress, sha256=sha256, policy=policy)
