"""The securehub error tree.

Every failure securehub detects raises a subclass of :class:`SecureHubError`
carrying a stable ``code`` (SPEC section 9). Codes are part of the contract:
they appear in CLI output (``error[<code>]: ...``), in the audit log and in
audit reports, so they never change once released.

::

    SecureHubError
     ├── RefError
     │    ├── RefNotAllowed ........... ref-not-allowed
     │    ├── RefAmbiguous ............ ref-ambiguous
     │    └── RefNotFound ............. ref-not-found
     ├── RepoNotAllowed ............... repo-not-allowed
     ├── LockError
     │    ├── NotLocked ............... not-locked
     │    ├── LockInvalid ............. lock-invalid
     │    └── LockDrift ............... lock-drift
     ├── IntegrityError
     │    ├── HashMismatch ............ hash-mismatch
     │    ├── OutputMismatch .......... output-mismatch
     │    └── SignatureInvalid ........ signature-invalid
     ├── ArtifactError
     │    ├── ArtifactNotAllowed ...... artifact-not-allowed
     │    ├── UnsafePickle ............ unsafe-pickle
     │    ├── FormatNotAllowed ........ format-not-allowed
     │    └── ArchiveUnsafe ........... archive-unsafe
     ├── PolicyInvalid ................ policy-invalid      (exit code 2)
     ├── SandboxError
     │    ├── SandboxViolation ........ sandbox-violation
     │    ├── SandboxTimeout .......... sandbox-timeout
     │    ├── SandboxResource ......... sandbox-resource
     │    ├── SandboxUnavailable ...... sandbox-unavailable
     │    └── SandboxProtocol ......... sandbox-protocol
     ├── ReconstructError
     │    ├── ReconstructRefused ...... reconstruct-refused
     │    └── ReconstructMismatch ..... reconstruct-mismatch
     ├── TransportError
     │    ├── NetworkError ............ network
     │    └── OfflineError ............ offline
     └── EntrypointProblem
          ├── DependencyMissing ....... dependency-missing
          ├── EntrypointNotFound ...... entrypoint-not-found
          └── EntrypointError ......... entrypoint-error

Messages say what was expected, what was found, and what the user can do.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ALL_CODES",
    "ArchiveUnsafe",
    "ArtifactError",
    "ArtifactNotAllowed",
    "DependencyMissing",
    "EntrypointError",
    "EntrypointNotFound",
    "EntrypointProblem",
    "FormatNotAllowed",
    "HashMismatch",
    "IntegrityError",
    "LockDrift",
    "LockError",
    "LockInvalid",
    "NetworkError",
    "NotLocked",
    "OfflineError",
    "OutputMismatch",
    "PolicyInvalid",
    "ReconstructError",
    "ReconstructMismatch",
    "ReconstructRefused",
    "RefAmbiguous",
    "RefError",
    "RefNotAllowed",
    "RefNotFound",
    "RepoNotAllowed",
    "SandboxError",
    "SandboxProtocol",
    "SandboxResource",
    "SandboxTimeout",
    "SandboxUnavailable",
    "SandboxViolation",
    "SecureHubError",
    "SignatureInvalid",
    "TransportError",
    "UnsafePickle",
    "error_for_code",
]


class SecureHubError(Exception):
    """Base of every error securehub raises on purpose.

    ``code`` is the stable SPEC section 9 string; ``exit_code`` is what the
    CLI exits with (1: verification/policy failure, 2: configuration).

    ``expected``, ``found`` and ``remedy`` are optional structured copies of
    the three parts every message has (what was expected, what was found,
    what the user can do), for callers that act on them rather than parse
    the text. Guarantees: they never change the message (``str(err)`` is
    exactly the ``message`` given); each is ``None`` or a non-empty string;
    a raise site that sets one states the same thing in the message.
    """

    code: ClassVar[str] = "securehub-error"
    exit_code: ClassVar[int] = 1

    def __init__(
        self,
        message: str,
        *,
        expected: str | None = None,
        found: str | None = None,
        remedy: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected or None
        self.found = found or None
        self.remedy = remedy or None

    def __str__(self) -> str:
        return self.message

    def details(self) -> dict[str, str]:
        """The structured parts that are set, by name (``expected``, ``found``, ``remedy``); maybe empty."""
        parts = {"expected": self.expected, "found": self.found, "remedy": self.remedy}
        return {name: value for name, value in parts.items() if value is not None}


class RefError(SecureHubError):
    """A ref the resolver refused or could not find."""


class RefNotAllowed(RefError):
    code = "ref-not-allowed"


class RefAmbiguous(RefError):
    code = "ref-ambiguous"


class RefNotFound(RefError):
    code = "ref-not-found"


class RepoNotAllowed(SecureHubError):
    code = "repo-not-allowed"


class LockError(SecureHubError):
    """A problem with hub.lock itself or with what it pins."""


class NotLocked(LockError):
    code = "not-locked"


class LockInvalid(LockError):
    code = "lock-invalid"


class LockDrift(LockError):
    code = "lock-drift"


class IntegrityError(SecureHubError):
    """Bytes that do not match what was pinned or signed."""


class HashMismatch(IntegrityError):
    code = "hash-mismatch"


class OutputMismatch(IntegrityError):
    """An entrypoint's output differs from the output hub.lock pins for it (or between two lock runs)."""

    code = "output-mismatch"


