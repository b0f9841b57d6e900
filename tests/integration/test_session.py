"""run_in_sandbox end to end: real hubconf.py trees, a real confined child, a test broker."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from securehub._util.determinism import preserved_rng, seed_all
from securehub.errors import HashMismatch
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent import forkserver
from securehub.sandbox.parent.handoff import Verified
from securehub.sandbox.parent.session import run_in_sandbox
from securehub.sandbox.wire import messages as m
from tests._sandbox_helpers import (  # *_fixture: pytest fixtures, registered by name
    CONFIG,
    expect_refusal,
    make_repo_fixture,  # noqa: F401
    out_dir_fixture,  # noqa: F401
)
from tests._sandbox_helpers import no_fetch as _no_fetch


def run(tree: Path, op: str, entrypoint: str | None, out_dir: Path, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("broker", _no_fetch)
    return run_in_sandbox(
        op,
        tree,
        entrypoint,
        kw.pop("args", []),
        kw.pop("kwargs", {}),  # type: ignore[arg-type]
        config=kw.pop("config", CONFIG),
        out_dir=out_dir,
        **kw,  # type: ignore[arg-type]
    )


def expect_error(code: str, tree: Path, op: str, entrypoint: str | None, out_dir: Path, **kw: object) -> str:
    return expect_refusal(code, out_dir, lambda: run(tree, op, entrypoint, out_dir, **kw)).message


SEQ = """
    import functools
    import torch
    from torch import nn

    dependencies = ["torch"]
    VERSION = "1.0"

    def seq(seed=0):
        '''A small MLP.

        seed: weights seed'''
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))

    def _private():
        pass

    seeded = functools.partial(seq, seed=7)
    globals().update({f"made_{i}": seq for i in range(2)})
"""


def test_list_includes_partials_and_dynamic_entries(make_repo, out_dir):
    res = run(make_repo(SEQ), "list", None, out_dir)
    assert res.names == ["made_0", "made_1", "seeded", "seq"]
    assert res.state_path is None
    assert res.isolation.level == "full"


def test_help_returns_docstring_and_partial_doc(make_repo, out_dir):
    tree = make_repo(SEQ)
    assert run(tree, "help", "seq", out_dir).doc == "A small MLP.\n\n    seed: weights seed"
    assert run(tree, "help", "seeded", out_dir).doc == "A small MLP.\n\n    seed: weights seed"


def test_load_sequential_matches_direct_build(make_repo, out_dir):
    res = run(make_repo(SEQ), "load", "seq", out_dir, kwargs={"seed": 3})
    torch.manual_seed(3)
    direct = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert res.state_path == out_dir / "state.safetensors"
    got = load_file(str(res.state_path))
    want = direct.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k
    root = res.config["root"]
    assert res.config["format"] == "securehub-config/1"
    assert root["class"] == "torch.nn.modules.container:Sequential"
    assert root["origin"] == {"kind": "site", "path": "torch/nn/modules/container.py", "resolves": True}
    assert root["args"] == [{"$module": {"ref": "0"}}, {"$module": {"ref": "1"}}, {"$module": {"ref": "2"}}]
    assert root["children"]["0"]["args"] == [4, 3]
    assert root["children"]["1"]["class"] == "torch.nn.modules.activation:ReLU"
    assert root["mutated"] == []
    assert res.fetched == ()
    assert sorted(p.name for p in out_dir.iterdir()) == ["state.safetensors"]


TRICKY = """
    import torch
    from torch import nn

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.emb.weight
            self.bn = nn.BatchNorm1d(3)
            self.register_buffer("wt", self.emb.weight.detach().t())
            self.register_buffer("scratch", torch.arange(4.0), persistent=False)

        def forward(self, x):
            return self.out(self.bn(self.emb(x)))

    def tied():
        torch.manual_seed(0)
        model = Tied()
        model.bn.running_mean.fill_(0.5)
        model.bn.num_batches_tracked += 3
        return model.eval()
