"""Import a generated repository's ``hubconf.py`` in this process the way the sandbox child does.

Used to build the reference model a load through securehub must equal: the files are written
under ``root/<random>``, the tree goes first on ``sys.path``, every RNG is seeded right before the
import (where the child seeds), and everything is undone on exit (``sys.path``, the modules the
import added, the patched torch.hub functions).
"""

from __future__ import annotations

import importlib.util
import io
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.hub

from securehub._util.determinism import fixed_threads, seed_all

__all__ = ["imported_like_the_child"]


@contextmanager
def imported_like_the_child(
    files: Mapping[str, str | bytes], root: Path, blobs: Mapping[str, bytes] | None = None
) -> Iterator[Any]:
    """The imported ``hubconf`` module of ``files``; with ``blobs`` (url -> bytes), torch.hub's
    ``load_state_dict_from_url`` and ``download_url_to_file`` are answered from them (no network)."""
    tree = root / uuid.uuid4().hex
    tree.mkdir(parents=True)
    for name, text in files.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    name = f"_securehub_hubconf_{uuid.uuid4().hex}"
    with ExitStack() as stack:
        stack.enter_context(fixed_threads())  # the child's torch thread count: reductions' bits follow it
        if blobs is not None:
            answers = blobs

            def load_state_dict_from_url(url: str, *args: Any, map_location: Any = None, **kwargs: Any) -> Any:
                return torch.load(io.BytesIO(answers[url]), map_location=map_location, weights_only=True)

            def download_url_to_file(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
                Path(dst).write_bytes(answers[url])

            stack.enter_context(mock.patch.object(torch.hub, "load_state_dict_from_url", load_state_dict_from_url))
            stack.enter_context(mock.patch.object(torch.hub, "download_url_to_file", download_url_to_file))
        try:
            sys.path.insert(0, str(tree))
            spec = importlib.util.spec_from_file_location(name, tree / "hubconf.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            seed_all()  # where the child seeds: before importing hubconf.py (and again before the call)
            spec.loader.exec_module(module)
            yield module
        finally:
            sys.path[:] = saved_path
            for key in set(sys.modules) - saved_modules:
                del sys.modules[key]