class SignatureInvalid(IntegrityError):
    code = "signature-invalid"


class ArtifactError(SecureHubError):
    """An artifact or archive refused on content or policy grounds."""


class ArtifactNotAllowed(ArtifactError):
    code = "artifact-not-allowed"


class UnsafePickle(ArtifactError):
    code = "unsafe-pickle"


class FormatNotAllowed(ArtifactError):
    code = "format-not-allowed"


class ArchiveUnsafe(ArtifactError):
    code = "archive-unsafe"


class PolicyInvalid(SecureHubError):
    code = "policy-invalid"
    exit_code = 2


class SandboxError(SecureHubError):
    """The confined child misbehaved, or could not be confined."""


class SandboxViolation(SandboxError):
    code = "sandbox-violation"


class SandboxTimeout(SandboxError):
    code = "sandbox-timeout"


class SandboxResource(SandboxError):
    code = "sandbox-resource"


class SandboxUnavailable(SandboxError):
    code = "sandbox-unavailable"


class SandboxProtocol(SandboxError):
    code = "sandbox-protocol"


class ReconstructError(SecureHubError):
    """The parent could not rebuild the module safely."""


class ReconstructRefused(ReconstructError):
    code = "reconstruct-refused"


class ReconstructMismatch(ReconstructError):
    code = "reconstruct-mismatch"


class TransportError(SecureHubError):
    """Network access failed or was forbidden."""


class NetworkError(TransportError):
    code = "network"


class OfflineError(TransportError):
    code = "offline"


class EntrypointProblem(SecureHubError):
    """The repository's hubconf could not provide the entrypoint."""


class DependencyMissing(EntrypointProblem):
    code = "dependency-missing"


class EntrypointNotFound(EntrypointProblem):
    code = "entrypoint-not-found"


class EntrypointError(EntrypointProblem):
    code = "entrypoint-error"


class UsageError(ValueError):
    """A caller's misuse (a malformed argument, an impossible combination); not a SPEC section 9 code.

    A ``ValueError`` for Python callers (SPEC section 2 allows it for misuse);
    the CLI prints it as ``error[usage]`` and exits 2. The CLI catches exactly
    this class, never an arbitrary ``ValueError`` from deeper code.
    """


def _leaf_classes() -> dict[str, type[SecureHubError]]:
    out: dict[str, type[SecureHubError]] = {}
    stack: list[type[SecureHubError]] = [SecureHubError]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            stack.append(sub)
            if "code" in sub.__dict__:
                out[sub.code] = sub
    return out


_BY_CODE = _leaf_classes()

#: Every stable error code, as listed in SPEC section 9.
ALL_CODES: frozenset[str] = frozenset(_BY_CODE)


def error_for_code(code: str, message: str) -> SecureHubError:
    """Build the error class registered for ``code``.

    Used where a code crosses a boundary as data (the sandbox channel, audit
    records). An unknown code is itself a protocol problem.
    """
    cls = _BY_CODE.get(code)
    if cls is None:
        return SandboxProtocol(f"unknown error code {code!r} received; expected one of SPEC section 9")
    return cls(message)
