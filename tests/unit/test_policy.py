"""Unit tests for securehub.config.policy: loading, validation errors, extends, sha256, helpers."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path

import pytest

from securehub.config import policy as policy_mod
from securehub.config.policy import (
    BUILTIN_POLICIES,
    ArtifactsPolicy,
    Policy,
    RefsPolicy,
    ReposPolicy,
    SandboxPolicy,
)
from securehub.errors import PolicyInvalid
from securehub.fetch.artifacts import apply_mirror

VALID_KEY = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="  # base64 of 32 bytes


def invalid(text: str, source: str = "p.yaml") -> str:
    """Load ``text`` expecting PolicyInvalid; return its message."""
    with pytest.raises(PolicyInvalid) as info:
        Policy.from_yaml(text, source=source)
    assert info.value.code == "policy-invalid"
    assert info.value.exit_code == 2
    return str(info.value)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------- built-ins


class TestBuiltins:
    def test_strict_matches_spec(self) -> None:
        p = Policy.load("strict")
        assert p.name == "strict"
        assert p.version == 1
        assert p.repos.local is False
        assert p.refs.allow == "tags"
        assert p.refs.tag_pattern == "*"
        assert p.lock.mode == "required"
        assert p.artifacts.hosts == ("*",)
        assert p.artifacts.formats == ("safetensors", "pickle")
        assert p.artifacts.max_bytes == 10737418240
        assert dict(p.artifacts.mirrors) == {}
        assert p.signatures.trusted_keys == ()
        assert (p.sandbox.network, p.sandbox.filesystem, p.sandbox.isolation) == (
            "deny",
            "confined",
            "require",
        )
        assert p.reconstruct.strategies == ("trusted", "export")
        assert p.reconstruct.trusted_modules == ("torch.nn",)
        assert not p.strategy_allowed("source")

    def test_default_matches_spec(self) -> None:
        p = Policy.load("default")
        assert p.refs.allow == "any"
        assert p.lock.mode == "auto"
        assert p.repos.local is True
        assert (p.sandbox.network, p.sandbox.filesystem, p.sandbox.isolation) == (
            "deny",
            "confined",
            "require",
        )
        assert p.reconstruct.strategies == ("trusted", "export")
        assert p.reconstruct.trusted_modules == ("torch.nn",)

    def test_permissive_matches_spec(self) -> None:
        p = Policy.load("permissive")
        assert p.refs.allow == "any"
        assert p.lock.mode == "optional"
        assert p.repos.local is True
        assert (p.sandbox.network, p.sandbox.filesystem, p.sandbox.isolation) == (
            "deny",
            "confined",
            "best-effort",
        )
        assert p.reconstruct.strategies == ("trusted", "export", "source")
        assert p.reconstruct.trusted_modules == ("torch.nn",)

    @pytest.mark.parametrize("name", BUILTIN_POLICIES)
    def test_exports_vary_only_the_batch_unless_asked(self, name: str) -> None:
        assert Policy.load(name).reconstruct.export_sizes == "batch"
        asked = Policy.from_yaml("version: 1\nreconstruct:\n  export_sizes: any\n", source="p.yaml")
        assert asked.reconstruct.export_sizes == "any"
        msg = invalid("version: 1\nreconstruct:\n  export_sizes: all\n")
        assert msg.startswith("reconstruct.export_sizes")

    @pytest.mark.parametrize("name", BUILTIN_POLICIES)
    def test_resource_limits(self, name: str) -> None:
        s = Policy.load(name).sandbox
        assert (s.memory_mb, s.cpu_s, s.timeout_s, s.max_output_mb) == (8192, 600, 900, 16384)
        assert (s.max_procs, s.max_open_files, s.max_file_mb) == (64, 1024, 16384)

    @pytest.mark.parametrize("name", BUILTIN_POLICIES)
    def test_builtins_load_from_any_cwd(self, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        reference = Policy.load(name)
        policy_mod._builtin.cache_clear()
        monkeypatch.chdir(tmp_path)
        # A file of the same name in the cwd must not shadow the built-in.
        write(tmp_path / name, "version: 1\nsandbox:\n  network: allow\n")
        loaded = Policy.load(name)
        assert loaded == reference
        assert loaded.sandbox.network == "deny"

    @pytest.mark.parametrize("name", BUILTIN_POLICIES)
    def test_builtins_ship_in_package(self, name: str) -> None:
        resource = resources.files("securehub") / "policies" / f"{name}.yaml"
        assert resource.is_file()
        text = resource.read_text(encoding="utf-8")
        assert Policy.from_yaml(text, source=f"{name}.yaml") == Policy.load(name)

    def test_defaults_equal_default_builtin(self) -> None:
        assert Policy.from_yaml("version: 1\n", source="min.yaml") == Policy.load("default")
        assert Policy() == Policy.load("default")

    def test_top_level_policies_symlink(self) -> None:
        root = Path(__file__).resolve().parents[2]
        assert (root / "policies" / "strict.yaml").resolve() == (root / "securehub/policies/strict.yaml").resolve()


# --------------------------------------------------------------------- load()


class TestLoad:
    def test_none_reads_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SECUREHUB_POLICY", "strict")
        assert Policy.load(None).name == "strict"
        assert Policy.load().lock.mode == "required"

    def test_none_without_env_is_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("SECUREHUB_POLICY", raising=False)
        assert Policy.load(None).name == "default"

    def test_env_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = write(tmp_path / "org.yaml", "version: 1\nextends: strict\nsandbox:\n  timeout_s: 60\n")
        monkeypatch.setenv("SECUREHUB_POLICY", str(path))
        p = Policy.load(None)
        assert p.name == str(path)
        assert p.sandbox.timeout_s == 60

    def test_explicit_argument_beats_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SECUREHUB_POLICY", "strict")
        assert Policy.load("permissive").name == "permissive"

    def test_policy_object_passes_through(self) -> None:
        p = Policy.load("strict")
        assert Policy.load(p) is p

    def test_path_and_pathlike(self, tmp_path: Path) -> None:
        path = write(tmp_path / "p.yaml", "version: 1\nlock:\n  mode: required\n")
        assert Policy.load(path).lock.mode == "required"
        assert Policy.load(str(path)).name == str(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.yaml"
        with pytest.raises(PolicyInvalid) as info:
            Policy.load(missing)
        assert info.value.code == "policy-invalid"
        assert info.value.exit_code == 2
        assert "found no file" in str(info.value)
        assert str(missing) in str(info.value)
        assert not missing.exists()

    def test_misspelled_builtin_is_a_missing_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        with pytest.raises(PolicyInvalid, match="strict, default, permissive"):
            Policy.load("strcit")

    def test_directory(self, tmp_path: Path) -> None:
        with pytest.raises(PolicyInvalid, match="found a directory"):
            Policy.load(tmp_path)

    def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "p.yaml"
        path.write_bytes(b"version: 1\n# \xff\xfe\n")
        with pytest.raises(PolicyInvalid, match="UTF-8"):
            Policy.load(path)

    def test_wrong_argument_type(self) -> None:
        with pytest.raises(TypeError):
            Policy.load(42)  # type: ignore[arg-type]

    def test_from_dict(self) -> None:
        p = Policy.from_dict({"version": 1, "extends": "strict", "refs": {"tag_pattern": "v*"}})
        assert p.refs.allow == "tags"
        assert p.refs.tag_pattern == "v*"
        with pytest.raises(PolicyInvalid, match="sandbox.cpu_s"):
            Policy.from_dict({"version": 1, "sandbox": {"cpu_s": True}})


# --------------------------------------------------------------------- validation errors


class TestValidation:
    def test_unknown_top_level_key_with_suggestion(self) -> None:
        msg = invalid("version: 1\nsandbx:\n  network: deny\n")
        assert msg.startswith("sandbx: ")
        assert "did you mean 'sandbox'?" in msg
        assert "(p.yaml line 2)" in msg

    def test_unknown_nested_key_with_suggestion(self) -> None:
        msg = invalid("version: 1\nsandbox:\n  network: deny\n  timeout: 10\n")
        assert msg.startswith("sandbox.timeout: ")
        assert "did you mean 'timeout_s'?" in msg
        assert "(p.yaml line 4)" in msg

    def test_nested_key_at_top_level_names_its_section(self) -> None:
        msg = invalid("version: 1\ntimeout_s: 10\n")
        assert "'timeout_s' belongs in section 'sandbox'" in msg

    def test_wrong_type_string_for_int(self) -> None:
        text = "version: 1\n# comment\n\nsandbox:\n  network: deny\n  timeout_s: ten\n"
        msg = invalid(text, source="strict.yaml")
        assert msg.startswith(
            'sandbox.timeout_s: expected an integer between 1 and 86400, found "ten" (strict.yaml line 6)'
        )

    @pytest.mark.parametrize("value", ["true", "false", "yes", "on"])
    def test_bool_is_not_an_int(self, value: str) -> None:
        msg = invalid(f"version: 1\nsandbox:\n  memory_mb: {value}\n")
        assert msg.startswith("sandbox.memory_mb: expected an integer")
        assert "found true" in msg or "found false" in msg

    def test_float_is_not_an_int(self) -> None:
        assert "found 1.5" in invalid("version: 1\nsandbox:\n  cpu_s: 1.5\n")

    def test_int_is_not_a_bool(self) -> None:
        msg = invalid("version: 1\nrepos:\n  local: 1\n")
        assert msg.startswith("repos.local: expected true or false, found 1 (p.yaml line 3)")

    def test_string_is_not_a_list(self) -> None:
        msg = invalid('version: 1\nrepos:\n  allow: "*"\n')
        assert msg.startswith('repos.allow: expected a list, found "*" (p.yaml line 3)')

    def test_section_must_be_mapping(self) -> None:
        assert invalid("version: 1\nsandbox: deny\n").startswith("sandbox: expected a mapping")
        assert invalid("version: 1\nsandbox:\n").startswith("sandbox: expected a mapping")

    @pytest.mark.parametrize(
        ("yaml_text", "path"),
        [
            ("sandbox:\n  memory_mb: 0", "sandbox.memory_mb"),
            ("sandbox:\n  cpu_s: -5", "sandbox.cpu_s"),
            ("sandbox:\n  timeout_s: 86401", "sandbox.timeout_s"),
            ("sandbox:\n  max_procs: 0", "sandbox.max_procs"),
            ("sandbox:\n  max_open_files: 3", "sandbox.max_open_files"),
            ("sandbox:\n  max_file_mb: 0", "sandbox.max_file_mb"),
            ("sandbox:\n  max_output_mb: -1", "sandbox.max_output_mb"),
            ("artifacts:\n  max_bytes: 1099511627777", "artifacts.max_bytes"),
            ("artifacts:\n  max_bytes: 0", "artifacts.max_bytes"),
            ("repos:\n  max_files: 0", "repos.max_files"),
            ("repos:\n  max_tree_bytes: -1", "repos.max_tree_bytes"),
        ],
    )
    def test_out_of_range(self, yaml_text: str, path: str) -> None:
        msg = invalid(f"version: 1\n{yaml_text}\n")
        assert msg.startswith(f"{path}: expected an integer between ")
        assert "(p.yaml line 3)" in msg

    @pytest.mark.parametrize(
        ("yaml_text", "path", "suggestion"),
        [
            ("refs:\n  allow: tag", "refs.allow", "did you mean 'tags'?"),
            ("lock:\n  mode: require", "lock.mode", "did you mean 'required'?"),
            ("sandbox:\n  network: denied", "sandbox.network", "did you mean 'deny'?"),
            ("sandbox:\n  filesystem: confine", "sandbox.filesystem", "did you mean 'confined'?"),
            ("sandbox:\n  isolation: best_effort", "sandbox.isolation", "did you mean 'best-effort'?"),
            ("artifacts:\n  formats: [pickles]", "artifacts.formats[0]", "did you mean 'pickle'?"),
            (
                "reconstruct:\n  strategies: [trusted, exprot]",
                "reconstruct.strategies[1]",
                "did you mean 'export'?",
            ),
        ],
    )
    def test_bad_enum(self, yaml_text: str, path: str, suggestion: str) -> None:
        msg = invalid(f"version: 1\n{yaml_text}\n")
        assert msg.startswith(f"{path}: expected one of ")
        assert suggestion in msg

    def test_yaml_boolean_for_enum_explained(self) -> None:
        msg = invalid("version: 1\nsandbox:\n  network: off\n")
        assert "found false" in msg
        assert "boolean" in msg

    def test_duplicate_key(self) -> None:
        msg = invalid("version: 1\nsandbox:\n  network: deny\n  cpu_s: 5\n  network: allow\n")
        assert msg.startswith("sandbox.network: expected each key once")
        assert "first on line 3" in msg
        assert "(p.yaml line 5)" in msg

    def test_duplicate_section(self) -> None:
        msg = invalid("version: 1\nsandbox: {}\nrepos: {}\nsandbox: {}\n")
        assert msg.startswith("sandbox: expected each key once")
        assert "(p.yaml line 4)" in msg

    def test_anchor_refused(self) -> None:
        msg = invalid("version: 1\nrepos:\n  allow: &orgs [a/*]\n  deny: []\n")
        assert msg.startswith("repos.allow: YAML anchor &orgs is refused")
        assert "(p.yaml line 3)" in msg

    def test_python_tag_refused(self) -> None:
        msg = invalid("version: 1\nreconstruct:\n  trusted_modules: [!!python/name:os.system '']\n")
        assert msg.startswith("reconstruct.trusted_modules[0]: expected plain YAML data")
        assert "Python object tags are refused" in msg
        assert "(p.yaml line 3)" in msg

    @pytest.mark.parametrize("tag", ["!!binary aGVsbG8=", "!!set {a: null}", "!local x", "!!omap [a: 1]"])
    def test_other_tags_refused(self, tag: str) -> None:
        msg = invalid(f"version: 1\nrefs:\n  tag_pattern: {tag}\n")
        assert msg.startswith("refs.tag_pattern: expected plain YAML data")

    def test_explicit_str_tag_is_fine(self) -> None:
        p = Policy.from_yaml("version: 1\nrefs:\n  tag_pattern: !!str 2024\n", source="p.yaml")
        assert p.refs.tag_pattern == "2024"

    def test_unquoted_date_is_text(self) -> None:
        p = Policy.from_yaml("version: 1\nrefs:\n  tag_pattern: 2024-01-01\n", source="p.yaml")
        assert p.refs.tag_pattern == "2024-01-01"

    def test_merge_key_refused(self) -> None:
        assert "merge key" in invalid("version: 1\nsandbox:\n  <<: {network: allow}\n")

    def test_non_string_key(self) -> None:
        msg = invalid("version: 1\nsandbox:\n  1: x\n")
        assert msg.startswith("sandbox: expected a string key, found 1 (read as an integer)")

    def test_empty_file(self) -> None:
        msg = invalid("")
        assert msg.startswith("(top level): expected a mapping starting with 'version: 1', found an empty document")
        assert "(p.yaml line 1)" in msg

    def test_comment_only_file(self) -> None:
        assert "found an empty document" in invalid("# nothing here\n")

    @pytest.mark.parametrize(("text", "found"), [("- a\n", "a list"), ("just text\n", '"just text"'), ("42\n", "42")])
    def test_non_mapping_document(self, text: str, found: str) -> None:
        msg = invalid(text)
        assert msg.startswith(f"(top level): expected a mapping of policy sections, found {found}")

    def test_missing_version(self) -> None:
        msg = invalid("repos: {}\n")
        assert msg.startswith("version: expected the key 'version: 1', found it missing")

    @pytest.mark.parametrize("value", ["2", "true", '"1"', "1.0"])
    def test_bad_version(self, value: str) -> None:
        assert invalid(f"version: {value}\n").startswith("version: expected 1 ")

    def test_syntax_error_names_line(self) -> None:
        msg = invalid("version: 1\nrepos:\n  allow: [a, b\n  deny: []\n")
        assert msg.startswith("(yaml): expected valid YAML, found a syntax error")
        assert re.search(r"\(p\.yaml line \d+\)", msg)

    def test_multiple_documents(self) -> None:
        assert "single document" in invalid("version: 1\n---\nversion: 1\n")

    def test_empty_strategies(self) -> None:
        msg = invalid("version: 1\nreconstruct:\n  strategies: []\n")
        assert msg.startswith("reconstruct.strategies: expected a non-empty list, found an empty list")

    def test_duplicate_strategies(self) -> None:
        msg = invalid("version: 1\nreconstruct:\n  strategies: [trusted, export, trusted]\n")
        assert msg.startswith('reconstruct.strategies[2]: expected each value once, found "trusted" twice')

    def test_empty_formats_and_duplicates(self) -> None:
        assert invalid("version: 1\nartifacts:\n  formats: []\n").startswith("artifacts.formats: expected a non-empty")
        assert "twice" in invalid("version: 1\nartifacts:\n  formats: [pickle, pickle]\n")

    @pytest.mark.parametrize(
        ("yaml_text", "path"),
        [
            ("repos:\n  allow: ['']", "repos.allow[0]"),
            ("repos:\n  deny: ['  ']", "repos.deny[0]"),
            ("refs:\n  tag_pattern: ''", "refs.tag_pattern"),
            ("artifacts:\n  hosts: ['']", "artifacts.hosts[0]"),
        ],
    )
    def test_empty_strings_refused(self, yaml_text: str, path: str) -> None:
        assert invalid(f"version: 1\n{yaml_text}\n").startswith(f"{path}: expected ")

    def test_odd_globs_are_fine(self) -> None:
        p = Policy.from_yaml("version: 1\nrepos:\n  allow: ['[unclosed', '**']\n", source="p.yaml")
        assert p.repos.allow == ("[unclosed", "**")

    @pytest.mark.parametrize("host", ["https://example.com", "example.com/path", "user@example.com", "a.com:443"])
    def test_host_glob_that_never_matches_is_refused(self, host: str) -> None:
        assert invalid(f"version: 1\nartifacts:\n  hosts: ['{host}']\n").startswith("artifacts.hosts[0]: expected")

    def test_trusted_keys(self) -> None:
        p = Policy.from_yaml(f"version: 1\nsignatures:\n  trusted_keys: ['{VALID_KEY}']\n", source="p.yaml")
        assert p.signatures.public_keys() == (__import__("base64").b64decode(VALID_KEY),)
        assert len(p.signatures.public_keys()[0]) == 32

    @pytest.mark.parametrize("key", ["AAAA", "not base64!", "A" * 44, VALID_KEY[:-4], "", 12345])
    def test_bad_trusted_keys(self, key: object) -> None:
        rendered = json.dumps(key)
        msg = invalid(f"version: 1\nsignatures:\n  trusted_keys: [{rendered}]\n")
        assert msg.startswith("signatures.trusted_keys[0]: expected the base64 of a raw 32-byte Ed25519 public key")
        assert "(p.yaml line 3)" in msg

    def test_duplicate_trusted_keys(self) -> None:
        assert "twice" in invalid(f"version: 1\nsignatures:\n  trusted_keys: ['{VALID_KEY}', '{VALID_KEY}']\n")

    def test_mirrors(self) -> None:
        p = Policy.from_yaml(
            "version: 1\nartifacts:\n  mirrors:\n"
            '    "https://download.pytorch.org/": "http://127.0.0.1:8000/"\n'
            '    "https://download.pytorch.org/models/": "https://mirror.example.com/m/"\n',
            source="p.yaml",
        )
        assert p.mirror_url("https://download.pytorch.org/x.pth") == "http://127.0.0.1:8000/x.pth"
        assert p.mirror_url("https://download.pytorch.org/models/r.pth") == "https://mirror.example.com/m/r.pth"
        assert p.mirror_url("https://other.org/x") is None

    def test_mirror_prefix_without_a_slash_matches_only_at_a_boundary(self) -> None:
        """A key without a trailing ``/`` must not rewrite a longer host name or another port: a repo-chosen
        ``https://a.org.evil.com/w.pth`` would otherwise be fetched from ``<mirror>.evil.com``."""
        p = Policy.from_yaml('version: 1\nartifacts:\n  mirrors:\n    "https://a.org": "https://m.corp"\n', source="p")
        assert p.mirror_url("https://a.org/w.pth") == "https://m.corp/w.pth"
        assert p.mirror_url("https://a.org") == "https://m.corp"
        assert p.mirror_url("https://a.org?x=1") == "https://m.corp?x=1"
        for other in ("https://a.org.evil.com/w.pth", "https://a.org:8443/w.pth", "https://a.orgx/w.pth"):
            assert p.mirror_url(other) is None
            assert apply_mirror(other, p.artifacts.mirrors) == other  # the fetcher's rewrite: the same rule
        assert apply_mirror("https://a.org/w.pth", p.artifacts.mirrors) == "https://m.corp/w.pth"

    @pytest.mark.parametrize(
        ("prefix", "target"),
        [
            ("https://a.org/", "http://evil.example/"),
            ("https://a.org/", "file:///etc/"),
            ("ftp://a.org/", "https://b.org/"),
            ("https://a.org/", ""),
            ("https://a.org/", "https://user:pw@b.org/"),
        ],
    )
    def test_bad_mirrors(self, prefix: str, target: str) -> None:
        msg = invalid(f'version: 1\nartifacts:\n  mirrors:\n    "{prefix}": "{target}"\n')
        assert msg.startswith(f'artifacts.mirrors["{prefix}"]: expected ')
        assert "(p.yaml line 4)" in msg

    def test_trusted_modules_must_be_module_names(self) -> None:
        msg = invalid("version: 1\nreconstruct:\n  trusted_modules: ['torch.nn', 'os:system']\n")
        assert msg.startswith("reconstruct.trusted_modules[1]: expected a dotted Python module name")

    def test_direct_construction_is_validated(self) -> None:
        with pytest.raises(PolicyInvalid, match=r"sandbox\.timeout_s"):
            Policy(sandbox=SandboxPolicy(timeout_s=0))
        with pytest.raises(PolicyInvalid, match=r"refs\.allow"):
            Policy(refs=RefsPolicy(allow="everything"))  # type: ignore[arg-type]
        with pytest.raises(PolicyInvalid, match=r"repos\.local"):
            Policy(repos=ReposPolicy(local=1))  # type: ignore[arg-type]

    def test_error_messages_say_what_to_do(self) -> None:
        msg = invalid("version: 1\nsandbox:\n  timeout_s: ten\n")
        assert msg.count("(p.yaml line 3); ") == 1
        assert msg.split("; ", 1)[1].strip()


