"""Red team 5: a child forging ``sandbox-unavailable`` through its exit status.

A child may report only the codes a child can legitimately produce in its frames (red team 2:
``test_child_forges_a_parent_only_error_code``). Its *exit status* was a second channel: status 85
is what the trusted bootstrap exits with when it cannot confine itself, and the parent mapped it to
``sandbox-unavailable`` with the child's stderr as the explanation -- also after "go", when repository
code had been running for a while. A hubconf that printed "landlock: not supported by this kernel;
set sandbox.isolation: best-effort to continue" and called ``os._exit(85)`` had securehub tell the
user, under the code reserved for the machine's missing isolation, to weaken the policy. Status 85
now means a failed confinement only before "go"; afterwards it is an early exit
(``sandbox-protocol``), the stderr tail quoted as the child's output.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator

import pytest

import securehub
from securehub.errors import SandboxProtocol, SecureHubError
from securehub.pipeline.lock import lock_repos
from securehub.sandbox.config import EXIT_CONFINE_FAILED, SandboxConfig
from securehub.sandbox.parent.spawn import ExitInfo, launch
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._servers import GitServer
from tests.sandbox_probes._harness import probe_path

pytestmark = NEEDS_FULL_SANDBOX


def test_exit_status_of_a_failed_confinement_after_go_is_protocol_not_unavailable() -> None:
    with launch(SandboxConfig(timeout_s=30), probe_file=probe_path("fake_confine_failure")) as child:
        with pytest.raises(SecureHubError) as excinfo:
            child.recv(max_body_bytes=0)
        info = child.exit_info()
    assert info is not None and info.returncode == EXIT_CONFINE_FAILED
    assert isinstance(excinfo.value, SandboxProtocol), repr(excinfo.value)
    assert excinfo.value.code == "sandbox-protocol"
    assert "could not confine" not in excinfo.value.message
    assert "exit status 85" in excinfo.value.message


def test_status_85_before_go_is_still_a_failed_confinement() -> None:
    """The bootstrap's own status keeps its meaning while no repository code can have run."""
    with launch(SandboxConfig(timeout_s=30), probe_file=probe_path("early_exit")) as child:
        child.wait(None)
    confine_failed = ExitInfo(returncode=EXIT_CONFINE_FAILED, signal=None, cpu_s=0.0, timed_out=False, killed=False)
    assert child.started
    assert isinstance(child.error_for_exit(confine_failed), SandboxProtocol)
    child.started = False
    err = child.error_for_exit(confine_failed)
    assert err is not None and err.code == "sandbox-unavailable"


HUBCONF = textwrap.dedent("""
    import os
    import sys

    dependencies = ["torch"]


    def model():
        sys.stderr.write("securehub sandbox: landlock is not supported by this kernel; "
                         "set sandbox.isolation: best-effort in your policy to continue\\n")
        sys.stderr.flush()
        os._exit(85)


    def model_sys_exit():
        raise SystemExit(85)
""")


#: os._exit(85) ends the child with status 85; SystemExit(85) is caught by the runtime like any exception.
CODES = {"model": "sandbox-protocol", "model_sys_exit": "entrypoint-error"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("exit-spoof"), git_server) as e:
        yield e


@pytest.mark.parametrize("entrypoint", ["model", "model_sys_exit"])
def test_hubconf_cannot_claim_the_sandbox_is_unavailable(env: HubEnv, entrypoint: str) -> None:
    lock = env.root / "hub.lock"
    spec = env.spec(publish(env, "exit-spoof", {"hubconf.py": HUBCONF}))
    lock_repos([spec], policy="default", lock=lock)
    before = Snapshot.take(env.hub, lock)
    with pytest.raises(SecureHubError) as excinfo:
        securehub.load(spec, entrypoint, policy="default", lock=lock, verbose=False)
    assert excinfo.value.code != "sandbox-unavailable", str(excinfo.value)
    assert excinfo.value.code == CODES[entrypoint], str(excinfo.value)
    assert "could not confine" not in str(excinfo.value)
    before.assert_unchanged(env.hub, lock)
    last = json.loads(env.audit_log.read_text().splitlines()[-1])
    assert last["entrypoint"] == entrypoint and last["code"] == excinfo.value.code
