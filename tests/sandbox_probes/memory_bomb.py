"""Probe: allocate far more than the address-space limit (no securehub imports: keeps the footprint tiny)."""

hog = []
for _ in range(1024):
    hog.append(bytearray(64 * 1024 * 1024))
