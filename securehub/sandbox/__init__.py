"""The confined child process that runs a repository's ``hubconf.py`` (SPEC section 6).

Layout (one subpackage per side of the process boundary):

- :mod:`securehub.sandbox.parent` -- the parent's side: ``spawn`` starts the
  child and returns a ``SandboxChild`` (channel, deadline, kill, exit
  classification; ``check_available()`` tells what the kernel offers),
  ``prepared`` starts a child ahead of its one call
  (``lock -e``'s second run), ``session`` runs one call over the channel (answers fetch and nested-load
  requests, validates the result), ``handoff`` (a broker's answer to a fetch
  request), ``cleanup`` (removes a dead child's run directory);
- :mod:`securehub.sandbox.wire` -- what crosses the channel: ``protocol``
  (framing) and ``messages`` (the schema of every message); every frame from
  the child is hostile input;
- :mod:`securehub.sandbox.child` -- runs inside the child: ``bootstrap``
  (trusted code run first: confines the process -- user/net/IPC/PID
  namespaces, rlimits, capabilities dropped, no-new-privs, Landlock,
  seccomp -- reports, then calls the entry), ``runtime`` (the torch.hub
  runtime), ``fetch``/``nested``/``convert``/``inputs``/``result``/``audit``/
  ``errors``, ``record``/``record_norms`` (constructor recording);
- :mod:`securehub.sandbox._isolation` -- the individual mechanisms (stdlib only);
- :mod:`securehub.sandbox.config` (``SandboxConfig``: what the child may do;
  ``IsolationReport``: what confinement was achieved) and
  :mod:`securehub.sandbox.example_inputs`, used by both sides.

No parent-side module imports from ``child``: the child is started as
``python -s -P -S -B securehub/sandbox/child/bootstrap.py <plan>``, and the two
sides share only ``wire``, ``config`` and ``example_inputs``.
This package and its subpackages import nothing at import time, so that the
child's bootstrap stays small.
"""
