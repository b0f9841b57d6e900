"""securehub._util.deadline.time_left: the time a sandbox child has left for work done on its behalf."""

from __future__ import annotations

import time

import pytest

from securehub._util.deadline import time_left
from securehub.errors import SandboxTimeout


def test_no_deadline_means_no_bound() -> None:
    assert time_left(None, "anything") is None


def test_time_left_before_the_deadline() -> None:
    left = time_left(time.monotonic() + 30, "the download")
    assert left is not None and 29 < left <= 30


def test_a_passed_deadline_is_sandbox_timeout_naming_the_work() -> None:
    with pytest.raises(SandboxTimeout) as excinfo:
        time_left(time.monotonic() - 0.001, "the nested load of 'x'")
    assert excinfo.value.code == "sandbox-timeout"
    assert "the nested load of 'x'" in excinfo.value.message
