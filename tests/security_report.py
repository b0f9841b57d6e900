"""Generate docs/security-testing.md from a test run: never typed by hand (issue 13, item 6).

Inputs: a JUnit XML report of a pytest run and the fuzz suite's per-parser example counts
(``SECUREHUB_FUZZ_STATS``, written by tests/fuzz/conftest.py). Two ways to use it:

- ``python -m tests.security_report --run``: run the attack, fuzz, concurrency and crash
  suites itself, then write the report (``make security-report``);
- ``python -m tests.security_report --junit J --fuzz-stats F``: only render, from the
  files an earlier run wrote (``make test`` writes both, so CI adds no test time).

The report states the command, the date, the commit and the hypothesis profile, and has one
section per attack class (a file under tests/attacks: its cases by name with the outcome), the
examples run per parser by the fuzz suite, and the concurrency/crash results.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET  # noqa: S405 - parses the JUnit file our own pytest run wrote
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / ".reports"
DEFAULT_JUNIT = REPORTS / "junit.xml"
DEFAULT_STATS = REPORTS / "fuzz-stats.json"
DEFAULT_OUTPUT = ROOT / "docs" / "security-testing.md"
#: Test files whose per-test outcome the report lists (another engineer's suites; whatever exists).
ROBUSTNESS_GLOBS = (
    "tests/integration/test_concurrency*.py",
    "tests/integration/test_crash*.py",
    "tests/attacks/test_hostile_servers*.py",
    "tests/attacks/test_hostile_git_server*.py",
    "tests/attacks/test_disk_full*.py",
    "tests/attacks/test_prune_vs_live_loads*.py",
)


@dataclass(frozen=True)
class Case:
    file: str  # tests/attacks/test_x.py
    name: str  # test name with parameters
    outcome: str  # passed | failed | error | skipped


def _file_of(classname: str) -> str:
    """``tests.attacks.test_x`` (or ``tests.attacks.test_x.TestY``) -> ``tests/attacks/test_x.py``."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        if (ROOT / candidate).is_file():
            return candidate
    return "/".join(parts) + ".py"


def read_junit(path: Path) -> list[Case]:
    """Every test case of a JUnit XML file, with its outcome."""
    cases = []
    for tc in ET.parse(path).getroot().iter("testcase"):  # noqa: S314 - our own run's output
        if tc.find("failure") is not None:
            outcome = "failed"
        elif tc.find("error") is not None:
            outcome = "error"
        elif tc.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        cases.append(Case(_file_of(tc.get("classname", "")), tc.get("name", ""), outcome))
    return cases


