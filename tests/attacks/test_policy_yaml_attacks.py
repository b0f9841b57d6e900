"""Attacks through the policy YAML (threats.md, "Configuration and reports").

A policy file is configuration an attacker may influence (a PR to a CI
config, a poisoned SECUREHUB_POLICY path). Each test names the attack and
asserts ``policy-invalid`` plus that nothing happened.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import securehub
from securehub.config.policy import Policy
from securehub.errors import PolicyInvalid
from tests._servers import GitServer


def refused(text: str, source: str = "evil.yaml") -> str:
    with pytest.raises(PolicyInvalid) as info:
        Policy.from_yaml(text, source=source)
    assert info.value.code == "policy-invalid"
    return str(info.value)


# ---------------------------------------------------------------- code execution through YAML tags


@pytest.mark.parametrize(
    "payload",
    [
        "!!python/object/apply:os.system ['touch {canary}']",
        "!!python/object/apply:subprocess.check_call [['touch', '{canary}']]",
        "!!python/object/new:subprocess.Popen [['touch', '{canary}']]",
        "!!python/object/apply:builtins.exec [\"open('{canary}', 'w').close()\"]",
        "!!python/name:os.system",
        "!!python/module:os",
    ],
)
def test_python_object_apply_tag_does_not_execute(tmp_path: Path, payload: str) -> None:
    canary = tmp_path / "canary"
    text = f"version: 1\nrepos: {payload.format(canary=canary)}\n"
    msg = refused(text)
    assert "Python object tags are refused" in msg
    assert "(evil.yaml line 2)" in msg
    assert not canary.exists()


def test_python_tag_in_a_key_does_not_execute(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    refused(f"version: 1\n? !!python/object/apply:os.system ['touch {canary}']\n: 1\n")
    assert not canary.exists()


def test_python_tag_in_policy_file_does_not_execute(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "p.yaml"
    path.write_text(f"version: 1\nsandbox:\n  network: !!python/object/apply:os.system ['touch {canary}']\n")
    with pytest.raises(PolicyInvalid, match=r"sandbox\.network: .*line 3"):
        Policy.load(path)
    assert not canary.exists()


def test_python_tag_in_extended_parent_does_not_execute(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    (tmp_path / "parent.yaml").write_text(f"version: 1\nrepos: !!python/object/apply:os.system ['touch {canary}']\n")
    child = tmp_path / "child.yaml"
    child.write_text("version: 1\nextends: parent.yaml\n")
    with pytest.raises(PolicyInvalid, match="parent.yaml line 2"):
        Policy.load(child)
    assert not canary.exists()


# ---------------------------------------------------------------- alias expansion bombs


BILLION_LAUGHS = """version: 1
x: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
repos:
  allow: *i
