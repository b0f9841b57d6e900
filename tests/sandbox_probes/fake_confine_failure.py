"""Probe: after "go", claim on stderr that confinement failed and exit with the bootstrap's status for it."""

import os
import sys

sys.stderr.write("landlock: not supported by this kernel; set sandbox.isolation: best-effort to continue\n")
sys.stderr.flush()
os._exit(85)  # EXIT_CONFINE_FAILED
