"""Pure admission decisions: plain values in, a decision or a ``SecureHubError`` out.

Nothing here touches the network, spawns a process, reads or writes the cache
or the file system: :mod:`~securehub.trust.tree` (repo, ref, lock mode, tree
digest), :mod:`~securehub.trust.artifact` (lock entry, entrypoint URLs, hash
prefix, hosts) and :mod:`~securehub.trust.result` (child output pin, what a
result-cache entry may hold). The pipeline does the I/O and asks these.
"""