# --------------------------------------------------------------------- extends


class TestExtends:
    def test_override_key_by_key(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "org.yaml",
            "version: 1\nextends: strict\nsandbox:\n  timeout_s: 60\nrepos:\n  allow: ['myorg/*']\n",
        )
        p = Policy.load(path)
        strict = Policy.load("strict")
        assert p.sandbox.timeout_s == 60
        assert p.sandbox.network == strict.sandbox.network == "deny"
        assert p.sandbox.memory_mb == strict.sandbox.memory_mb
        assert p.repos.allow == ("myorg/*",)
        assert p.repos.local is False  # from strict, not from the defaults
        assert p.lock == strict.lock
        assert p.reconstruct == strict.reconstruct
        assert p.name == str(path)

    def test_lists_replace_not_append(self, tmp_path: Path) -> None:
        path = write(tmp_path / "p.yaml", "version: 1\nextends: permissive\nreconstruct:\n  strategies: [export]\n")
        assert Policy.load(path).reconstruct.strategies == ("export",)

    def test_relative_path_resolves_against_extending_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        write(tmp_path / "conf" / "base" / "org.yaml", "version: 1\nextends: strict\nsandbox:\n  cpu_s: 30\n")
        child = write(
            tmp_path / "conf" / "team.yaml", "version: 1\nextends: base/org.yaml\nsandbox:\n  timeout_s: 40\n"
        )
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        p = Policy.load(child)
        assert (p.sandbox.cpu_s, p.sandbox.timeout_s, p.lock.mode) == (30, 40, "required")

    def test_three_levels(self, tmp_path: Path) -> None:
        write(tmp_path / "a.yaml", "version: 1\nextends: strict\nsandbox:\n  cpu_s: 10\n  timeout_s: 10\n")
        write(tmp_path / "b.yaml", "version: 1\nextends: a.yaml\nsandbox:\n  timeout_s: 20\n")
        c = write(tmp_path / "c.yaml", "version: 1\nextends: b.yaml\nlock:\n  mode: optional\n")
        p = Policy.load(c)
        assert (p.sandbox.cpu_s, p.sandbox.timeout_s, p.lock.mode, p.refs.allow) == (
            10,
            20,
            "optional",
            "tags",
        )

    def test_self_cycle(self, tmp_path: Path) -> None:
        path = write(tmp_path / "self.yaml", "version: 1\nextends: self.yaml\n")
        with pytest.raises(PolicyInvalid) as info:
            Policy.load(path)
        msg = str(info.value)
        assert msg.startswith("extends: expected a chain of policies without loops, found a cycle")
        assert "line 2" in msg

    def test_two_file_cycle(self, tmp_path: Path) -> None:
        a = write(tmp_path / "a.yaml", "version: 1\nextends: b.yaml\n")
        write(tmp_path / "b.yaml", "version: 1\n\nextends: ./a.yaml\n")
        with pytest.raises(PolicyInvalid) as info:
            Policy.load(a)
        msg = str(info.value)
        assert "found a cycle" in msg
        assert "b.yaml line 3" in msg

    def test_missing_parent(self, tmp_path: Path) -> None:
        path = write(tmp_path / "p.yaml", "version: 1\nextends: nope.yaml\n")
        with pytest.raises(PolicyInvalid) as info:
            Policy.load(path)
        msg = str(info.value)
        assert msg.startswith("extends: expected a policy file, found no file")
        assert f"({path} line 2)" in msg

    def test_error_in_parent_names_parent_file(self, tmp_path: Path) -> None:
        write(tmp_path / "base.yaml", "version: 1\nsandbox:\n  timeout_s: -1\n")
        child = write(tmp_path / "child.yaml", "version: 1\nextends: base.yaml\n")
        with pytest.raises(PolicyInvalid) as info:
            Policy.load(child)
        assert f"({tmp_path / 'base.yaml'} line 3)" in str(info.value)

    def test_child_must_still_have_version(self) -> None:
        assert invalid("extends: strict\n").startswith("version: expected the key")

    def test_extends_must_be_string(self) -> None:
        assert invalid("version: 1\nextends: [strict]\n").startswith("extends: expected a built-in policy name")

    def test_from_yaml_relative_to_source(self, tmp_path: Path) -> None:
        write(tmp_path / "base.yaml", "version: 1\nlock:\n  mode: required\n")
        p = Policy.from_yaml("version: 1\nextends: base.yaml\n", source=str(tmp_path / "inline.yaml"))
        assert p.lock.mode == "required"


