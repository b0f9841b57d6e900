"""The parent's side of the sandbox: start the child, run one call over its channel, clean up."""
