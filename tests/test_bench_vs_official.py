"""scripts/bench_vs_official.py: the parts that need no official code (parsing, ratios, timing loop, tables)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.scripts_module import load_script


@pytest.fixture(scope="module")
def bvo():  # noqa: ANN201
    return load_script("bench_vs_official")


def test_parse_args_sources_and_flags(bvo, tmp_path: Path) -> None:
    args = bvo.parse_args(["--imdn", str(tmp_path), "--models", "imdn", "espcn", "--threads", "2", "--rounds", "3",
                           "--int8", "--json"])
    assert args.imdn == tmp_path and args.cfsr is None
    assert args.models == ["imdn", "espcn"] and args.threads == 2 and args.rounds == 3 and args.int8 and args.json
    assert bvo.parse_args(["--cfsr", str(tmp_path)]).models == list(bvo.MODELS)  # default: all models
    assert bvo.parse_args(["--models", "espcn"]).models == ["espcn"]  # ESPCN's baseline needs no official source


def test_no_source_dir_exits_with_a_clear_message(bvo, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        bvo.main([])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "no official source directory given" in err and "--imdn DIR" in err and "--kair DIR" in err


def test_bad_arguments_exit(bvo, tmp_path: Path) -> None:
    for argv in (["--imdn", str(tmp_path), "--rounds", "0"], ["--imdn", str(tmp_path), "--models", "nope"]):
        with pytest.raises(SystemExit):
            bvo.parse_args(argv)


def test_every_official_model_maps_to_a_side_by_side_case(bvo) -> None:
    for spec in bvo.MODELS.values():
        case = bvo.case_for(spec)
        assert (case is None) == (spec.key == "espcn")
        if case is not None:
            assert case.ckpt == spec.ckpt


def test_ratio_median_and_interleave_on_fake_timings(bvo) -> None:
    assert bvo.ratio(300.0, 100.0) == pytest.approx(3.0)
    assert bvo.ratio(100.0, 400.0) == pytest.approx(0.25)
    assert math.isnan(bvo.ratio(100.0, 0.0)) and math.isnan(bvo.ratio(math.nan, 10.0))
    assert bvo.median_ms([5.0, 1.0, 3.0]) == 3.0 and math.isnan(bvo.median_ms([]))

    now = [0.0]
    cost = {"official": 0.3, "auto": 0.1, "bf16": 0.05}  # seconds per call on a fake clock
    calls: list[str] = []

    def fn(name: str):  # noqa: ANN202
        def call() -> None:
            calls.append(name)
            now[0] += cost[name]
        return call

    times = bvo.interleave({n: fn(n) for n in cost}, 3, clock=lambda: now[0])
    assert calls == ["official", "auto", "bf16", "auto", "bf16", "official", "bf16", "official", "auto"]
    assert {k: [round(t, 6) for t in v] for k, v in times.items()} == {
        "official": [300.0] * 3, "auto": [100.0] * 3, "bf16": [50.0] * 3}
    med = {k: bvo.median_ms(v) for k, v in times.items()}
    assert bvo.ratio(med["official"], med["auto"]) == pytest.approx(3.0)


def _row(bvo, **kw):  # noqa: ANN001, ANN202
    base = dict(key="imdn", label="IMDN x4", ckpt="imdn/IMDN_x4.pth", input="3x180x320", output="3x720x1280",
                baseline="Zheng222/IMDN@abc `IMDN`",
                ms={"official": 400.0, "auto": 200.0, "bf16": 100.0, "int8": 160.0},
                path={"auto": "onnxruntime", "bf16": "torch", "int8": "onnxruntime"},
                diff={"auto": 2e-7, "bf16": 4e-3, "int8": 2e-2})
    return bvo.Row(**(base | kw))


def test_table_and_section(bvo) -> None:
    rows = [_row(bvo),
            _row(bvo, key="espcn", label="ESPCN x4", baseline="ours eager fp32 (official-equivalent)",
                 diff={"auto": 5e-4, "bf16": 1e-2}),
            bvo.Row("cfsr", "CFSR x4", "cfsr/CFSR_x4.pth", note="source not given (--cfsr DIR: Aitical/CFSR)")]
    assert rows[0].ok and not rows[1].ok and not rows[2].ok
    table = bvo.format_table(rows, int8=True)
    lines = table.strip().splitlines()
    assert len(lines) == 5 and all(line.count("|") == lines[0].count("|") for line in lines)
    assert "200.0 (2.00x) `onnxruntime`" in lines[2] and "100.0 (4.00x)" in lines[2] and "160.0 (2.50x)" in lines[2]
    assert lines[2].endswith("| yes |") and "2e-07 / 0.004 / 0.02" in lines[2]
    assert "400.0*" in lines[3] and lines[3].endswith("| **no** |")
    assert "source not given" in lines[4]
    assert "int8" not in bvo.format_table(rows[:1], int8=False)

    sec = bvo.section(rows, command="python scripts/bench_vs_official.py --imdn X", machine="Test CPU", threads=2,
                      rounds=5, int8=True, note="training paused")
    assert sec.startswith(bvo.BEGIN) and sec.rstrip().endswith(bvo.END)
    assert "Test CPU; 2 threads" in sec and "training paused" in sec and "dnn_superres" in sec
    doc = "# Title\n\nintro\n"
    once = bvo.replace_section(doc, sec)
    assert once.startswith(doc) and once.count(bvo.BEGIN) == 1
    twice = bvo.replace_section(once + "\ntail\n", sec.replace("Test CPU", "Other CPU"))
    assert twice.count(bvo.BEGIN) == 1 and "Other CPU" in twice and "Test CPU" not in twice
    assert twice.rstrip().endswith("tail")


def test_input_is_seeded_and_in_range(bvo) -> None:
    a, b = bvo.test_input(3, 18, 32), bvo.test_input(3, 18, 32)
    assert a.shape == (1, 3, 18, 32) and (a == b).all() and a.min() >= 0 and a.max() <= 1


def test_bf16_is_offered_only_where_the_cpu_runs_it(bvo) -> None:
    assert bvo.variants(False, bf16=True) == [bvo.OFFICIAL, "auto", "bf16"]
    assert bvo.variants(True, bf16=False) == [bvo.OFFICIAL, "auto", "int8"]
    from restore.engine.cpu_paths import bf16_convolutions

    assert ("bf16" in bvo.variants(False)) is bf16_convolutions()
