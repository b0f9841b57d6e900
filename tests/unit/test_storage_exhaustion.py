"""securehub._util.storage: only storage exhaustion becomes ``network``; other OSErrors pass through."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from securehub._util.storage import storage_exhaustion
from securehub.errors import NetworkError


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_storage_exhaustion_is_network_naming_what_and_where(code: int, tmp_path: Path) -> None:
    with pytest.raises(NetworkError) as info, storage_exhaustion("the thing", tmp_path):
        raise OSError(code, os.strerror(code))
    assert info.value.code == "network"
    assert f"could not write the thing to {tmp_path}" in str(info.value)
    assert f"errno {code}" in str(info.value) and "SECUREHUB_DIR" in str(info.value)


@pytest.mark.parametrize("exc", [PermissionError(errno.EACCES, "denied"), FileNotFoundError(errno.ENOENT, "gone")])
def test_other_os_errors_pass_through_unchanged(exc: OSError, tmp_path: Path) -> None:
    with pytest.raises(type(exc)) as info, storage_exhaustion("the thing", tmp_path):
        raise exc
    assert info.value is exc
