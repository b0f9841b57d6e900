"""The error tree carries exactly the stable codes of SPEC section 9, with the CLI exit codes of section 10."""

import pytest

from securehub import errors
from securehub.errors import ALL_CODES, SecureHubError, error_for_code

SPEC_CODES = {
    "ref-not-allowed",
    "ref-ambiguous",
    "ref-not-found",
    "repo-not-allowed",
    "not-locked",
    "lock-invalid",
    "lock-drift",
    "hash-mismatch",
    "output-mismatch",
    "artifact-not-allowed",
    "unsafe-pickle",
    "format-not-allowed",
    "archive-unsafe",
    "signature-invalid",
    "policy-invalid",
    "sandbox-violation",
    "sandbox-timeout",
    "sandbox-resource",
    "sandbox-unavailable",
    "sandbox-protocol",
    "reconstruct-refused",
    "reconstruct-mismatch",
    "network",
    "offline",
    "dependency-missing",
    "entrypoint-not-found",
    "entrypoint-error",
}


def test_codes_are_exactly_spec_section_9() -> None:
    assert ALL_CODES == SPEC_CODES


@pytest.mark.parametrize("code", sorted(SPEC_CODES))
def test_each_code_has_one_class_rooted_at_securehuberror(code: str) -> None:
    err = error_for_code(code, "message")
    assert isinstance(err, SecureHubError)
    assert err.code == code
    assert str(err) == "message"
    assert err.exit_code == (2 if code == "policy-invalid" else 1)


def test_unknown_code_from_a_boundary_is_a_protocol_error() -> None:
    err = error_for_code("rm -rf", "x")
    assert err.code == "sandbox-protocol"


def test_every_exported_name_is_an_error_class() -> None:
    for name in errors.__all__:
        if name in ("ALL_CODES", "error_for_code"):
            continue
        assert issubclass(getattr(errors, name), SecureHubError), name