"""


@pytest.mark.timeout(20)
def test_billion_laughs_alias_bomb_refused_at_first_anchor() -> None:
    msg = refused(BILLION_LAUGHS)
    # Refused at the very first anchor (line 2): nothing was expanded or even composed past it.
    assert msg.startswith("x: YAML anchor &a is refused")
    assert "(evil.yaml line 2)" in msg
    assert "billion laughs" in msg


@pytest.mark.timeout(20)
def test_billion_laughs_inside_a_known_section_refused() -> None:
    text = "version: 1\nrepos:\n  deny: &a [x, x, x]\n  allow: [*a, *a, *a]\n"
    msg = refused(text)
    assert msg.startswith("repos.deny: YAML anchor &a is refused")


def test_alias_to_reuse_a_weaker_value_refused() -> None:
    # An alias that silently copies "allow" into the network setting of a later section.
    text = "version: 1\nrepos:\n  allow: [a]\nsandbox:\n  network: *x\n"
    msg = refused(text)
    assert msg.startswith("sandbox.network: YAML alias *x is refused")


@pytest.mark.timeout(20)
def test_deep_nesting_stack_exhaustion_refused() -> None:
    depth = 5000
    text = "version: 1\nrepos:\n  allow: " + "[" * depth + "]" * depth + "\n"
    msg = refused(text)
    assert "levels of nesting" in msg


# ---------------------------------------------------------------- typos and tricks that weaken a rule


@pytest.mark.parametrize(
    ("text", "path", "suggestion"),
    [
        ("sandbox:\n  network: deny\n  netwrok: allow\n", "sandbox.netwrok", "did you mean 'network'?"),
        ("sandbox:\n  isolaton: best-effort\n", "sandbox.isolaton", "did you mean 'isolation'?"),
        ("lock:\n  mdoe: optional\n", "lock.mdoe", "did you mean 'mode'?"),
        ("reconstruct:\n  strategy: [source]\n", "reconstruct.strategy", "did you mean 'strategies'?"),
        ("sandbox:\n  Network: allow\n", "sandbox.Network", "did you mean 'network'?"),
        ("network: allow\n", "network", "'network' belongs in section 'sandbox'"),
    ],
)
def test_typo_that_would_weaken_a_rule_refused(text: str, path: str, suggestion: str) -> None:
    msg = refused("version: 1\n" + text)
    assert msg.startswith(f"{path}: expected one of the known keys")
    assert suggestion in msg


def test_duplicate_key_last_one_wins_override_refused() -> None:
    # Plain YAML keeps the last value: a reviewer reads "deny", the loader would see "allow".
    text = "version: 1\nsandbox:\n  network: deny\n  memory_mb: 8192\n  network: allow\n"
    msg = refused(text)
    assert msg.startswith("sandbox.network: expected each key once")
    assert "(evil.yaml line 5)" in msg


def test_duplicate_section_override_refused() -> None:
    text = "version: 1\nextends: strict\nlock:\n  mode: required\nlock:\n  mode: optional\n"
    assert refused(text).startswith("lock: expected each key once")


def test_merge_key_smuggling_refused() -> None:
    assert "merge key" in refused("version: 1\nsandbox:\n  <<: {network: allow}\n  network: deny\n")


@pytest.mark.parametrize("word", ["no", "off", "false", "n"])
def test_yaml11_boolean_coercion_refused(word: str) -> None:
    # `network: no` must not be read as anything but a mistake.
    msg = refused(f"version: 1\nsandbox:\n  network: {word}\n")
    assert msg.startswith("sandbox.network: expected one of 'deny', 'allow'")


def test_true_for_a_limit_is_not_one() -> None:
    assert refused("version: 1\nsandbox:\n  max_procs: true\n").startswith("sandbox.max_procs: expected an integer")


def test_plain_http_mirror_to_remote_host_refused() -> None:
    # A downgrade: artifacts rewritten to a plain-http host an attacker on the path controls.
    text = 'version: 1\nartifacts:\n  mirrors:\n    "https://download.pytorch.org/": "http://203.0.113.5/"\n'
    assert "plain http" in refused(text)


# ---------------------------------------------------------------- reports: escape injection, size


def test_terminal_escape_injection_in_key_is_escaped() -> None:
    msg = refused('version: 1\n"\\e]0;pwned\\a\\e[2J": 1\n')
    assert "\x1b" not in msg
    assert "\x07" not in msg
    assert "\\u001b" in msg


def test_terminal_escape_injection_in_value_is_escaped() -> None:
    msg = refused('version: 1\nrefs:\n  allow: "\\e[2Jtags"\n')
    assert "\x1b" not in msg


def test_oversized_policy_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("version: 1\n" + "# padding\n" * 200_000)
    with pytest.raises(PolicyInvalid, match="bytes of policy"):
        Policy.load(path)


def test_extends_chain_loop_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("version: 1\nextends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("version: 1\nextends: a.yaml\n")
    with pytest.raises(PolicyInvalid, match="found a cycle"):
        Policy.load(tmp_path / "a.yaml")


# ---------------------------------------------------------------- characters YAML's reader refuses


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f", "\ufffe"])
def test_nonprintable_character_policy_is_policy_invalid_not_a_reader_crash(
    tmp_path: Path, char: str, github_url: str, git_server: GitServer, hub_dir: Path
) -> None:
    """A NUL or C0 control anywhere in the policy made PyYAML's reader raise ``ReaderError`` while the
    loader was being built -- outside the error mapping -- so ``load`` died with a non-securehub
    traceback (found by tests/fuzz/test_fuzz_policy.py). It is ``policy-invalid``, and nothing is
    fetched, cached or locked."""
    canary = tmp_path / "canary"
    path = tmp_path / "p.yaml"
    path.write_text(f"version: 1\nrepos: !!python/object/apply:os.system ['touch {canary}']\n{char}\n")
    lock = tmp_path / "hub.lock"
    lock.write_bytes(b"{}")
    git_server.clear_log()
    with pytest.raises(PolicyInvalid) as info:
        securehub.load("owner/repo:v1", "model", policy=str(path), lock=str(lock))
    assert info.value.code == "policy-invalid"
    assert "expected valid YAML" in str(info.value)
    assert lock.read_bytes() == b"{}"
    assert not canary.exists()
    assert git_server.connections == 0
    assert not any((hub_dir / d).exists() and any((hub_dir / d).iterdir()) for d in ("trees", "artifacts"))
