"""Rebuilding the ``nn.Module`` in the parent: the trusted, export and source strategies (SPEC section 7)."""
