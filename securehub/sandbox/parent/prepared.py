"""A sandbox child started ahead of its call, used for exactly one call.

Most of a sandbox run's fixed cost is the child's own start: confinement,
then ``import torch`` (~1.1-1.4 s). An operation that runs the sandbox several
times in a row (``securehub lock -e``: two runs per entrypoint and argument
set) can start the next run's child while the current run works, so its
``import torch`` overlaps that run instead of following it (issue 11: "a
pre-started child with torch imported, never shared between two loads").

A :class:`PreparedChild` is launched exactly like the child of
:func:`securehub.sandbox.parent.session.run_in_sandbox` (same configuration,
the same tree and its own hand-off directory granted read-only), confined
and told "go" at once; it then imports the runtime and blocks reading its
``call`` frame. Until that frame is sent it has run only the trusted
bootstrap and torch's import, never repository code, and it is never given a
second call: ``run_in_sandbox(prepared=...)`` takes it over, sends the one
call and kills it when the call ends, like any other child.

Its wall-clock limit (``sandbox.timeout_s``) is held while it waits and
starts when the call is sent (:meth:`.spawn.SandboxChild.rearm_deadline`),
so a child that waited through a long first run still gets its whole limit.
A prepared child that is never used is killed by :meth:`PreparedChild.close`
(its owner calls it in a ``with`` block or ``finally``), and with the
launching thread like every child (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import types
from pathlib import Path

from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent.spawn import DEFAULT_ENTRY, SandboxChild, launch

__all__ = ["PreparedChild"]


class PreparedChild:
    """A confined child for one later call on ``tree`` under ``config`` (see the module docstring).

    ``tree``: the hubconf's tree, granted read-only (``None``: no tree, op ``convert``).
    ``entry``/``probe_file``: as for :func:`.spawn.launch` (tests). ``hold=False``: the
    wall-clock limit runs from the launch (a child used at once, as ``run_in_sandbox`` does).
    ``warm_export``: the call may run ``torch.export`` (:func:`.spawn.launch`).
    Raises what :func:`.spawn.launch` raises (``SandboxUnavailable``).
    """

    def __init__(
        self,
        tree: Path | None,
        config: SandboxConfig,
        *,
        entry: str = DEFAULT_ENTRY,
        probe_file: Path | None = None,
        hold: bool = True,
        warm_export: bool = False,
    ) -> None:
        self.tree = tree.resolve() if tree is not None else None
        self.config = config
        self.entry = entry
        self.probe_file = probe_file
        #: Its watchdog waits for the call (:meth:`.spawn.SandboxChild.rearm_deadline` when it is sent).
        self.held = hold
        self.handoff = Path(tempfile.mkdtemp(prefix="securehub-handoff-", dir=config.tmp_parent))
        self._child: SandboxChild | None = None
        try:
            self.handoff.chmod(0o755)
            granted = (self.tree, self.handoff) if self.tree is not None else (self.handoff,)
            child_config = dataclasses.replace(config, read_paths=(*config.read_paths, *granted))
            self._child = launch(child_config, entry=entry, probe_file=probe_file, warm_export=warm_export)
            if hold:
                self._child.hold_deadline()
        except BaseException:
            self.close()
            raise

    def matches(self, tree: Path | None, config: SandboxConfig, entry: str, probe_file: Path | None) -> bool:
        """True when this child was launched for exactly this call's tree, configuration and entry."""
        resolved = tree.resolve() if tree is not None else None
        return (resolved, config, entry, probe_file) == (self.tree, self.config, self.entry, self.probe_file)

    def take(self) -> SandboxChild:
        """The child, for its one call; raises ``RuntimeError`` when it was taken or closed already."""
        child, self._child = self._child, None
        if child is None:
            raise RuntimeError("this prepared sandbox child was used or closed already; each serves one call")
        return child

    def close(self) -> None:
        """Kill the child if it was not taken, and remove the hand-off directory. Idempotent."""
        child, self._child = self._child, None
        if child is not None:
            child.close()
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.handoff)

    def __enter__(self) -> PreparedChild:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()
