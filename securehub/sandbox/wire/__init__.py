"""What crosses the parent/child channel: frames (``protocol``) and message schemas (``messages``)."""
