"""Nested torch.hub.load inside a sandboxed hubconf goes through the parent (SPEC section 6).

A real confined child runs the outer hubconf; its ``torch.hub.load`` is
answered by a ``nested`` callback given to ``run_in_sandbox``: either a fake
that builds the inner model in this process (recorded and described exactly
as the child would), or one that runs the inner hubconf in a real nested
sandbox, the way ``securehub.load`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from securehub.errors import NotLocked, SecureHubError
from securehub.reconstruct.rebuild import reconstruct
from securehub.sandbox.child.record import describe, recording
from securehub.sandbox.child.result import collect_tensors, write_state
from securehub.sandbox.parent.session import NestedAnswer, NestedLoad, SandboxResult, run_in_sandbox
from securehub.sandbox.wire import messages as m
from tests._sandbox_helpers import (  # *_fixture: pytest fixtures, registered by name
    CONFIG,
    expect_refusal,
    make_repo_fixture,  # noqa: F401
    out_dir_fixture,  # noqa: F401
)
from tests._sandbox_helpers import no_fetch as _no_fetch

TRUSTED = ("torch.nn",)
STRATEGIES = ("trusted", "export")
INNER_ARTIFACT = ("https://weights.example/lin-0123abcd.safetensors", "ab" * 32)

OUTER = """
    import torch
    from torch import nn

    def wrapped(out=3):
        inner = torch.hub.load("acme/inner:v1", "lin", out=out)
        return nn.Sequential(inner, nn.ReLU())

    def catches():
        try:
            torch.hub.load("acme/inner:v1", "lin")
        except RuntimeError as exc:
            # The refusal reaches the entrypoint with the parent's code in it.
            return nn.Linear(2, 2) if "[not-locked]" in str(exc) else nn.Linear(5, 5)
        return nn.Linear(9, 9)

    def local():
        return torch.hub.load("/tmp/somewhere", "lin", source="local")

    def tensor_arg():
        return torch.hub.load("acme/inner:v1", "lin", init=torch.zeros(1))

    def policy_kwarg():
        return torch.hub.load("acme/inner:v1", "lin", policy="permissive")
