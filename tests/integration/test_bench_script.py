"""``python -m bench`` runs end to end at a tiny size and writes a well-formed generated section."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import compare

ROOT = Path(__file__).resolve().parents[2]


def _section(text: str) -> str:
    assert text.count(compare.BEGIN) == 1 and text.count(compare.END) == 1
    return text[text.index(compare.BEGIN) : text.index(compare.END) + len(compare.END)]


def _table_rows(section: str, header_start: str) -> list[list[str]]:
    lines = section.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    width = lines[i].count("|")
    assert set(lines[i + 1].replace("|", "")) == {"-"} and lines[i + 1].count("|") == width
    rows = []
    for line in lines[i + 2 :]:
        if not line.startswith("|"):
            break
        assert line.count("|") == width, line
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_write_doc_replaces_only_the_marked_section(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# Title\n\nhand-written text\n")
    compare.write_doc(doc, f"{compare.BEGIN}\none\n{compare.END}\n")
    compare.write_doc(doc, f"{compare.BEGIN}\ntwo\n{compare.END}\n")
    text = doc.read_text()
    assert text.startswith("# Title\n\nhand-written text\n") and "one" not in text
    assert _section(text) == f"{compare.BEGIN}\ntwo\n{compare.END}"


@pytest.mark.slow
@pytest.mark.timeout(60)  # ~30 s on the shared 2-core VM
def test_bench_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    shutil.copy(ROOT / "docs" / "performance.md", doc)
    before = doc.read_text()
    args = ["--size", "2", "--models", "conv", "--runs", "1", "--digest-runs", "1", "--doc", str(doc)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREHUB_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=58
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = doc.read_text()
    section = _section(text)
    # the hand-written rest of the doc is untouched
    if compare.BEGIN in before:
        old = _section(before)
        assert text.replace(section, "") == before.replace(old, "")
    else:
        assert text.startswith(before)
    assert "Command: `python -m bench " + " ".join(args) + "`" in section
    assert re.search(r"- CPU: .+; cores: \d+", section) and "torch 2." in section
    (load,) = _table_rows(section, "| model | state MiB | torch.hub warm")
    assert load[0].startswith("conv: ") and len(load) == 9
    assert all(float(x) > 0 for x in load[2:])
    (rss,) = _table_rows(section, "| model | state MiB | torch.hub warm | securehub warm | torch.hub cold |")
    assert all(re.fullmatch(r"\d+\.\d\dx", x) for x in rss[2:])
    digests = _table_rows(section, "| file | tool |")
    assert [d[1].split()[0] for d in digests] == ["sha256sum", "securehub", "securehub"]
    assert all(float(d[3]) > 0 for d in digests)
