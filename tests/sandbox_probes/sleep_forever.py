"""Probe: sleep past the wall-clock deadline (only the parent's watchdog can end it)."""

import time

time.sleep(3600)