"""


def _inner_linear(out: int) -> nn.Linear:
    torch.manual_seed(11)
    return nn.Linear(4, out)


def fake_nested(seen: list[tuple[m.NestedRequest, Path]]) -> Callable[[m.NestedRequest, Path], NestedAnswer]:
    """Answers like a real nested load would: the inner model recorded, described and saved here."""

    def nested(request: m.NestedRequest, work: Path) -> NestedAnswer:
        seen.append((request, work))
        assert work.is_dir() and list(work.iterdir()) == []
        with recording():
            inner = _inner_linear(int(request.kwargs.get("out", 3)))
        config = describe(inner)
        tensors, aliases = collect_tensors(inner)
        config["aliases"] = aliases
        state = work / "state.safetensors"
        write_state(tensors, state)
        return NestedAnswer(state, config, None, (INNER_ARTIFACT,), TRUSTED, STRATEGIES)

    return nested


def refusing(exc: SecureHubError, seen: list[m.NestedRequest]) -> Callable[[m.NestedRequest, Path], NestedAnswer]:
    def nested(request: m.NestedRequest, work: Path) -> NestedAnswer:
        seen.append(request)
        raise exc

    return nested


def run(tree: Path, entrypoint: str, out_dir: Path, **kw: object) -> SandboxResult:
    return run_in_sandbox(
        "load",
        tree,
        entrypoint,
        [],
        kw.pop("kwargs", {}),  # type: ignore[arg-type]
        config=CONFIG,
        broker=_no_fetch,
        out_dir=out_dir,
        **kw,  # type: ignore[arg-type]
    )


def expect_error(code: str, tree: Path, entrypoint: str, out_dir: Path, **kw: object) -> SecureHubError:
    return expect_refusal(code, out_dir, lambda: run(tree, entrypoint, out_dir, **kw))


def test_nested_model_is_built_from_the_parents_answer(make_repo, out_dir):
    seen: list[tuple[m.NestedRequest, Path]] = []
    res = run(make_repo(OUTER), "wrapped", out_dir, kwargs={"out": 5}, nested=fake_nested(seen))

    # The callback got exactly what the hubconf asked for, at nesting depth 1.
    assert [r for r, _ in seen] == [
        m.NestedRequest(repo_or_dir="acme/inner:v1", model="lin", args=(), kwargs={"out": 5}, depth=1)
    ]
    assert not seen[0][1].exists(), "the callback's work dir is removed once the answer is sent"

    # The outer state holds the inner model's weights, unchanged.
    want = _inner_linear(5).state_dict()
    got = load_file(str(res.state_path))
    assert set(got) == {"0.weight", "0.bias"}
    for k, v in want.items():
        assert torch.equal(got[f"0.{k}"], v), k

    # The inner module was recorded when the child rebuilt it, so the parent can rebuild the
    # whole model with the trusted strategy: no repo code, Linear(4, 5) from torch.nn.
    root = res.config["root"]
    assert root["children"]["0"]["class"] == "torch.nn.modules.linear:Linear"
    assert root["children"]["0"]["args"] == [4, 5]
    model, strategy = reconstruct(
        config=res.config,
        state_path=res.state_path,
        export=None,
        strategies=STRATEGIES,
        trusted_modules=TRUSTED,
        tree=None,
    )
    assert strategy == "trusted"
    assert isinstance(model, nn.Sequential) and isinstance(model[0], nn.Linear) and isinstance(model[1], nn.ReLU)
    assert torch.equal(model[0].weight, want["weight"])

    # Audit and auto-lock see the nested load's artifacts.
    assert res.fetched == ()
    assert res.nested == (NestedLoad(seen[0][0], (INNER_ARTIFACT,)),)
    assert res.all_fetched == (INNER_ARTIFACT,)
    assert sorted(p.name for p in out_dir.iterdir()) == ["state.safetensors"]


def test_nested_refusal_fails_the_outer_load_with_the_original_error(make_repo, out_dir):
    refusal = NotLocked("acme/inner:v1 is not in hub.lock; lock it with `securehub lock acme/inner:v1`")
    seen: list[m.NestedRequest] = []
    err = expect_error("not-locked", make_repo(OUTER), "wrapped", out_dir, nested=refusing(refusal, seen))
    assert err is refusal, "the parent's own exception is re-raised, not the child's retelling"
    assert len(seen) == 1


def test_entrypoint_that_catches_the_refusal_sees_its_code(make_repo, out_dir):
    seen: list[m.NestedRequest] = []
    res = run(make_repo(OUTER), "catches", out_dir, nested=refusing(NotLocked("not locked"), seen))
    assert load_file(str(res.state_path))["weight"].shape == (2, 2)
    assert res.nested == ()
    assert len(seen) == 1


def test_without_a_callback_nested_load_is_an_entrypoint_error(make_repo, out_dir):
    err = expect_error("entrypoint-error", make_repo(OUTER), "wrapped", out_dir)
    assert "nested torch.hub.load is not available here" in err.message
    assert "acme/inner:v1" in err.message


@pytest.mark.parametrize("depth", [2, 3])
def test_nesting_depth_is_counted_by_the_parent(make_repo, out_dir, depth):
    seen: list[tuple[m.NestedRequest, Path]] = []
    tree = make_repo(OUTER)
    if depth == 2:  # the nested request is level 3: still allowed
        run(tree, "wrapped", out_dir, nested=fake_nested(seen), nested_depth=depth)
        assert [r.depth for r, _ in seen] == [3]
        return
    err = expect_error("entrypoint-error", tree, "wrapped", out_dir, nested=fake_nested(seen), nested_depth=depth)
    assert f"at most {m.MAX_NESTED_DEPTH} levels" in err.message
    assert seen == [], "a too-deep nested load must not reach the callback"


def test_nested_load_of_a_local_directory_is_refused(make_repo, out_dir):
    seen: list[tuple[m.NestedRequest, Path]] = []
    err = expect_error("repo-not-allowed", make_repo(OUTER), "local", out_dir, nested=fake_nested(seen))
    assert "/tmp/somewhere" in err.message
    assert seen == []


@pytest.mark.parametrize(
    ("entrypoint", "words"),
    [
        ("tensor_arg", "not a JSON value"),
        ("policy_kwarg", "parameters of the load itself"),
    ],
)
def test_arguments_that_cannot_cross_fail_inside_the_entrypoint(make_repo, out_dir, entrypoint, words):
    seen: list[tuple[m.NestedRequest, Path]] = []
    err = expect_error("entrypoint-error", make_repo(OUTER), entrypoint, out_dir, nested=fake_nested(seen))
    assert "TypeError" in err.message and words in err.message
    assert seen == []


def test_nested_load_at_hubconf_import_time_is_answered_too(make_repo, out_dir):
    tree = make_repo("""
        import torch
        from torch import nn
        try:
            torch.hub.load("acme/inner:v1", "lin")
        except RuntimeError:
            pass
        def m():
            return nn.Linear(1, 1)
    """)
    res = run(tree, "m", out_dir)
    assert res.nested == ()


# --------------------------------------------------------------------------- real nested sandboxes


def sandboxed_nested(
    trees: dict[str, Path], seen: list[m.NestedRequest], example_inputs: tuple[torch.Tensor, ...] | None = None
) -> Callable[[m.NestedRequest, Path], NestedAnswer]:
    """What securehub.load's callback does: run the inner hubconf in its own sandbox, recursively."""

    def nested(request: m.NestedRequest, work: Path) -> NestedAnswer:
        seen.append(request)
        res = run_in_sandbox(
            "load",
            trees[request.repo_or_dir],
            request.model,
            request.args,
            request.kwargs,
            config=CONFIG,
            broker=_no_fetch,
            out_dir=work,
            example_inputs=example_inputs,
            want_export=example_inputs is not None,
            nested=nested,
            nested_depth=request.depth,
        )
        assert res.state_path is not None
        return NestedAnswer(res.state_path, res.config, res.export, res.all_fetched, TRUSTED, STRATEGIES)

    return nested


