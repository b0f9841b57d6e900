"""SecureHubError's structured fields: expected, found, remedy (issue 9).

They are optional, keyword-only, never change the message, and the raise
sites that set them say the same thing in the message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from securehub.config.lockfile import Lockfile
from securehub.errors import ALL_CODES, LockInvalid, RefNotAllowed, SecureHubError, error_for_code
from securehub.resolve.spec import parse_spec
from securehub.trust.tree import check_resolved_ref_allowed


def test_fields_default_to_none_and_leave_the_message_alone() -> None:
    err = SecureHubError("expected X, found Y; do Z")
    assert (err.expected, err.found, err.remedy) == (None, None, None)
    assert str(err) == err.message == "expected X, found Y; do Z"
    assert err.args == ("expected X, found Y; do Z",)
    assert err.details() == {}


def test_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        SecureHubError("m", "X")  # type: ignore[misc]


def test_given_fields_are_kept_and_listed_by_details() -> None:
    err = RefNotAllowed("expected a tag, found branch 'main'; use a tag", expected="a tag", found="branch 'main'")
    assert (err.code, err.expected, err.found, err.remedy) == ("ref-not-allowed", "a tag", "branch 'main'", None)
    assert str(err) == "expected a tag, found branch 'main'; use a tag"
    assert err.details() == {"expected": "a tag", "found": "branch 'main'"}


def test_an_empty_string_counts_as_not_given() -> None:
    assert SecureHubError("m", expected="", found="", remedy="").details() == {}


@pytest.mark.parametrize("code", sorted(ALL_CODES))
def test_every_code_class_accepts_the_fields(code: str) -> None:
    cls = type(error_for_code(code, "m"))
    err = cls("m", expected="e", found="f", remedy="r")
    assert (str(err), err.code, err.details()) == ("m", code, {"expected": "e", "found": "f", "remedy": "r"})


def _parts_in_message(err: SecureHubError) -> None:
    assert err.details().keys() == {"expected", "found", "remedy"}
    for value in err.details().values():
        assert value.lower() in str(err).lower(), f"{value!r} is not stated in the message {str(err)!r}"


def test_resolver_branch_under_a_tags_only_policy_is_structured() -> None:
    with pytest.raises(RefNotAllowed) as info:
        check_resolved_ref_allowed(parse_spec("owner/repo:main").key, "main", "branch", "tags", "*")
    assert info.value.expected == "a tag (refs.allow: tags)"
    assert info.value.found == "branch 'main'"
    assert info.value.remedy is not None and info.value.remedy.lower() in str(info.value).lower()


def test_resolver_tag_outside_the_pattern_is_structured() -> None:
    with pytest.raises(RefNotAllowed) as info:
        check_resolved_ref_allowed(parse_spec("owner/repo:rc1").key, "rc1", "tag", "tags", "v*")
    assert info.value.expected == "a tag matching refs.tag_pattern 'v*'"
    assert info.value.found == "tag 'rc1'"


def test_missing_lock_file_is_structured(tmp_path: Path) -> None:
    with pytest.raises(LockInvalid) as info:
        Lockfile.load(tmp_path / "hub.lock")
    assert (info.value.expected, info.value.found) == ("a lock file", "none")
    _parts_in_message(info.value)


def test_unparseable_lock_is_structured() -> None:
    with pytest.raises(LockInvalid) as info:
        Lockfile.parse(b'{"version": 1,', source="hub.lock")
    assert info.value.expected == "valid JSON"
    assert info.value.found is not None and "line 1" in info.value.found
    assert info.value.remedy == "fix the syntax or regenerate the lock with `securehub lock`"