# --------------------------------------------------------------------- sha256 and to_dict


class TestDigest:
    def test_sha256_is_canonical_json_of_effective_policy(self) -> None:
        p = Policy.load("strict")
        canonical = json.dumps(p.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert p.sha256 == hashlib.sha256(canonical.encode()).hexdigest()
        assert re.fullmatch(r"[0-9a-f]{64}", p.sha256)

    def test_sha256_stable(self) -> None:
        a = Policy.from_yaml(
            Path(str(resources.files("securehub") / "policies" / "strict.yaml")).read_text(), source="x"
        )
        assert a.sha256 == Policy.load("strict").sha256

    def test_sha256_ignores_name_formatting_and_extends(self, tmp_path: Path) -> None:
        path = write(tmp_path / "same.yaml", "version: 1\nextends: strict\n# just a comment\n")
        assert Policy.load(path).sha256 == Policy.load("strict").sha256

    def test_sha256_changes_with_any_value(self) -> None:
        base = Policy.load("default")
        changed = Policy.from_yaml("version: 1\nsandbox:\n  timeout_s: 901\n", source="x")
        order = Policy.from_yaml("version: 1\nreconstruct:\n  strategies: [export, trusted]\n", source="x")
        assert len({base.sha256, changed.sha256, order.sha256}) == 3

    def test_builtins_differ(self) -> None:
        assert len({Policy.load(n).sha256 for n in BUILTIN_POLICIES}) == 3

    def test_to_dict_shape(self) -> None:
        d = Policy.load("strict").to_dict()
        assert set(d) == {
            "version",
            "repos",
            "refs",
            "lock",
            "artifacts",
            "signatures",
            "sandbox",
            "reconstruct",
        }
        assert d["refs"] == {"allow": "tags", "tag_pattern": "*"}
        assert isinstance(d["artifacts"], dict)
        assert d["artifacts"]["formats"] == ["safetensors", "pickle"]
        assert d["artifacts"]["mirrors"] == {}
        json.dumps(d)  # JSON-ready
        assert Policy.from_dict(d) == Policy.load("strict")

    def test_hashable_and_frozen(self) -> None:
        p = Policy.load("strict")
        assert hash(p) == hash(Policy.load("strict"))
        with pytest.raises(AttributeError):
            p.sandbox.network = "allow"  # type: ignore[misc]


# --------------------------------------------------------------------- helpers


def make(text: str) -> Policy:
    return Policy.from_yaml("version: 1\n" + text, source="t.yaml")


class TestRepoAllowed:
    def test_default_allows_everything(self) -> None:
        assert Policy.load("default").repo_allowed("pytorch/vision")

    def test_allow_globs(self) -> None:
        p = make("repos:\n  allow: ['myorg/*', 'https://git.example.com/*']\n")
        assert p.repo_allowed("myorg/model")
        assert not p.repo_allowed("other/model")
        assert p.repo_allowed("https://git.example.com/team/m.git")
        assert not p.repo_allowed("MyOrg/model")  # allow is case-sensitive: fail closed

    def test_deny_wins(self) -> None:
        p = make("repos:\n  allow: ['*']\n  deny: ['evil/*']\n")
        assert not p.repo_allowed("evil/model")
        assert p.repo_allowed("good/model")

    def test_deny_is_case_insensitive(self) -> None:
        p = make("repos:\n  deny: ['evil/*']\n")
        assert not p.repo_allowed("EVIL/model")

    def test_deny_via_alias(self) -> None:
        p = make("repos:\n  deny: ['https://github.com/evil/*']\n")
        assert not p.repo_allowed("evil/model", "https://github.com/evil/model.git")
        assert p.repo_allowed("evil/model")

    def test_empty_allow_allows_nothing(self) -> None:
        assert not make("repos:\n  allow: []\n").repo_allowed("a/b")

    def test_empty_name(self) -> None:
        assert not Policy.load("default").repo_allowed("")


class TestHostAllowed:
    @pytest.fixture
    def policy(self) -> Policy:
        return make("artifacts:\n  hosts: ['download.pytorch.org', '*.example.com', '127.0.0.1', '::1']\n")

    @pytest.mark.parametrize(
        "host",
        [
            "download.pytorch.org",
            "DOWNLOAD.PyTorch.org",
            "download.pytorch.org:443",
            "download.pytorch.org.",
            "a.example.com",
            "x.y.example.com:8443",
            "127.0.0.1:8000",
            "[::1]:8000",
            "::1",
        ],
    )
    def test_allowed(self, policy: Policy, host: str) -> None:
        assert policy.host_allowed(host)

    @pytest.mark.parametrize(
        "host",
        [
            "example.com",
            "evil.com",
            "download.pytorch.org.evil.com",
            "",
            "https://download.pytorch.org",
            "user@download.pytorch.org",
            "download.pytorch.org:x",
            "[::1",
            "127.0.0.2",
        ],
    )
    def test_refused(self, policy: Policy, host: str) -> None:
        assert not policy.host_allowed(host)

    def test_builtins_allow_any_host(self) -> None:
        assert all(Policy.load(n).host_allowed("anything.example") for n in BUILTIN_POLICIES)


class TestRefAllowed:
    def test_strict_tags_only(self) -> None:
        p = Policy.load("strict")
        assert p.ref_allowed("v1.0", "tag")
        assert not p.ref_allowed("main", "branch")

    def test_tag_pattern(self) -> None:
        p = make("refs:\n  allow: tags\n  tag_pattern: 'v*'\n")
        assert p.ref_allowed("v1.2", "tag")
        assert not p.ref_allowed("release-1", "tag")

    def test_tag_pattern_applies_under_any(self) -> None:
        p = make("refs:\n  allow: any\n  tag_pattern: 'v*'\n")
        assert p.ref_allowed("main", "branch")
        assert not p.ref_allowed("nightly", "tag")

    def test_branches_only(self) -> None:
        p = make("refs:\n  allow: branches\n")
        assert p.ref_allowed("main", "branch")
        assert not p.ref_allowed("v1", "tag")

    def test_any(self) -> None:
        p = Policy.load("default")
        assert p.ref_allowed("main", "branch") and p.ref_allowed("v1", "tag")
        assert not p.ref_allowed("", "tag")

    def test_bad_ref_type_is_misuse(self) -> None:
        with pytest.raises(ValueError, match="ref_type"):
            Policy.load("default").ref_allowed("main", "heads")


class TestOtherHelpers:
    def test_strategy_allowed(self) -> None:
        assert Policy.load("permissive").strategy_allowed("source")
        assert not Policy.load("default").strategy_allowed("source")
        assert Policy.load("strict").strategy_allowed("trusted")
        assert not Policy.load("strict").strategy_allowed("nonsense")

    def test_format_allowed(self) -> None:
        p = make("artifacts:\n  formats: [safetensors]\n")
        assert p.format_allowed("safetensors")
        assert not p.format_allowed("pickle")

    def test_artifacts_section_direct(self) -> None:
        p = Policy(artifacts=ArtifactsPolicy(mirrors={"https://a.org/": "https://b.org/"}))  # type: ignore[arg-type]
        assert p.mirror_url("https://a.org/x") == "https://b.org/x"
        assert hash(p)


# --------------------------------------------------------------------- artifacts.pickle_in_parent


class TestPickleInParent:
    """SPEC section 8, strict: pickle only inside the sandbox -> ``pickle_in_parent: false``."""

    @pytest.mark.parametrize(("name", "expected"), [("strict", False), ("default", True), ("permissive", True)])
    def test_presets(self, name: str, expected: bool) -> None:
        assert Policy.load(name).artifacts.pickle_in_parent is expected

    def test_default_value_of_the_dataclass(self) -> None:
        assert ArtifactsPolicy().pickle_in_parent is True
        assert Policy.from_yaml("version: 1\n", source="min.yaml").artifacts.pickle_in_parent is True

    def test_extends_strict_inherits_false_and_can_override(self) -> None:
        inherited = Policy.from_yaml("version: 1\nextends: strict\n", source="x.yaml")
        assert inherited.artifacts.pickle_in_parent is False
        overridden = Policy.from_yaml(
            "version: 1\nextends: strict\nartifacts:\n  pickle_in_parent: true\n", source="x.yaml"
        )
        assert overridden.artifacts.pickle_in_parent is True
        assert overridden.sha256 != inherited.sha256

    @pytest.mark.parametrize("value", ["1", "0", '"false"', "no_thanks", "[]"])
    def test_must_be_a_bool(self, value: str) -> None:
        msg = invalid(f"version: 1\nartifacts:\n  pickle_in_parent: {value}\n")
        assert msg.startswith("artifacts.pickle_in_parent: expected true or false")
        assert "(p.yaml line 3)" in msg

    def test_wrong_type_in_code_is_refused(self) -> None:
        with pytest.raises(PolicyInvalid):
            Policy(artifacts=ArtifactsPolicy(pickle_in_parent="no"))  # type: ignore[arg-type]

    def test_in_to_dict_and_round_trip(self) -> None:
        d = Policy.load("strict").to_dict()
        assert isinstance(d["artifacts"], dict)
        assert d["artifacts"]["pickle_in_parent"] is False
        assert Policy.from_dict(d) == Policy.load("strict")

    def test_misspelling_suggests_the_key(self) -> None:
        msg = invalid("version: 1\nartifacts:\n  pickle_in_parnet: false\n")
        assert "did you mean 'pickle_in_parent'?" in msg
