"""securehub._util.gc_pause: the collector is off inside, restored exactly after the outermost pause."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from securehub._util.gc_pause import gc_paused


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_off_inside_and_as_before_after(enabled: bool) -> None:
    (gc.enable if enabled else gc.disable)()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause ending does not switch it back on
    assert gc.isenabled() is enabled


def test_an_exception_inside_still_restores_the_collector() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads_switch_it_back_on_after_the_last() -> None:
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    with gc_paused():
        t.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread's pause is still running
    release.set()
    t.join(10)
    assert gc.isenabled()


def test_securehub_load_runs_with_the_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    import securehub.api as api

    seen: list[bool] = []
    monkeypatch.setattr(api._load, "load", lambda *a, **k: seen.append(gc.isenabled()))
    gc.enable()
    api.load("acme/none", "m", verbose=False)
    assert seen == [False] and gc.isenabled()
