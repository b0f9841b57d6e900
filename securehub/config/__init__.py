"""The trust inputs as data: the policy (model + YAML schema) and hub.lock (model + parser)."""