"""


def test_load_tied_noncontiguous_nonpersistent_and_batchnorm(make_repo, out_dir):
    res = run(make_repo(TRICKY), "load", "tied", out_dir)
    got = load_file(str(res.state_path))
    assert res.config["aliases"] == {"out.weight": "emb.weight"}
    assert "out.weight" not in got
    assert torch.equal(got["wt"], got["emb.weight"].t())
    assert got["wt"].is_contiguous()
    assert torch.equal(got[m.NONPERSISTENT_PREFIX + "scratch"], torch.arange(4.0))
    assert torch.equal(got["bn.running_mean"], torch.full((3,), 0.5))
    assert int(got["bn.num_batches_tracked"]) == 3
    root = res.config["root"]
    assert root["training"] is False
    assert root["origin"]["kind"] == "tree"
    assert root["children"]["bn"]["class"] == "torch.nn.modules.batchnorm:BatchNorm1d"


def test_mutation_after_construction_is_replayed_or_flagged(make_repo, out_dir):
    """An added child is recorded for replay (issue 10); a changed tuple attribute is still flagged."""
    tree = make_repo("""
        from torch import nn
        def m():
            net = nn.Sequential(nn.Conv2d(3, 4, 3))
            net[0].padding = (0, 1)
            net.head = nn.Linear(4, 2)
            return net
    """)
    root = run(tree, "load", "m", out_dir).config["root"]
    assert root["mutated"] == []
    assert "head" in root["replay"]["children"]
    conv = root["children"]["0"]
    replayed = "padding" in conv.get("replay", {}).get("attrs", {})
    assert replayed or conv["mutated"] == ["attribute 'padding' changed after construction"], conv


def _checkpoint_broker(path: Path, seen: list[m.FetchRequest]) -> Callable[[m.FetchRequest], Path]:
    def broker(request: m.FetchRequest) -> Path:
        seen.append(request)
        return path

    return broker


ARTIFACT_HUB = """
    import torch
    from torch import nn

    def pretrained(url):
        model = nn.Linear(4, 3)
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True)
        model.load_state_dict(state)
        return model