def test_repo_defined_inner_class_travels_as_an_exported_program(make_repo, out_dir):
    inner = make_repo("""
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                return self.fc(x) * 2

        def net():
            torch.manual_seed(5)
            return Net()
    """)
    outer = make_repo("""
        import torch
        from torch import nn

        class Wrap(nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner
            def forward(self, x):
                return self.inner(x).relu()

        def wrapped():
            return Wrap(torch.hub.load("acme/inner:v2", "net"))
    """)
    seen: list[m.NestedRequest] = []
    x = torch.randn(3, 4)
    res = run(
        outer,
        "wrapped",
        out_dir,
        nested=sandboxed_nested({"acme/inner:v2": inner}, seen, (x,)),
        example_inputs=(x,),
        want_export=True,
    )
    assert [r.model for r in seen] == ["net"]
    # The repo's class is not in trusted_modules: the child rebuilt it from the exported program,
    # and the outer model (export of the whole thing) computes what the repo's code computes.
    torch.manual_seed(5)
    fc = nn.Linear(4, 2)
    model, strategy = reconstruct(
        config=res.config,
        state_path=res.state_path,
        export=res.export,
        strategies=STRATEGIES,
        trusted_modules=TRUSTED,
        tree=None,
    )
    assert strategy == "export"
    assert torch.allclose(model(x), (fc(x) * 2).relu())


def test_repo_that_loads_itself_is_stopped_at_the_depth_limit(make_repo, out_dir):
    loop = make_repo("""
        import torch
        def again():
            return torch.hub.load("acme/loop:v1", "again")
    """)
    seen: list[m.NestedRequest] = []
    with pytest.raises(SecureHubError) as info:
        run(loop, "again", out_dir, nested=sandboxed_nested({"acme/loop:v1": loop}, seen))
    assert info.value.code == "entrypoint-error"
    assert f"at most {m.MAX_NESTED_DEPTH} levels" in info.value.message
    assert [r.depth for r in seen] == [1, 2, 3]
    assert list(out_dir.iterdir()) == []
