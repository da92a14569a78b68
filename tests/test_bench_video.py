"""scripts/bench_video.py's arithmetic: multiply-accumulates per frame, the measured fp32 ceiling and the table
(the timed pipeline itself is a benchmark, not a test)."""

from __future__ import annotations

import argparse

import pytest

from tests.scripts_module import load_script


@pytest.fixture(scope="module")
def bv():  # noqa: ANN201
    return load_script("bench_video")


def test_frame_macs_counts_espcn_per_lr_pixel(bv) -> None:
    from restore.archs.espcn import ESPCN

    net = ESPCN(scale=2).eval()  # 5x5 1->64, 3x3 64->32, 3x3 32->4 per LR pixel
    per_pixel = 25 * 64 + 9 * 64 * 32 + 9 * 32 * 4
    assert bv.frame_macs(net, 360, 640) == 360 * 640 * per_pixel
    assert bv.frame_macs(bv.bicubic_model(2), 360, 640) == 0


def test_peak_macs_is_a_plausible_rate(bv) -> None:
    peak = bv.peak_macs(1, n=128, reps=2)
    assert 1e7 < peak < 1e13  # multiply-accumulates per second of one core


def test_table_shows_the_ceiling_and_the_verdict(bv) -> None:
    row = bv.Row("x2", "espcn", "fp32", "onnxruntime", 2, "yuv", "ultrafast", "auto", 0.7, 1, "w.pth", 21284,
                 90, 7.1, 12.61, 0.42, 12.71, 31.13, True, macs=4_880_000_000)
    env = {"cpu": "Test CPU; avx2 fma; VNNI/AMX-INT8: no; native bf16: no", "cores": "2", "torch": "t", "av": "a",
           "python": "3", "load_before": "1", "load_after": "1", "paused": "", "paused_s": "0",
           "peak": {2: 84.3e9}}
    args = argparse.Namespace(frames=90, note="", section="bench_video_test")
    text = bv.markdown([row], env, args)
    assert text.startswith("<!-- bench_video_test:begin -->")
    assert text.rstrip().endswith("<!-- bench_video_test:end -->")
    assert "CPU: Test CPU)" in text and "| 12.71 | 17.3 | 31.13 |" in text
    assert "Here: not met" in text and "ceiling of the network alone on these cores is about 17.3 fps" in text


def test_native_bf16_rows_are_held_to_the_bf16_peak(bv) -> None:
    """On a CPU with native bf16 the verdict gives both ceilings instead of asking for such a CPU, and bf16 rows'
    limit column uses the bf16 peak."""
    rows = [bv.Row("x2", "espcn", "bf16", "torch", 2, "yuv", "ultrafast", "auto", 0.7, 1, "w.pth", 21284,
                   90, 4.4, 20.50, 0.68, 20.74, 31.15, True, macs=4_880_000_000),
            bv.Row("x2", "espcn", "fp32", "onnxruntime", 2, "yuv", "ultrafast", "auto", 0.7, 1, "w.pth", 21284,
                   90, 5.9, 15.35, 0.51, 15.46, 31.13, True, macs=4_880_000_000)]
    env = {"cpu": "Test CPU; avx512_bf16; VNNI/AMX-INT8: yes; native bf16: yes", "cores": "2", "torch": "t",
           "av": "a", "python": "3", "load_before": "1", "load_after": "1", "paused": "", "paused_s": "0",
           "peak": {2: 88.5e9}, "peak_bf16": {2: 199.6e9}}
    text = bv.markdown(rows, env, argparse.Namespace(frames=90, note="", section="t"))
    assert "network limit fps (peak of its precision)" in text
    assert "| 20.74 | 40.9 | 31.15 |" in text and "| 15.46 | 18.1 | 31.13 |" in text
    assert "needs a CPU with native bf16" not in text
    assert "about 18.1 fps in float32 and 40.9 fps in bf16 (native here)" in text
    assert "199.6 GMAC/s with 2 thread(s)" in text
