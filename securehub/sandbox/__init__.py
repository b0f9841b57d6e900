"""The confined child process that runs a repository's ``hubconf.py`` (SPEC section 6).

Layout:

- :mod:`securehub.sandbox.config` — ``SandboxConfig`` (what the child may do)
  and ``IsolationReport`` (what confinement was achieved);
- :mod:`securehub.sandbox.protocol` — framing on the parent/child channel;
  every frame from the child is hostile input;
- :mod:`securehub.sandbox.spawn` — ``launch()`` starts the child and returns a
  ``SandboxChild`` (channel, deadline, kill, exit classification);
  ``check_available()`` tells what the kernel offers;
- :mod:`securehub.sandbox._bootstrap` — trusted code run first in the child:
  confines the process (user/net/IPC namespaces, rlimits, capabilities
  dropped, no-new-privs, Landlock, seccomp), reports, then calls the entry;
- :mod:`securehub.sandbox._isolation` — the individual mechanisms (stdlib only);
- :mod:`securehub.sandbox._child_runtime` / :mod:`securehub.sandbox.session` —
  the torch.hub runtime inside the child and the parent's session over the channel.

This package imports nothing at import time, so that the child's bootstrap
stays small.
"""
