"""Leaf helpers every layer may use: atomic writes, digests, text sanitising, strict JSON, hub dir, host facts."""