"""


@pytest.mark.parametrize("fmt", ["pickle", "safetensors"])
def test_artifact_fetched_through_broker_is_loaded(make_repo, out_dir, tmp_path, fmt):
    torch.manual_seed(11)
    weights = nn.Linear(4, 3).state_dict()
    ckpt = tmp_path / f"ckpt-abcdef12.{'pth' if fmt == 'pickle' else 'safetensors'}"
    if fmt == "pickle":
        torch.save(weights, ckpt)
    else:
        save_file(dict(weights), str(ckpt))
    ckpt.chmod(0o444)
    seen: list[m.FetchRequest] = []
    url = f"https://example.invalid/w/{ckpt.name}"
    res = run(make_repo(ARTIFACT_HUB), "load", "pretrained", out_dir, args=[url], broker=_checkpoint_broker(ckpt, seen))
    assert seen == [m.FetchRequest(url=url, kind="load_state_dict", hash_prefix="abcdef12", check_hash=True)]
    assert res.fetched == ((url, hashlib.sha256(ckpt.read_bytes()).hexdigest()),)
    got = load_file(str(res.state_path))
    for k, v in weights.items():
        assert torch.equal(got[k], v)


def _safetensors_checkpoint(tmp_path: Path) -> tuple[Path, str]:
    torch.manual_seed(11)
    ckpt = tmp_path / "ckpt-abcdef12.safetensors"
    save_file(dict(nn.Linear(4, 3).state_dict()), str(ckpt))
    ckpt.chmod(0o444)
    return ckpt, hashlib.sha256(ckpt.read_bytes()).hexdigest()


def test_verified_hand_over_is_answered_at_once_and_checked_before_the_result(make_repo, out_dir, tmp_path):
    # The broker names the digest it verified: the child is answered without waiting for the
    # session's own hash of the placed file, which must agree before the result is returned.
    ckpt, digest = _safetensors_checkpoint(tmp_path)
    url = f"https://example.invalid/w/{ckpt.name}"
    res = run(
        make_repo(ARTIFACT_HUB), "load", "pretrained", out_dir, args=[url], broker=lambda req: Verified(ckpt, digest)
    )
    assert res.fetched == ((url, digest),)
    assert res.state_path is not None and res.state_path.exists()


def test_blob_changed_after_the_broker_verified_it_is_hash_mismatch_and_no_result(make_repo, out_dir, tmp_path):
    # What a swap of the cached blob between the broker's check and the hand-over looks like: the
    # placed file's digest is not the one the broker verified. The child ran (it was answered at
    # once), but the call reports hash-mismatch and returns nothing built from the blob.
    ckpt, digest = _safetensors_checkpoint(tmp_path)
    verified = "0" * 64
    url = f"https://example.invalid/w/{ckpt.name}"
    with pytest.raises(HashMismatch) as info:
        run(
            make_repo(ARTIFACT_HUB),
            "load",
            "pretrained",
            out_dir,
            args=[url],
            broker=lambda req: Verified(ckpt, verified),
        )
    assert info.value.code == "hash-mismatch"
    assert f"has sha256 {digest}, expected {verified}" in info.value.message
    assert "cache verify" in info.value.message
    assert list(out_dir.iterdir()) == []  # no state file left behind


def test_blob_changed_after_verification_explains_a_failing_child_first(make_repo, out_dir, tmp_path):
    # The child fails on the bytes it got (here: the hubconf raises); the changed blob is the
    # cause reported, not the entrypoint error.
    ckpt, digest = _safetensors_checkpoint(tmp_path)
    tree = make_repo("""
        import torch
        def pretrained(url):
            torch.hub.load_state_dict_from_url(url, map_location="cpu")
            raise RuntimeError("the weights looked wrong")
    """)
    with pytest.raises(HashMismatch) as info:
        run(
            tree,
            "load",
            "pretrained",
            out_dir,
            args=[f"https://example.invalid/w/{ckpt.name}"],
            broker=lambda req: Verified(ckpt, "1" * 64),
        )
    assert f"has sha256 {digest}, expected {'1' * 64}" in info.value.message


def test_broker_refusal_keeps_its_code_and_message(make_repo, out_dir, tmp_path):
    refusal = HashMismatch("artifact digest differs from hub.lock (test)")

    def broker(request: m.FetchRequest) -> Path:
        raise refusal

    with pytest.raises(HashMismatch) as info:
        run(make_repo(ARTIFACT_HUB), "load", "pretrained", out_dir, args=["https://x.invalid/a.pth"], broker=broker)
    assert info.value is refusal
    assert list(out_dir.iterdir()) == []


def test_download_url_to_file_copies_into_child_tmp(make_repo, out_dir, tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"x" * 10)
    tree = make_repo("""
        import os, tempfile, torch
        from torch import nn
        def m():
            dst = os.path.join(tempfile.gettempdir(), "got.bin")
            torch.hub.download_url_to_file("https://x.invalid/blob.bin", dst)
            return nn.Linear(1, int(os.path.getsize(dst)))
    """)
    res = run(tree, "load", "m", out_dir, broker=lambda req: blob)
    assert res.config["root"]["args"] == [1, 10]


def test_dependency_missing(make_repo, out_dir):
    tree = make_repo("""
        dependencies = ["torch", "nonexistent_pkg_securehub"]
        def m():
            pass
    """)
    msg = expect_error("dependency-missing", tree, "load", "m", out_dir)
    assert "nonexistent_pkg_securehub" in msg
    assert "torch," not in msg


def test_missing_entrypoint(make_repo, out_dir):
    msg = expect_error("entrypoint-not-found", make_repo(SEQ), "load", "nope", out_dir)
    assert "'nope'" in msg and "seq" in msg


def test_entrypoint_error_is_sanitised(make_repo, out_dir):
    tree = make_repo("""
        def m():
            raise ValueError("bad \\x1b[31mred\\x1b[0m value\\x07 " + "y" * 5000)
    """)
    msg = expect_error("entrypoint-error", tree, "load", "m", out_dir)
    assert "ValueError: bad \\x1b[31mred\\x1b[0m value\\x07" in msg  # shown as text, inert
    assert "\x1b" not in msg and "\x07" not in msg
    assert len(msg) <= m.MAX_MESSAGE_CHARS + 100


@pytest.mark.parametrize(
    ("expr", "named"),
    [
        ("(nn.Linear(1, 1), 3)", "builtins.tuple"),
        ("{'model': nn.Linear(1, 1)}", "builtins.dict"),
        ("torch.jit.script(nn.Linear(1, 1))", "TorchScript"),
        ("torch.zeros(1)", "torch.Tensor"),
    ],
)
def test_non_module_result_is_refused(make_repo, out_dir, expr, named):
    tree = make_repo(f"""
        import torch
        from torch import nn
        def m():
            return {expr}
    """)
    msg = expect_error("reconstruct-refused", tree, "load", "m", out_dir)
    assert named in msg


def test_torch_load_weights_only_false_is_a_violation(make_repo, out_dir, tmp_path):
    ckpt = tmp_path / "c.pth"
    torch.save({"w": torch.zeros(1)}, ckpt)
    tree = make_repo("""
        import torch
        def m(path):
            return torch.load(path, weights_only=False)
    """)
    msg = expect_error(
        "sandbox-violation",
        tree,
        "load",
        "m",
        out_dir,
        args=[str(ckpt)],
        config=SandboxConfig(timeout_s=120, read_paths=(tmp_path,)),
    )
    assert "torch.load(weights_only=False) attempted" in msg


def test_reading_ssh_key_is_a_named_violation(make_repo, out_dir):
    tree = make_repo("""
        def m():
            open("/root/.ssh/id_rsa").read()
    """)
    msg = expect_error("sandbox-violation", tree, "load", "m", out_dir)
    assert "open /root/.ssh/id_rsa" in msg


def test_connect_is_a_named_violation(make_repo, out_dir):
    tree = make_repo("""
        import socket
        def m():
            socket.create_connection(("127.0.0.1", 8080), timeout=2)
    """)
    msg = expect_error("sandbox-violation", tree, "load", "m", out_dir)
    assert "connect 127.0.0.1:8080" in msg


def test_swallowed_violation_still_fails_closed(make_repo, out_dir):
    tree = make_repo("""
        import subprocess
        from torch import nn
        def m():
            try:
                subprocess.run(["/bin/true"])
            except OSError:
                pass
            return nn.Linear(1, 1)
    """)
    msg = expect_error("sandbox-violation", tree, "load", "m", out_dir)
    assert "exec /bin/true" in msg


def test_export_program_roundtrips_without_pickle(make_repo, out_dir):
    from torch._export.serde.serialize import SerializedArtifact, deserialize

    tree = make_repo("""
        import torch
        from torch import nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
                self.register_buffer("shift", torch.ones(2), persistent=False)
            def forward(self, x):
                return self.fc(x).relu() + self.shift
        def net():
            torch.manual_seed(5)
            return Net()
    """)
    x = torch.randn(3, 4)
    res = run(tree, "load", "net", out_dir, example_inputs=(x,), want_export=True)
    assert res.export is not None
    tensors = load_file(str(res.state_path))
    state = {
        k: nn.Parameter(tensors[v], requires_grad=False) if k in res.export.parameters else tensors[v]
        for k, v in res.export.state.items()
    }
    assert res.export.parameters == ("fc.weight", "fc.bias")
    consts = {k: tensors[v] for k, v in res.export.constants.items()}
    ep = deserialize(SerializedArtifact(res.export.program_json, state, consts, b""))
    torch.manual_seed(5)
    ref = nn.Linear(4, 2)
    assert torch.allclose(ep.module()(x), ref(x).relu() + 1)


PROBE = """
    import random
    import sys
    import torch
    from torch import nn

    def probe():
        '''Reports the child's state as the widths of Linear layers: flags, then the first draws.'''
        flags = [
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            "torch._dynamo" in sys.modules,
            "torch._inductor.config" in sys.modules,
        ]
        draws = [random.randrange(1, 100), int(torch.randint(1, 100, (1,)))]
        return nn.Sequential(*(nn.Linear(1, 1 + int(f)) for f in flags), *(nn.Linear(1, d) for d in draws))