def _summary_line(path: Path) -> str:
    """The first line of a test file's module docstring (what attack class it covers)."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError):
        return ""
    return (doc or "").strip().splitlines()[0] if doc else ""


def _counts(cases: list[Case]) -> str:
    by = defaultdict(int)
    for c in cases:
        by[c.outcome] += 1
    return " | ".join(str(by[k]) for k in ("passed", "failed", "error", "skipped"))


def _attack_section(cases: list[Case]) -> list[str]:
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "attacks").glob("test_*.py"))
    grouped: dict[str, list[Case]] = defaultdict(list)
    for c in cases:
        grouped[c.file].append(c)
    total = sum(len(grouped[f]) for f in files)
    lines = [
        "## Attack classes (tests/attacks)",
        "",
        f"{total} cases in {len(files)} files. Each file is one attack class; each case asserts the exact "
        "error code and that nothing happened.",
        "",
        "| attack class (file) | what it covers | cases | passed | failed | error | skipped |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in files:
        stem = Path(f).stem.removeprefix("test_")
        what = _summary_line(ROOT / f).replace("|", "\\|")
        lines.append(f"| `{stem}` | {what} | {len(grouped[f])} | {_counts(grouped[f])} |")
    lines.append("")
    for f in files:
        if not grouped[f]:
            continue
        lines += [f"### `{f}`", ""]
        lines += [f"- `{c.name}`: {c.outcome}" for c in grouped[f]]
        lines.append("")
    return lines


def _fuzz_section(stats: dict[str, object] | None) -> list[str]:
    lines = ["## Fuzzing (tests/fuzz)", ""]
    if not stats:
        return [*lines, "No fuzz statistics were recorded in this run.", ""]
    examples = stats.get("examples", {})
    outcomes = stats.get("outcomes", {})
    assert isinstance(examples, dict) and isinstance(outcomes, dict)  # noqa: S101 - our own file
    deadline, bound = stats.get("deadline_ms"), stats.get("memory_bound_bytes")
    within = (
        f"within {deadline} ms per example and {int(bound) >> 20} MiB of heap growth (the profile's deadline and "
        "the harness's bound)"
        if isinstance(deadline, int) and isinstance(bound, int)
        else "within the profile's per-example deadline and the harness's heap-growth bound"
    )
    lines += [
        f"Hypothesis profile `{stats.get('profile', '?')}` (up to {stats.get('max_examples', '?')} examples per "
        "property). Property: every parser returns a result or raises its documented error (a `SecureHubError`, "
        f"or the parser's own error type its callers map to one), {within}; any other exception fails the run.",
        "",
        "| parser | examples | accepted | refused (by error type) |",
        "| --- | ---: | ---: | --- |",
    ]
    for name in sorted(examples):
        result = dict(outcomes.get(name, {}))
        ok = result.pop("ok", 0)
        refused = ", ".join(f"{k} {v}" for k, v in sorted(result.items())) or "-"
        lines.append(f"| `{name}` | {examples[name]} | {ok} | {refused} |")
    lines += ["", f"Total: {sum(int(v) for v in examples.values())} examples.", ""]
    return lines


def _robustness_section(cases: list[Case]) -> list[str]:
    files = sorted({p.relative_to(ROOT).as_posix() for g in ROBUSTNESS_GLOBS for p in ROOT.glob(g)})
    lines = ["## Concurrency and crash safety", ""]
    if not files:
        return [*lines, f"No test files match {', '.join(ROBUSTNESS_GLOBS)} in this checkout.", ""]
    for f in files:
        mine = [c for c in cases if c.file == f]
        lines += [f"### `{f}`", "", _summary_line(ROOT / f) or "", ""]
        if not mine:
            lines += ["Not part of this run.", ""]
            continue
        lines += ["| test | result |", "| --- | --- |"]
        lines += [f"| `{c.name}` | {c.outcome} |" for c in mine]
        lines.append("")
    return lines


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return out.stdout.strip()


def render(cases: list[Case], stats: dict[str, object] | None, command: str) -> str:
    """The whole Markdown report."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    profile = (stats or {}).get("profile", os.environ.get("HYPOTHESIS_PROFILE", "ci"))
    lines = [
        "# Security testing",
        "",
        "<!-- Generated by `python -m tests.security_report`; do not edit by hand. -->",
        "",
        f"- command: `{command}`",
        f"- date: {now}",
        f"- commit: `{_commit()}`",
        f"- hypothesis profile: `{profile}`",
        f"- test cases in the run: {len(cases)} ({_counts(cases)} passed | failed | error | skipped)",
        "",
        *_attack_section(cases),
        *_fuzz_section(stats),
        *_robustness_section(cases),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _run_suites(junit: Path, stats: Path) -> int:
    """Run the suites the report covers, writing ``junit`` and ``stats``; returns pytest's exit code."""
    targets = ["tests/attacks", "tests/fuzz"]
    targets += sorted({p.relative_to(ROOT).as_posix() for g in ROBUSTNESS_GLOBS for p in ROOT.glob(g)} - set(targets))
    junit.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SECUREHUB_FUZZ_STATS=str(stats))
    workers = os.environ.get("PYTEST_WORKERS", "2")  # as make test: xdist workers, one file per worker at a time
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers, "--dist", "loadfile"]
    cmd += [f"--junitxml={junit}", *targets]
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.security_report", description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="store_true", help="run the attack/fuzz/concurrency/crash suites first")
    parser.add_argument(
        "--junit", type=Path, action="append", help=f"JUnit XML file(s) of the run (default {DEFAULT_JUNIT})"
    )
    parser.add_argument("--fuzz-stats", type=Path, default=DEFAULT_STATS)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    junits: list[Path] = args.junit or [DEFAULT_JUNIT]
    code = 0
    if args.run:
        args.fuzz_stats.unlink(missing_ok=True)
        code = _run_suites(junits[0], args.fuzz_stats)
    missing = [j for j in junits if not j.is_file()]
    if missing:
        print(f"error: no JUnit report at {missing[0]}; run `make test` or pass --run", file=sys.stderr)
        return 2
    stats = json.loads(args.fuzz_stats.read_text(encoding="utf-8")) if args.fuzz_stats.is_file() else None
    command = "python -m tests.security_report" + (
        " --run" if args.run else " " + " ".join(f"--junit {j.name}" for j in junits)
    )
    cases = [case for j in junits for case in read_junit(j)]
    args.output.write_text(render(cases, stats, command), encoding="utf-8")
    print(f"wrote {args.output}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
