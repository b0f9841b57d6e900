"""Fuzz policy YAML (securehub/config/policy.py, securehub/config/_policy_schema.py): a Policy or ``policy-invalid``.

Inputs: the built-in default policy parsed, mutated as data (dropped, renamed, retyped
keys, huge numbers, deep nesting) and dumped back as YAML; YAML-level hostility (alias
bombs, merge keys, python tags, anchors across sections); and raw text. A policy that
validates must round-trip through ``to_dict``/``from_dict`` to the same settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

import securehub
from securehub.config.policy import Policy
from securehub.errors import PolicyInvalid
from tests.fuzz._harness import mutated, run_parser

_DEFAULT_TEXT = (Path(securehub.__file__).parent / "policies" / "default.yaml").read_text(encoding="utf-8")
_BASE: dict[str, Any] = yaml.safe_load(_DEFAULT_TEXT)
# Fuzzed text is parsed as if it were a file in a directory that does not exist, so a fuzzed
# relative `extends:` path names nothing on disk.
_SOURCE = "/nonexistent-securehub-fuzz/policy.yaml"

_BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def _policy(text: str) -> None:
    policy = run_parser("policy", lambda: Policy.from_yaml(text, source=_SOURCE), (PolicyInvalid,))
    if policy is not None:
        again = Policy.from_dict(policy.to_dict(), source=_SOURCE)
        assert again.to_dict() == policy.to_dict()


@given(mutated(_BASE, max_mutations=4))
def test_fuzz_policy_mutated_documents(doc: Any) -> None:
    _policy(yaml.safe_dump(doc, allow_unicode=True))


_YAML_SNIPPETS = st.sampled_from(
    [
        "version: 1\n",
        "version: 2\n",
        "version: 1.0\n",
        "version: !!python/object/apply:os.system ['id']\n",
        "extends: strict\n",
        "extends: /etc/passwd\n",
        "extends: ../../x\n",
        "extends: [strict]\n",
        "repos: &r {allow: ['*']}\n",
        "refs: *r\n",
        "<<: {version: 1}\n",
        "lock: {mode: required, <<: *r}\n",
        "sandbox: {memory_mb: 99999999999999999999999}\n",
        "sandbox: {cpu_s: -1}\n",
        "sandbox: {timeout_s: .inf}\n",
        "artifacts: {hosts: [!!binary aGVsbG8=]}\n",
        "artifacts: {mirrors: {a: b, a: c}}\n",
        "reconstruct: {strategies: [source, source]}\n",
        "? [a, b]\n: 1\n",
        "--- \n",
        "...\n",
        "%YAML 1.1\n---\n",
        "\t- x\n",
        "a: 2001-12-14t21:59:43.10-05:00\n",
        "signatures: {trusted_keys: [AAAA]}\n",
        "\x00\n",
        "\ufeff",
        "[" * 200 + "]" * 200 + "\n",
        "{" * 50 + "\n",
        "x: !<tag:yaml.org,2002:python/name:os.system> y\n",
    ]
)


@given(st.lists(_YAML_SNIPPETS, max_size=8).map("".join))
@example(_BILLION_LAUGHS)
@example("version: 1\n\x00\n")  # ReaderError escaped Policy.from_yaml (fixed in _policy_schema.parse_yaml)
@example("version: 1\n" + "repos:\n  allow: " + "[" * 3000 + "]" * 3000 + "\n")
@example("version: 1\nrefs: {tag_pattern: '" + "*" * 10_000 + "'}\n")
def test_fuzz_policy_yaml_snippets(text: str) -> None:
    _policy(text)


@given(st.text(max_size=300))
def test_fuzz_policy_random_text(text: str) -> None:
    _policy(text)
