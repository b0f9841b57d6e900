"""``load_state_dict_from_url`` and ``download_url_to_file``: one verified artifact, no repo code.

Steps: 1 context, 2 fetch through the broker (lock/policy/digest, format by
content, static scan), 3 load or place the verified bytes, 4 auto-lock (new
artifacts recorded last), 5 audit line.
"""

from __future__ import annotations

import os
import pickle  # only for the exception type torch.load raises; nothing is unpickled here
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from safetensors.torch import load_file

from securehub._util import text
from securehub._util.atomic import replace_file
from securehub.errors import FormatNotAllowed
from securehub.pipeline import autolock
from securehub.pipeline.audit_line import Audit, audited
from securehub.pipeline.broker import ArtifactBroker, Fetched
from securehub.pipeline.context import Context, PolicyArg, load_context
from securehub.pipeline.convert import convert_checkpoint
from securehub.verify.hashprefix import MIN_PREFIX_HEX, PrefixMode

__all__ = ["StateDictOptions", "download_url_to_file", "load_state_dict_from_url"]


@dataclass(frozen=True)
class StateDictOptions:
    """``load_state_dict_from_url``'s parameters after ``url`` (torch.hub's, then securehub's)."""

    model_dir: str | None = None
    map_location: Any = None
    progress: bool = True
    check_hash: bool = False
    file_name: str | None = None
    sha256: str | None = None
    policy: PolicyArg = None
    weights_only: bool = True


def load_state_dict_from_url(url: str, opts: StateDictOptions) -> dict[str, torch.Tensor]:
    """See :func:`securehub.api.load_state_dict_from_url`; new artifacts are recorded only once loaded."""
    name = opts.file_name or _url_name(url)
    audit = Audit("load_state_dict_from_url", spec=url)
    # 5. audit line
    with audited(audit):
        if opts.weights_only is False:
            # Refused before any download: full unpickling runs the file's code in this process.
            raise FormatNotAllowed(
                f"{url}: expected weights_only=True (or the argument omitted), found weights_only=False. securehub "
                "never unpickles arbitrary objects in the calling process; pickle checkpoints are loaded with "
                "weights_only=True after a static scan. Drop the argument, or ask the publisher for safetensors."
            )
        # 1. context
        ctx = load_context(opts.policy, None)
        audit.policy = ctx.policy
        # 2. fetch through the broker
        broker = ArtifactBroker(ctx, progress=opts.progress and sys.stderr.isatty())
        audit.broker = broker
        fetched = broker.fetch(
            url,
            file_name=name,
            prefix_mode=PrefixMode.CHECK_HASH if opts.check_hash else PrefixMode.ENFORCE_WHEN_PRESENT,
            sha256=opts.sha256,
        )
        # 3. load the verified bytes (and place a copy when asked)
        state = _load_state(ctx, audit, url, fetched, opts.map_location)
        if opts.model_dir is not None:
            _place_copy(fetched.path, Path(opts.model_dir) / name)
        # 4. auto-lock, last: a refused checkpoint pins nothing
        autolock.record_artifacts(ctx, broker.fetched)
        return state


def _load_state(ctx: Context, audit: Audit, url: str, fetched: Fetched, map_location: Any) -> dict[str, torch.Tensor]:
    """The verified checkpoint's tensors: safetensors directly, pickle only with ``weights_only=True``."""
    if fetched.format == "safetensors":
        device = str(map_location) if map_location is not None else "cpu"
        return load_file(str(fetched.path), device=device)
    if not ctx.policy.artifacts.pickle_in_parent:
        # strict: pickle is unpickled only inside the sandbox and crosses back as safetensors.
        converted = convert_checkpoint(
            fetched.path, policy=ctx.policy, map_location=map_location, sha256=fetched.sha256
        )
        audit.isolation = converted.isolation
        return converted.state
    try:
        state = torch.load(fetched.path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # The static scan passed, but torch's weights_only loader refused the file (torch 2.13
        # cannot read pickle protocol 4/5, for one). Never retried with weights_only=False.
        raise FormatNotAllowed(
            f"{url}: torch.load(weights_only=True) refused the checkpoint ({text.one_line(str(exc), limit=300)}); "
            "expected a checkpoint saved by torch.save with the default pickle protocol, or safetensors. "
            "Ask the publisher for a safetensors file."
        ) from None
    if not isinstance(state, dict):
        raise FormatNotAllowed(
            f"{url} holds a {type(state).__name__}, expected a state dict (a mapping of names to tensors)"
        )
    return state


def download_url_to_file(
    url: str,
    dst: str | os.PathLike[str],
    hash_prefix: str | None = None,
    progress: bool = True,
    *,
    sha256: str | None = None,
    policy: PolicyArg = None,
) -> None:
    """See :func:`securehub.api.download_url_to_file`; ``dst`` is replaced atomically after every check."""
    audit = Audit("download_url_to_file", spec=url)
    with audited(audit):
        ctx = load_context(policy, None)
        audit.policy = ctx.policy
        weak = _weak_prefix(hash_prefix, ctx)
        if weak is not None:
            audit.overrides = (weak,)
        broker = ArtifactBroker(ctx, progress=progress and sys.stderr.isatty())
        audit.broker = broker
        fetched = broker.fetch(
            url, file_name=_url_name(url), hash_prefix=hash_prefix, sha256=sha256, require_checkpoint=False,
            min_prefix_hex=0 if weak is not None else MIN_PREFIX_HEX,
        )  # fmt: skip
        _place_copy(fetched.path, Path(dst))
        autolock.record_artifacts(ctx, broker.fetched)


def _weak_prefix(hash_prefix: str | None, ctx: Context) -> str | None:
    """The audit note when a ``hash_prefix`` shorter than 8 hex digits is accepted, else None.

    torch.hub accepts any prefix (``"0e84"``, even ``""``); securehub accepts the same, still
    checked against the content, except under ``lock.mode: required`` (strict), where it keeps
    refusing one shorter than 8 digits (``artifact-not-allowed``): a 4-digit prefix is forged by
    brute force in milliseconds, so it is no integrity guarantee and the audit line says so.
    """
    if hash_prefix is None or ctx.policy.lock.mode == "required":
        return None
    lowered = hash_prefix.lower()
    if len(lowered) >= MIN_PREFIX_HEX or any(c not in "0123456789abcdef" for c in lowered):
        return None
    return (
        f"hash_prefix={text.one_line(hash_prefix)!r} ({len(lowered)} hex digits) accepted as torch.hub does and "
        f"checked, but it is no integrity guarantee (fewer than {MIN_PREFIX_HEX}); lock.mode 'required' refuses it. "
        "Pin sha256=... or lock the URL"
    )


def _url_name(url: str) -> str:
    return Path(urlsplit(url).path).name


def _place_copy(src: Path, dst: Path) -> None:
    """Copy a verified blob to ``dst`` atomically (temp file in the same dir, then rename)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as inp:
        replace_file(dst, lambda out: shutil.copyfileobj(inp, out, 1 << 20), mode=0o644)
