"""hub.lock model: canonical bytes, strict parsing with positions, immutability, atomic save."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import random
import stat

import pytest

from securehub.config.lockfile import (
    ArtifactEntry,
    EntrypointEntry,
    InputSpec,
    Lockfile,
    RepoEntry,
    Signature,
)
from securehub.errors import LockInvalid

URL1 = "https://download.example.org/models/resnet18-f37072fd.pth"
URL2 = "https://download.example.org/models/resnet50-0676ba61.safetensors"
COMMIT = "1" * 40
TREE = "2" * 64
SHA1 = "a" * 64
SHA2 = "b" * 64


def sample_lock() -> Lockfile:
    return (
        Lockfile.empty()
        .with_artifact(URL1, ArtifactEntry(sha256=SHA1, size=46830571))
        .with_artifact(URL2, ArtifactEntry(sha256=SHA2, size=0))
        .with_repo(
            "owner/repo:v1.2",
            RepoEntry(
                remote="https://github.com/owner/repo.git",
                ref="v1.2",
                ref_type="tag",
                commit=COMMIT,
                tree_sha256=TREE,
            ),
        )
        .with_entrypoint(
            "owner/repo:v1.2",
            "resnet18",
            EntrypointEntry(
                artifacts=(URL1, URL2),
                example_inputs=(InputSpec(shape=(1, 3, 224, 224), dtype="float32"),),
                args={"pretrained": True, "layers": [1, 2, {"x": None}]},
            ),
        )
    )


SAMPLE_TEXT = sample_lock().to_bytes().decode()


# --------------------------------------------------------------------------- canonical bytes


def test_canonical_form_is_sorted_two_space_indented_with_trailing_newline() -> None:
    data = sample_lock().to_bytes()
    obj = json.loads(data)
    assert data == (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    assert data.endswith(b"}\n")
    assert obj["version"] == 1
    assert obj["repos"]["owner/repo:v1.2"]["entrypoints"]["resnet18"]["example_inputs"] == [
        {"shape": [1, 3, 224, 224], "dtype": "float32"}
    ]


def test_parse_then_serialise_is_byte_identical() -> None:
    data = sample_lock().to_bytes()
    assert Lockfile.parse(data).to_bytes() == data
    assert Lockfile.parse(data) == sample_lock()


def test_reindented_input_reserialises_to_the_canonical_bytes() -> None:
    data = sample_lock().to_bytes()
    compact = json.dumps(json.loads(data), separators=(",", ":")).encode()
    assert Lockfile.parse(compact).to_bytes() == data


def test_insertion_order_does_not_change_bytes() -> None:
    a = sample_lock()
    repo = a.repo("owner/repo:v1.2")
    assert repo is not None
    b = (
        Lockfile.empty()
        .with_repo("owner/repo:v1.2", dataclasses.replace(repo, entrypoints={}))
        .with_artifact(URL2, ArtifactEntry(sha256=SHA2, size=0))
        .with_artifact(URL1, ArtifactEntry(sha256=SHA1, size=46830571))
        .with_entrypoint(
            "owner/repo:v1.2",
            "resnet18",
            EntrypointEntry(
                artifacts=(URL2, URL1),  # reversed fetch order
                example_inputs=(InputSpec(shape=(1, 3, 224, 224), dtype="float32"),),
                args={"layers": [1, 2, {"x": None}], "pretrained": True},
            ),
        )
    )
    assert a.to_bytes() == b.to_bytes()
    assert a == b


def _random_lock(rng: random.Random) -> Lockfile:
    def hexd(n: int) -> str:
        return "".join(rng.choice("0123456789abcdef") for _ in range(n))

    def json_value(depth: int = 0) -> object:
        kind = rng.randrange(7 if depth < 3 else 4)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice([True, False])
        if kind == 2:
            return rng.randrange(-(10**12), 10**12)
        if kind == 3:
            return rng.choice(["", "plain", "ünïcödé ✓", 'quote " and \\ slash', "tab\tnl\n", "\u2028"])
        if kind == 4:
            return rng.uniform(-1e6, 1e6)
        if kind == 5:
            return [json_value(depth + 1) for _ in range(rng.randrange(4))]
        return {f"k{rng.randrange(100)}é": json_value(depth + 1) for _ in range(rng.randrange(4))}

    lock = Lockfile(extra={f"x-top{i}": json_value() for i in range(rng.randrange(3))})
    urls = [f"https://h{rng.randrange(5)}.example/p/{i}-{hexd(8)}.bin" for i in range(rng.randrange(6))]
    for url in urls:
        lock = lock.with_artifact(url, ArtifactEntry(sha256=hexd(64), size=rng.randrange(10**12)))
    for r in range(rng.randrange(5)):
        key = rng.choice([f"o{r}/repo:v{r}", f"git+https://git.example/o{r}/ré.git@t{r}", f"o{r}/r"])
        eps = {}
        for e in range(rng.randrange(4)):
            eps[f"model_{e}"] = EntrypointEntry(
                artifacts=tuple(rng.sample(urls, rng.randrange(len(urls) + 1))),
                example_inputs=rng.choice(
                    [None, (), (InputSpec((rng.randrange(9), 3), rng.choice(["float32", "int64", "bool"])),)]
                ),
                args=rng.choice([None, {}, {"a": json_value()}]),
            )
        lock = lock.with_repo(
            key,
            RepoEntry(
                remote=f"https://git.example/o{r}/r.git",
                ref=f"v{r}",
                ref_type=rng.choice(["branch", "tag"]),
                commit=hexd(rng.choice([40, 64])),
                tree_sha256=hexd(64),
                entrypoints=eps,
                extra={f"x-repo{i}": json_value() for i in range(rng.randrange(2))},
            ),
        )
    if rng.random() < 0.5:
        lock = lock.with_signature(Signature(keyid=hexd(64), alg="ed25519", sig="c2ln"))
    return lock


@pytest.mark.parametrize("seed", range(40))
def test_property_roundtrip_is_byte_identical_for_random_shapes(seed: int) -> None:
    lock = _random_lock(random.Random(seed))
    data = lock.to_bytes()
    parsed = Lockfile.parse(data)
    assert parsed == lock
    assert parsed.to_bytes() == data
    assert parsed.canonical_unsigned_bytes() == lock.canonical_unsigned_bytes()
    # Rebuilding from scratch in reverse order gives the same bytes.
    rebuilt = Lockfile(extra=dict(reversed(list(lock.extra.items()))), signature=lock.signature)
    for url, art in reversed(list(lock.artifacts.items())):
        rebuilt = rebuilt.with_artifact(url, art)
    for key, repo in reversed(list(lock.repos.items())):
        rebuilt = rebuilt.with_repo(key, repo)
    rebuilt = rebuilt.with_signature(lock.signature) if lock.signature else rebuilt
    assert rebuilt.to_bytes() == data


def test_unsigned_bytes_omit_only_the_signature() -> None:
    signed = sample_lock().with_signature(Signature(keyid="f" * 64, alg="ed25519", sig="AAAA"))
    assert b'"signature"' in signed.to_bytes()
    assert b'"signature"' not in signed.canonical_unsigned_bytes()
    assert signed.canonical_unsigned_bytes() == sample_lock().to_bytes()


# --------------------------------------------------------------------------- immutability & updates


def test_instances_are_deeply_frozen() -> None:
    lock = sample_lock()
    with pytest.raises(dataclasses.FrozenInstanceError):
        lock.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        lock.repos["evil"] = lock.repos["owner/repo:v1.2"]  # type: ignore[index]
    with pytest.raises(TypeError):
        lock.artifacts[URL1] = ArtifactEntry(sha256=SHA2, size=1)  # type: ignore[index]
    ep = lock.repos["owner/repo:v1.2"].entrypoints["resnet18"]
    assert ep.args is not None
    layers = ep.args["layers"]
    assert isinstance(layers, tuple)
    with pytest.raises(TypeError):
        layers[2]["x"] = 1  # type: ignore[index]


def test_constructor_copies_inputs() -> None:
    artifacts = {URL1: ArtifactEntry(sha256=SHA1, size=1)}
    lock = Lockfile(artifacts=artifacts)
    artifacts[URL2] = ArtifactEntry(sha256=SHA2, size=2)
    assert lock.artifact(URL2) is None
    args: dict[str, object] = {"xs": [1]}
    ep = EntrypointEntry(args=args)  # type: ignore[arg-type]
    args["xs"].append(2)  # type: ignore[attr-defined]
    assert ep.args == {"xs": (1,)}


def test_functional_updates_leave_the_original_alone_and_drop_the_signature() -> None:
    signed = sample_lock().with_signature(Signature(keyid="f" * 64, alg="ed25519", sig="AAAA"))
    updated = signed.with_artifact("https://x.example/new.bin", ArtifactEntry(sha256=SHA2, size=3))
    assert signed.artifact("https://x.example/new.bin") is None
    assert signed.signature is not None
    assert updated.signature is None
    assert updated.artifact("https://x.example/new.bin") == ArtifactEntry(sha256=SHA2, size=3)
    assert signed.with_repo("a/b:v1", signed.repos["owner/repo:v1.2"]).signature is None
    assert signed.without_signature() == sample_lock()
    with pytest.raises(KeyError):
        signed.with_entrypoint("missing/repo:v1", "m", EntrypointEntry())


def test_lookups() -> None:
    lock = sample_lock()
    assert lock.repo("owner/repo:v1.2") is not None
    assert lock.repo("owner/repo:v9") is None
    assert lock.artifact(URL1) == ArtifactEntry(sha256=SHA1, size=46830571)
    assert lock.artifact("https://nope.example/x") is None
    assert Lockfile.empty().to_bytes() == b'{\n  "artifacts": {},\n  "repos": {},\n  "version": 1\n}\n'


@pytest.mark.parametrize(
    "build",
    [
        lambda: ArtifactEntry(sha256="A" * 64, size=1),
        lambda: ArtifactEntry(sha256=SHA1, size=-1),
        lambda: ArtifactEntry(sha256=SHA1, size=True),
        lambda: InputSpec(shape=(1, -3), dtype="float32"),
        lambda: InputSpec(shape=(1,), dtype="float"),
        lambda: EntrypointEntry(artifacts=(URL1, URL1)),
        lambda: RepoEntry(remote="r", ref="v1", ref_type="tag", commit="abc", tree_sha256=TREE),
        lambda: RepoEntry(remote="r", ref="tags/v1", ref_type="tag", commit=COMMIT, tree_sha256=TREE),
        lambda: RepoEntry(remote="r", ref="v1", ref_type="sha", commit=COMMIT, tree_sha256=TREE),  # type: ignore[arg-type]
        lambda: Lockfile(version=2),
        lambda: Lockfile(extra={"repos": {}}),
    ],
)
def test_constructors_refuse_invalid_values(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_serialising_an_entrypoint_with_an_unpinned_artifact_is_refused() -> None:
    lock = sample_lock().with_entrypoint(
        "owner/repo:v1.2", "other", EntrypointEntry(artifacts=("https://unpinned.example/x",))
    )
    with pytest.raises(ValueError, match="does not pin"):
        lock.to_bytes()


# --------------------------------------------------------------------------- strict parsing


def _mutate(old: str, new: str, text: str = SAMPLE_TEXT) -> tuple[bytes, int]:
    """Replace ``old`` once; return the bytes and the line where the change landed."""
    assert text.count(old) == 1, old
    line = text[: text.index(old)].count("\n") + 1
    return text.replace(old, new).encode(), line


def _add_after(anchor: str, addition: str) -> tuple[bytes, int]:
    data, line = _mutate(anchor, anchor + addition)
    return data, line + anchor.count("\n") + addition.startswith("\n")


def _edit(fn: object, marker: str) -> tuple[bytes, int]:
    """Apply ``fn`` to the sample as JSON; return canonical bytes and the line of ``marker``."""
    obj = json.loads(SAMPLE_TEXT)
    fn(obj)  # type: ignore[operator]
    text = json.dumps(obj, sort_keys=True, indent=2) + "\n"
    return text.encode(), text[: text.index(marker)].count("\n") + 1


def _ep(obj: dict) -> dict:  # type: ignore[type-arg]
    return obj["repos"]["owner/repo:v1.2"]["entrypoints"]["resnet18"]  # type: ignore[no-any-return]


MALFORMED = {
    "commit-short": (
        _mutate(f'"commit": "{COMMIT}"', '"commit": "1234567"'),
        'repos["owner/repo:v1.2"].commit',
    ),
    "commit-uppercase": (_mutate(f'"commit": "{COMMIT}"', f'"commit": "{"A" * 40}"'), ".commit"),
    "commit-41": (_mutate(f'"commit": "{COMMIT}"', f'"commit": "{"1" * 41}"'), ".commit"),
    "commit-number": (_mutate(f'"commit": "{COMMIT}"', '"commit": 7'), ".commit"),
    "tree-sha-40": (_mutate(f'"tree_sha256": "{TREE}"', f'"tree_sha256": "{"2" * 40}"'), ".tree_sha256"),
    "ref-type-commit": (_mutate('"ref_type": "tag"', '"ref_type": "commit"'), ".ref_type"),
    "ref-heads-prefix": (_mutate('"ref": "v1.2"', '"ref": "heads/v1.2"'), ".ref"),
    "ref-tags-prefix": (_mutate('"ref": "v1.2"', '"ref": "tags/v1.2"'), ".ref"),
    "ref-empty": (_mutate('"ref": "v1.2"', '"ref": ""'), ".ref"),
    "remote-git-plus": (
        _mutate('"remote": "https://github.com/owner/repo.git"', '"remote": "git+https://github.com/o/r.git"'),
        ".remote",
    ),
    # Trojan Source in a reviewed hub.lock: a remote that reads as another (bidi override, zero-width space).
    "remote-bidi-override": (
        _mutate('"remote": "https://github.com/owner/repo.git"', '"remote": "https://github.com/owner/\\u202eog.repo"'),
        ".remote",
    ),
    "remote-zero-width": (
        _mutate(
            '"remote": "https://github.com/owner/repo.git"', '"remote": "https://git\\u200bhub.com/owner/repo.git"'
        ),
        ".remote",
    ),
    "size-negative": (_mutate('"size": 46830571', '"size": -1'), f'artifacts["{URL1}"].size'),
    "size-bool": (_mutate('"size": 46830571', '"size": true'), ".size"),
    "size-float": (_mutate('"size": 46830571', '"size": 1.5'), ".size"),
    "size-string": (_mutate('"size": 46830571', '"size": "46830571"'), ".size"),
    "sha256-uppercase": (_mutate(f'"sha256": "{SHA1}"', f'"sha256": "{"A" * 64}"'), ".sha256"),
    "sha256-missing": (
        _edit(lambda o: o["artifacts"][URL1].pop("sha256"), f'"{URL1}": {{'),
        f'artifacts["{URL1}"]',
    ),
    "artifact-unknown-field": (_add_after(f'"sha256": "{SHA1}",', '\n"sha512": "x",'), ".sha512"),
    "artifact-not-object": (
        _mutate(f'"{URL2}": {{\n      "sha256": "{SHA2}",\n      "size": 0\n    }}', f'"{URL2}": "{SHA2}"'),
        f'artifacts["{URL2}"]',
    ),
    "artifact-key-not-url": (_mutate(f'"{URL2}": {{', '"resnet50.safetensors": {'), 'artifacts["resnet50'),
    "entrypoint-unknown-field": (_add_after('"resnet18": {', '\n"artifact": [],'), ".artifact"),
    "entrypoint-name-not-identifier": (_mutate('"resnet18": {', '"resnet-18; rm": {'), "entrypoints["),
    "entrypoint-unpinned-artifact": (
        _mutate(f'"{URL2}"\n', '"https://evil.example/x.pth"\n'),
        'entrypoints["resnet18"].artifacts[1]',
    ),
    "entrypoint-duplicate-artifact": (_mutate(f'"{URL2}"\n', f'"{URL1}"\n'), ".artifacts[1]"),
    "entrypoint-artifacts-string": (
        _edit(lambda o: _ep(o).update(artifacts=URL1), f'"artifacts": "{URL1}"'),
        ".artifacts",
    ),
    "input-bad-dtype": (_mutate('"dtype": "float32"', '"dtype": "object"'), ".example_inputs[0].dtype"),
    "input-negative-dim": (
        _mutate('"shape": [\n                1,', '"shape": [\n                -1,'),
        ".shape",
    ),
    "input-unknown-field": (_add_after('"dtype": "float32",', ' "device": "cuda",'), ".device"),
    "args-not-object": (_edit(lambda o: _ep(o).update(args=[1]), '"args"'), ".args"),
    "inputs-not-list": (
        _edit(lambda o: _ep(o).update(example_inputs={}), '"example_inputs"'),
        ".example_inputs",
    ),
    "entrypoints-list": (
        _edit(lambda o: o["repos"]["owner/repo:v1.2"].update(entrypoints=[]), '"entrypoints"'),
        ".entrypoints",
    ),
    "version-2": (_mutate('"version": 1', '"version": 2'), "version"),
    "version-string": (_mutate('"version": 1', '"version": "1"'), "version"),
    "version-bool": (_mutate('"version": 1', '"version": true'), "version"),
    "repos-list": (_edit(lambda o: o.update(repos=[]), '"repos"'), "repos"),
    "repo-missing-commit": (
        _edit(lambda o: o["repos"]["owner/repo:v1.2"].pop("commit"), '"owner/repo:v1.2": {'),
        'repos["owner/repo:v1.2"]',
    ),
    "signature-unknown-field": (
        _mutate('"version": 1', '"signature": {"keyid": "k", "alg": "ed25519", "sig": "s", "x": 1},\n"version": 1'),
        "signature",
    ),
    "signature-empty-sig": (
        _mutate('"version": 1', '"signature": {"keyid": "k", "alg": "ed25519", "sig": ""},\n"version": 1'),
        "signature.sig",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_malformation_is_lock_invalid_with_path_and_line(case: str) -> None:
    (data, line), path = MALFORMED[case]
    with pytest.raises(LockInvalid) as info:
        Lockfile.parse(data, source="some/hub.lock")
    err = info.value
    assert err.code == "lock-invalid"
    assert str(err).startswith(f"some/hub.lock line {line} column ")
    assert path in str(err)
    assert "expected" in str(err)


@pytest.mark.parametrize(
    ("case", "data", "line", "column"),
    [
        ("missing-comma", b'{\n  "version": 1\n  "repos": {}\n}\n', 3, 3),
        ("trailing-comma", b'{\n  "version": 1,\n}\n', 3, 1),
        ("truncated", SAMPLE_TEXT[:200].encode(), SAMPLE_TEXT[:200].count("\n") + 1, None),
        ("nan", b'{"version": 1, "x": NaN}', None, None),
        ("empty", b"", 1, 1),
    ],
)
def test_json_syntax_errors_report_line_and_column(
    case: str, data: bytes, line: int | None, column: int | None
) -> None:
    with pytest.raises(LockInvalid) as info:
        Lockfile.parse(data)
    msg = str(info.value)
    assert info.value.code == "lock-invalid"
    assert msg.startswith("hub.lock")
    if line is not None:
        assert f"line {line} column " in msg
    if column is not None:
        assert f"line {line} column {column}:" in msg


def test_duplicate_keys_are_refused_with_the_second_position() -> None:
    text = SAMPLE_TEXT.replace(f'"commit": "{COMMIT}",', f'"commit": "{COMMIT}",\n"commit": "{"9" * 40}",')
    line = text.splitlines().index(f'"commit": "{"9" * 40}",') + 1
    with pytest.raises(LockInvalid) as info:
        Lockfile.parse(text.encode())
    assert info.value.code == "lock-invalid"
    assert f"hub.lock line {line} column 1: " in str(info.value)
    assert 'repos["owner/repo:v1.2"].commit' in str(info.value)
    assert "once" in str(info.value)


def test_duplicate_top_level_key_is_refused() -> None:
    with pytest.raises(LockInvalid, match=r"line 1 column 16: version: expected each key once"):
        Lockfile.parse(b'{"version": 1, "version": 1}')


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b'{"version": 1, "x": "\xff"}', "UTF-8"),
        (b'\xef\xbb\xbf{"version": 1}', "byte-order mark"),
        (b'{"version": 1, "x": "\\ud800"}', "surrogate"),
        (b"[1]", "JSON object"),
        (b"[" * 100000 + b"]" * 100000, "hub.lock"),
        (b'{"repos": {}}', "version"),
        (b'{"version": 1, "x": ' + b"[" * 70 + b"]" * 70 + b"}", "nested at most 64 levels"),
    ],
)
def test_other_malformed_documents_are_lock_invalid(data: bytes, needle: str) -> None:
    with pytest.raises(LockInvalid) as info:
        Lockfile.parse(data)
    assert info.value.code == "lock-invalid"
    assert needle in str(info.value)


def test_unknown_top_level_and_repo_fields_are_preserved() -> None:
    obj = json.loads(SAMPLE_TEXT)
    obj["x-generated-by"] = {"tool": "securehub", "notes": ["a", 1, None]}
    obj["repos"]["owner/repo:v1.2"]["x-reviewed"] = True
    data = (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    lock = Lockfile.parse(data)
    assert lock.extra["x-generated-by"] == {"tool": "securehub", "notes": ("a", 1, None)}
    assert lock.repos["owner/repo:v1.2"].extra == {"x-reviewed": True}
    assert lock.to_bytes() == data
    # Preserved through functional updates too.
    assert b"x-reviewed" in lock.with_artifact("https://x.example/y", ArtifactEntry(SHA1, 1)).to_bytes()


def test_null_optional_fields_mean_absent() -> None:
    text = SAMPLE_TEXT.replace('"version": 1', '"signature": null,\n  "version": 1')
    lock = Lockfile.parse(text.encode())
    assert lock.signature is None
    assert lock.to_bytes() == SAMPLE_TEXT.encode()


# --------------------------------------------------------------------------- load / save


def test_load_missing_file_says_so(tmp_path: pathlib.Path) -> None:
    with pytest.raises(LockInvalid) as info:
        Lockfile.load(tmp_path / "hub.lock")
    assert info.value.code == "lock-invalid"
    assert "found none" in str(info.value)
    assert "securehub lock" in str(info.value)


def test_load_directory_is_lock_invalid(tmp_path: pathlib.Path) -> None:
    with pytest.raises(LockInvalid, match="readable"):
        Lockfile.load(tmp_path)


def test_load_errors_name_the_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "hub.lock"
    path.write_bytes(b'{\n  "version": 3\n}\n')
    with pytest.raises(LockInvalid, match=rf"^{path} line 2 column 3: version: expected 1, found 3"):
        Lockfile.load(path)


def test_save_then_load_roundtrip_with_mode_0644_and_no_temp_files(tmp_path: pathlib.Path) -> None:
    old = os.umask(0o077)
    try:
        sample_lock().save(tmp_path / "hub.lock")
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.lock"]
    assert stat.S_IMODE((tmp_path / "hub.lock").stat().st_mode) == 0o644
    assert (tmp_path / "hub.lock").read_bytes() == sample_lock().to_bytes()
    assert Lockfile.load(tmp_path / "hub.lock") == sample_lock()


def test_save_keeps_existing_mode(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "hub.lock"
    path.write_bytes(b"old")
    path.chmod(0o600)
    sample_lock().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == sample_lock().to_bytes()


def test_save_failure_leaves_old_file_and_no_temp_files(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hub.lock"
    path.write_bytes(b"old contents")

    def broken_replace(self: pathlib.Path, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        sample_lock().save(path)
    assert path.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub.lock"]


def test_save_refuses_unserialisable_lock_without_writing(tmp_path: pathlib.Path) -> None:
    lock = sample_lock().with_entrypoint("owner/repo:v1.2", "x", EntrypointEntry(artifacts=("https://u.example/z",)))
    with pytest.raises(ValueError):
        lock.save(tmp_path / "hub.lock")
    assert list(tmp_path.iterdir()) == []
