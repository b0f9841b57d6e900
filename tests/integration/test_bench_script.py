"""``python -m bench`` runs end to end at a tiny size and writes a well-formed generated section."""

from __future__ import annotations

import argparse
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
@pytest.mark.timeout(300)  # ~30 s on a quiet 2-core VM; a hang guard, not a timing check
def test_bench_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    shutil.copy(ROOT / "docs" / "performance.md", doc)
    before = doc.read_text()
    args = ["--size", "2", "--models", "conv", "--runs", "1", "--digest-runs", "1", "--warm-memory", "0"]
    args += ["--doc", str(doc)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREHUB_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=290
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
    assert load[0].startswith("conv: ") and len(load) == 12
    later = re.fullmatch(r"(\d+\.\d{3}) \((\d+\.\d\d)\)", load[10])  # "seconds (ratio)"
    assert later is not None, load
    assert all(float(x) > 0 for x in [*load[2:10], load[11], *later.groups()])  # the network-rate cold load too
    assert "torch.hub cold at 1000 Mbit/s" in section
    (rss,) = _table_rows(section, "| model | state MiB | torch.hub warm | securehub warm | torch.hub cold |")
    assert all(re.fullmatch(r"\d+\.\d\dx", x) for x in rss[2:])
    digests = _table_rows(section, "| file | tool |")
    assert [d[1].split()[0] for d in digests] == ["sha256sum", "securehub", "securehub", "securehub"]
    assert all(float(d[3]) > 0 for d in digests)
    assert digests[0][6] == "1.00x" and all(re.fullmatch(r"\d+\.\d\dx", d[6]) for d in digests)


def test_tables_show_every_ratio_against_torch_hub_and_sha256sum() -> None:
    """The renderer's arithmetic on made-up numbers (no timing is measured or asserted here)."""
    mib = 2**20

    def samples(seconds: float, rss: float) -> list[compare.Sample]:
        return [compare.Sample(seconds, int(rss * 50 * mib), 1.0)]

    result = compare.Result("conv", "2 x Conv2d", 50 * mib, 3.0)
    result.samples = {"hub_warm": samples(2.0, 2.0), "sec_warm": samples(0.5, 1.1),
                      "hub_cold": samples(4.0, 2.0), "hub_net": samples(10.0, 2.0), "sec_cold": samples(5.0, 1.25),
                      "sec_later": samples(2.0, 1.3)}  # fmt: skip
    result.digests = [compare.Digest("sha256sum", 0.2, 0.2), compare.Digest("securehub x", 0.05, 0.1)]
    section = compare.render([result], 1, "python -m bench --quick")

    assert section.startswith(compare.BEGIN) and section.endswith(compare.END + "\n")
    (load,) = _table_rows(section, "| model | state MiB | torch.hub warm")
    assert load == ["conv: 2 x Conv2d", "50", "2.000", "0.500", "0.25", "4.000", "5.000", "1.25", "10.000", "0.50",
                    "2.000 (0.50)", "3.0"]  # fmt: skip
    del result.samples["hub_net"]  # --net-mbit 0: those two columns say so
    (load,) = _table_rows(compare.render([result], 1, "cmd", net_mbit=0), "| model | state MiB | torch.hub warm")
    assert load[8:10] == ["-", "-"]
    (rss,) = _table_rows(section, "| model | state MiB | torch.hub warm | securehub warm | torch.hub cold |")
    assert rss == ["conv: 2 x Conv2d", "50", "2.00x", "1.10x", "2.00x", "1.25x", "1.30x"]
    digests = _table_rows(section, "| file | tool |")
    assert [d[5:] for d in digests] == [["262", "1.00x"], ["524", "2.00x"]]  # 52.4 MB / CPU s
    assert "Target: securehub <= 1.2x" in section and "Target: per core >= 0.9x" in section


def test_quick_skips_the_700_mb_models(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[list[float]] = []
    monkeypatch.setattr(compare, "run", lambda sz, *_a, **_k: sizes.append(list(sz)) or [])
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    for argv in ([], ["--quick"], ["--size", "2"]):
        compare.run_from_args(parser.parse_args([*argv, "--no-doc"]), "cmd")
    assert sizes == [[50.0, 700.0], [50.0], [2.0]]