"""


def test_child_is_deterministic_without_importing_the_compiler(make_repo, out_dir, monkeypatch):
    """Issue 11 item 6: deterministic algorithms on (warn only) and seeded, without torch._dynamo/_inductor
    (~800 modules of every sandbox start); the seeded draws are the ones a seed-0 process gets.

    A fresh interpreter: a fork of the fork server has torch._dynamo once a call that may export asked
    the server to import it (docs/sandbox.md), by design, and its own start imports nothing."""
    monkeypatch.setenv("SECUREHUB_FORK_SERVER", "0")
    res = run(make_repo(PROBE), "load", "probe", out_dir)
    widths = [t.shape[0] for name, t in sorted(load_file(str(res.state_path)).items()) if name.endswith("bias")]
    with preserved_rng():
        seed_all()
        expected_draws = [random.randrange(1, 100), int(torch.randint(1, 100, (1,)))]
    assert widths == [2, 2, 1, 1, *expected_draws]


def test_a_fork_of_the_fork_server_is_seeded_and_deterministic_like_a_fresh_child(make_repo, out_dir, monkeypatch):
    """The server's RNG state is not a fork's: each fork seeds like a fresh child, twice in a row."""
    monkeypatch.delenv("SECUREHUB_FORK_SERVER", raising=False)
    monkeypatch.setattr(forkserver, "_launches", max(forkserver._launches, 1))
    with preserved_rng():
        seed_all()
        expected_draws = [random.randrange(1, 100), int(torch.randint(1, 100, (1,)))]
    for i in range(2):
        out = out_dir / str(i)
        out.mkdir()
        res = run(make_repo(PROBE), "load", "probe", out)
        widths = [t.shape[0] for name, t in sorted(load_file(str(res.state_path)).items()) if name.endswith("bias")]
        assert widths[:2] == [2, 2] and widths[4:] == expected_draws, widths
    assert forkserver._server is not None and forkserver._server.alive()
