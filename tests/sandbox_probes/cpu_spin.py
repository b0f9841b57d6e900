"""Probe: spin on the CPU forever (RLIMIT_CPU must end it)."""

x = 0
while True:
    x += 1
