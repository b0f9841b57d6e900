"""Benchmarks against torch.hub. Run them all with ``python -m bench`` (or ``make bench``)."""
