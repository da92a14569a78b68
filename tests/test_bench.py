from __future__ import annotations

import argparse
import importlib.util
import json
import math

import pytest

from restore import bench
from restore.cli import args as cli_args
from restore.cli import bench as cli_bench


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    ap = argparse.ArgumentParser(prog="restore")
    cli_bench.add_parsers(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["bench", *argv])
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_flops_are_counted(capsys: pytest.CaptureFixture[str]) -> None:
    out = json.loads(_run(["--models", "espcn", "dscf", "--size", "7x5", "--scale", "2", "--runs", "1",
                           "--warmup", "0", "--json"], capsys))
    espcn, dscf = out["results"]
    # ESPCN x2: 5x5 1->64, 3x3 64->32, 3x3 32->4 per LR pixel
    assert espcn["macs"] == 7 * 5 * (25 * 64 + 9 * 64 * 32 + 9 * 32 * 4)
    assert espcn["flops"] == 2 * espcn["macs"] and espcn["params"] == 25 * 64 + 64 + 9 * 64 * 32 + 32 + 9 * 32 * 4 + 4
    assert out["baseline"] == "espcn" and math.isclose(espcn["score"], math.exp(2), abs_tol=1e-4)
    # one unwarmed run on a loaded CPU can make dscf hundreds of times slower than espcn: its score is then null
    assert (dscf["score"] is None or dscf["score"] > espcn["score"]) and dscf["family"] == "span"
    for r in out["results"]:
        c = int(r["input"].split("x")[0])
        io_bytes = 4 * c * 7 * 5 * (1 + 4)
        assert r["peak_mem_mb"] * 2**20 >= io_bytes * 0.99 and r["runtime_ms"] > 0


def test_score_saturates_instead_of_overflowing() -> None:
    base = (0.05, 1e6, 1e4)
    assert math.isclose(bench.ntire_score(*base, base), math.exp(2))
    assert bench.ntire_score(50.0, 1e6, 1e4, base) == math.inf  # 1000x slower: exp(2000) does not fit a float
    assert bench.ntire_score(0.1, 1e6, 1e4, base) < bench.ntire_score(0.2, 1e6, 1e4, base) < math.inf


def test_table_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(["--models", "espcn", "--size", "8", "--runs", "1", "--warmup", "0"], capsys)
    assert "espcn" in out and "score" in out
    assert "cfsr" in _run(["--list"], capsys)


def test_ntire_score_baseline() -> None:
    assert math.isclose(bench.ntire_score(16.69, 16.70, 0.276, (16.69, 16.70, 0.276)), math.exp(2))


@pytest.mark.parametrize("bad", ["0x5", "axb", "1x2x3"])
def test_size_parsing(bad: str) -> None:
    assert cli_args.size("256x128") == (256, 128)
    with pytest.raises(argparse.ArgumentTypeError):
        cli_args.size(bad)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed (onnx extra)")
def test_int8_reports_the_plan_the_engine_chose(capsys: pytest.CaptureFixture[str]) -> None:
    out = json.loads(_run(["--models", "espcn", "--size", "12x10", "--scale", "2", "--precision", "int8",
                           "--runs", "1", "--warmup", "0", "--json"], capsys))
    (r,) = out["results"]
    assert r["backend"] == "onnxruntime" and r["precision"] == "int8"
    assert r["path"].startswith("onnxruntime int8, ") and " of 3 convolutions in int8 " in r["path"]


def test_int8_is_for_the_cpu() -> None:
    ap = argparse.ArgumentParser(prog="restore")
    cli_bench.add_parsers(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["bench", "--models", "espcn", "--precision", "int8", "--device", "cuda"])
    with pytest.raises(Exception, match="int8|CUDA|cuda"):
        args.func(args)
