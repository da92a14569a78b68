"""Every PSNR that restore/weights/manifest.json records for a shipped model is reproduced (needs ../shared).

The manifest's ``psnr`` field is written by scripts/make_results.py from ``restore eval --model NAME --data DIR
(--scale S | --sigma N) --json`` (fp32, CPU, noise seed 0, rounded to 4 decimals): a label ``"Set5"`` is an SR
set at the model's scale, ``"Set12 σ25"`` a denoising set at that sigma (blind models carry several). This test
re-runs the same evaluation (:func:`restore.evaluate.evaluate_sr` / :func:`~restore.evaluate.evaluate_denoise`,
what ``restore eval`` calls) for whatever entries the manifest holds now, within 0.005 dB. Every Set5 figure
(seconds per model) and the default gray denoiser's Set12 σ25 figure (~20 s) are checked in every run; the other
Set12 figures (~20-60 s each: seven of them took 400 s of a 15-minute CI budget) and the large sets (minutes per
model, ~1 h 40 min for the whole manifest on one busy core) with ``RESTORE_FULL_SCORES=1``. Skips, saying which
folder is missing, without ../shared.

    RESTORE_FULL_SCORES=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q tests/test_shipped_scores.py
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

import pytest
from torch import nn

from restore.weights import SHIPPED_DIR, load_model, shipped_models
from tests.conftest import REPO, shared_path

sys.path.insert(0, str(REPO / "scripts"))
import make_results  # noqa: E402  (the set folders make_results.py evaluates)

TOLERANCE_DB = 0.005
LABEL = re.compile(r"^(?P<set>\S+)(?: σ(?P<sigma>\d+))?$")


FULL = os.environ.get("RESTORE_FULL_SCORES") == "1"
SMALL_SETS = ("Set5",)  # seconds per model: checked in every run; the others take 20 s to minutes each
ALWAYS = {("dncnn_s25", "Set12 σ25")}  # one denoiser in every run: the gray default, the path every DnCNN shares
FULL_ONLY = pytest.mark.skipif(not FULL, reason="a large benchmark set (minutes per model): RESTORE_FULL_SCORES=1 "
                                                "checks it too")


def _cases() -> list[object]:
    """One case per (model, recorded label) in the manifest as it is now; the large sets only with
    ``RESTORE_FULL_SCORES=1`` (the whole manifest takes ~1 h 40 min on one busy core)."""
    cases = []
    for m in shipped_models():
        for label, psnr in sorted(dict(m.get("psnr") or {}).items()):
            small = label.split(" ")[0] in SMALL_SETS or (m["name"], label) in ALWAYS
            cases.append(pytest.param(m, label, float(psnr), id=f"{m['name']}-{label.replace(' σ', '-s')}",
                                      marks=() if small else (pytest.mark.slow, FULL_ONLY)))
    return cases


def folder_of(label: str, task: str) -> tuple[str, int | None]:
    """(folder under ../shared/data, sigma or None) for a manifest label, from make_results.py's tables."""
    found = LABEL.match(label)
    assert found, f"unexpected manifest label {label!r}"
    name, sigma = found["set"], found["sigma"]
    if task == "sr":
        assert sigma is None and name in make_results.SR_SETS, f"unknown SR set label {label!r}"
        return make_results.SR_SETS[name][0], None
    sets = {**make_results.GRAY_SETS, **make_results.COLOR_SETS}
    assert sigma is not None and name in sets, f"unknown denoising label {label!r}"
    return sets[name], int(sigma)


@functools.lru_cache(maxsize=1)
def _model(file: str) -> nn.Module:
    return load_model(SHIPPED_DIR / file)


def test_labels_name_known_sets() -> None:
    """Runs without ../shared: every recorded label maps to a set folder make_results.py evaluates."""
    for m in shipped_models():
        for label in m.get("psnr") or {}:
            folder, sigma = folder_of(label, str(m["task"]))
            assert Path(folder).parts[0] == ("sr" if m["task"] == "sr" else "denoise")
            assert (sigma is None) == (m["task"] == "sr")
    recorded = {(m["name"], label) for m in shipped_models() for label in m.get("psnr") or {}}
    assert ALWAYS <= recorded, f"the always-checked figures are gone from the manifest: {ALWAYS - recorded}"


@pytest.mark.parametrize(("entry", "label", "recorded"), _cases())
def test_shipped_model_reproduces_its_recorded_psnr(entry: dict, label: str, recorded: float) -> None:
    from restore.evaluate import evaluate_denoise, evaluate_sr

    rel, sigma = folder_of(label, str(entry["task"]))
    data = shared_path("data", *rel.split("/"))
    model = _model(str(entry["file"]))
    if sigma is None:
        res = evaluate_sr(model, data, scale=int(entry["scale"]), name=str(entry["name"]), progress=False,
                          device="cpu", precision="fp32")
    else:
        res = evaluate_denoise(model, data, sigma=sigma, seed=0, name=str(entry["name"]), progress=False,
                               device="cpu", precision="fp32")
    got = round(res.psnr_y, 4)  # what `restore eval --json` prints and make_results.py records
    assert abs(got - recorded) <= TOLERANCE_DB, f"{entry['name']} {label}: {got} dB, manifest says {recorded}"
