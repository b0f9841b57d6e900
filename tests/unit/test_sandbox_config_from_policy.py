"""The one place a policy becomes the sandbox's configuration (issue 9): every field crosses, nothing else."""

from __future__ import annotations

import dataclasses

from securehub.config.policy import Policy, SandboxPolicy
from securehub.pipeline.sandbox_config import sandbox_config
from securehub.sandbox.config import SandboxConfig

#: SandboxConfig fields that are not policy decisions: the run's own paths, and a test hook.
NOT_FROM_POLICY = {"read_paths", "tmp_parent", "disable_mechanisms", "fork_server"}
#: SandboxConfig fields from another policy section than ``sandbox``.
FROM_RECONSTRUCT = {"export_sizes"}


def test_every_sandbox_policy_field_reaches_the_sandbox_config() -> None:
    policy_fields = {f.name for f in dataclasses.fields(SandboxPolicy)}
    config_fields = {f.name for f in dataclasses.fields(SandboxConfig)} - NOT_FROM_POLICY - FROM_RECONSTRUCT
    # A limit added to one side only would silently not be enforced (or not be configurable).
    assert policy_fields == config_fields


def test_sandbox_config_copies_the_policy_values() -> None:
    sb = SandboxPolicy(network="deny", memory_mb=1234, cpu_s=56, timeout_s=78, max_procs=9, max_open_files=101,
                       max_file_mb=202, max_output_mb=303)  # fmt: skip
    config = sandbox_config(Policy(sandbox=sb))
    for f in dataclasses.fields(SandboxPolicy):
        assert getattr(config, f.name) == getattr(sb, f.name), f.name
    assert config.read_paths == () and config.disable_mechanisms == frozenset()


def test_the_export_sizes_setting_reaches_the_sandbox_config() -> None:
    policy = Policy.from_yaml("version: 1\nreconstruct:\n  export_sizes: any\n", source="p.yaml")
    assert sandbox_config(policy).export_sizes == "any"
    assert sandbox_config(Policy.load("strict")).export_sizes == "batch"
