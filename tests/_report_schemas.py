"""Validate audit reports against the official schemas, offline.

SARIF 2.1.0: the OASIS schema vendored in tests/schemas/ (see NOTICE.md there),
checked with ``jsonschema`` (draft 4, formats checked). CycloneDX 1.6: the
schema shipped with ``cyclonedx-python-lib``, through its strict validator.
Both libraries are pinned in requirements-dev.txt. Each function returns the
list of error messages (empty: valid) so a failing test shows all of them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from jsonschema import Draft4Validator, FormatChecker

SARIF_SCHEMA_PATH = Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json"


@functools.cache
def _sarif_validator() -> Draft4Validator:
    schema = json.loads(SARIF_SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema, format_checker=FormatChecker())


def sarif_errors(doc: dict[str, Any]) -> list[str]:
    """Every violation of the SARIF 2.1.0 schema in ``doc``."""
    return [f"{list(e.absolute_path)}: {e.message}" for e in _sarif_validator().iter_errors(doc)]


@functools.cache
def _cyclonedx_validator() -> JsonStrictValidator:
    return JsonStrictValidator(SchemaVersion.V1_6)


def cyclonedx_errors(text: str) -> list[str]:
    """Every violation of the CycloneDX 1.6 JSON schema in the BOM ``text``."""
    found = _cyclonedx_validator().validate_str(text, all_errors=True)
    if found is None:
        return []
    # all_errors=True gives an iterable of errors; each error's ``data`` is jsonschema's error.
    return [str(error.data).splitlines()[0] for error in found]
