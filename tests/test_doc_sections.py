"""scripts/doc_sections.py: the marked blocks that several scripts write into one markdown file. A script that
rewrites a whole file (make_results) carries the others' blocks over; it once dropped sigma_bands' section."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from doc_sections import block, carry_sections, sections  # noqa: E402

OLD = ("# Results\n\nold table\n\n" + block("denoise-bench", "bench v1") + "\nloose text <!-- not a block -->\n\n"
       + block("sigma-bands", "bands v1") + "\n<!-- broken:begin -->\nno end marker\n")


def test_sections_lists_every_complete_block_in_order() -> None:
    got = sections(OLD)
    assert [s.splitlines()[0] for s in got] == ["<!-- denoise-bench:begin -->", "<!-- sigma-bands:begin -->"]
    assert got[0].endswith("<!-- denoise-bench:end -->") and "bench v1" in got[0]
    assert sections("no markers at all") == []


def test_carry_sections_keeps_other_scripts_blocks() -> None:
    new = "# Results\n\nnew table\n"
    out = carry_sections(new, OLD)
    assert "new table" in out and "old table" not in out
    assert out.index("new table") < out.index("bench v1") < out.index("bands v1")  # appended in old's order
    assert out.count("sigma-bands:begin") == 1 and "no end marker" not in out
    placed = carry_sections("# Results\n\n" + block("sigma-bands", "stale") + "\ntail\n", OLD)
    assert "stale" not in placed and placed.index("bands v1") < placed.index("tail")  # replaced in place
    assert carry_sections(out, OLD) == out  # idempotent


def test_make_results_carries_sections_over() -> None:
    src = (ROOT / "scripts" / "make_results.py").read_text()
    assert "carry_sections(" in src and "denoise-bench:begin" not in src
