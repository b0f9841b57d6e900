"""Probe: ignore SIGXCPU and spin (the hard RLIMIT_CPU, SIGKILL, must end it)."""

import signal

signal.signal(signal.SIGXCPU, signal.SIG_IGN)
x = 0
while True:
    x += 1
