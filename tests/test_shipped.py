"""The weights shipped in ``restore/weights/`` (trained by this project): manifest integrity, default
selection, and the CLI running them with no model named."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from restore import io, weights
from restore.weights import MANIFEST, SHIPPED_DIR, load_model, resolve_model, shipped_models

from .conftest import SHARED, restore_exe

MODELS = shipped_models()
needs_models = pytest.mark.skipif(not MODELS, reason="no weights shipped in restore/weights yet")


def _default(task: str, **want: object) -> dict | None:
    return next((m for m in MODELS if m["task"] == task and m.get("default")
                 and all(m.get(k) == v for k, v in want.items())), None)


@needs_models
@pytest.mark.parametrize("entry", MODELS, ids=[str(m["name"]) for m in MODELS])
def test_manifest_entry_matches_its_file(entry: dict) -> None:
    f = SHIPPED_DIR / str(entry["file"])
    assert f.is_file(), f"{f} listed in the manifest but missing"
    data = f.read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    model = load_model(f)
    meta = model.meta
    assert (meta.task, meta.family, meta.params) == (entry["task"], entry["family"], entry["params"])
    assert meta.scale == entry["scale"]
    assert entry["stages"] and all(Path(s["option_file"]).suffix == ".yml" for s in entry["stages"])
    assert entry["iterations"] == sum(s["iterations"] for s in entry["stages"]) > 0


@needs_models
def test_one_default_per_slot_and_names_unique() -> None:
    names = [m["name"] for m in MODELS]
    assert len(names) == len(set(names))
    slots = [(m["task"], m["scale"], m["sigma"], m["color"]) for m in MODELS if m.get("default")]
    assert len(slots) == len(set(slots)), "two defaults for the same task/scale/sigma/colour"
    listed = {str(m["file"]) for m in MODELS}
    on_disk = {p.name for p in SHIPPED_DIR.glob("*.pth")}
    assert on_disk == listed, f"unlisted or missing weight files: {on_disk ^ listed}"


@needs_models
def test_no_third_party_weights_shipped() -> None:
    ref = SHARED / "weights"
    if not ref.is_dir():
        pytest.skip(f"../shared fixture not present: {ref}")
    theirs = {hashlib.sha256(p.read_bytes()).hexdigest() for p in ref.rglob("*") if p.is_file()}
    ours = {m["sha256"] for m in MODELS}
    assert not ours & theirs


def test_default_resolution_prefers_the_input_colour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def entry(name: str, task: str, scale: int, sigma: str | None, color: str, default: bool) -> dict:
        return {"name": name, "task": task, "scale": scale, "sigma": sigma, "color": color, "default": default,
                "file": f"{name}.pth"}

    doc = {"models": [entry("c25", "denoise", 1, "25", "rgb", True), entry("g25", "denoise", 1, "25", "gray", True),
                      entry("g50", "denoise", 1, "50", "gray", True), entry("cb", "denoise", 1, "blind", "rgb", True),
                      entry("x4", "sr", 4, None, "rgb", True), entry("e4", "sr", 4, None, "y", False)]}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    monkeypatch.setattr(weights, "SHIPPED_DIR", tmp_path)
    monkeypatch.setattr(weights, "MANIFEST", tmp_path / "manifest.json")
    assert resolve_model(None, task="denoise", sigma="25", color="gray").name == "g25.pth"
    assert resolve_model(None, task="denoise", sigma="25", color="rgb").name == "c25.pth"
    assert resolve_model(None, task="denoise", sigma="50", color="rgb").name == "cb.pth"  # colour blind > gray
    assert resolve_model(None, task="denoise", sigma="50", color="gray").name == "g50.pth"
    assert resolve_model(None, task="sr", scale=4).name == "x4.pth"
    assert resolve_model("e4", task="sr").name == "e4.pth"
    with pytest.raises(weights.ModelLoadError, match="no shipped default x2 sr model"):
        resolve_model(None, task="sr", scale=2)



def test_upscale_with_no_model_named_uses_the_default_x4(tmp_path: Path) -> None:
    if _default("sr", scale=4) is None:
        pytest.skip("no default x4 model shipped yet")
    rng = np.random.default_rng(0)
    io.write_image(tmp_path / "in.png", rng.integers(0, 256, (21, 27, 3), dtype=np.uint8))
    r = subprocess.run([restore_exe(), "upscale", "in.png", "--scale", "4"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert io.read_image(tmp_path / "in_x4.png").shape == (84, 108, 3)


def test_denoise_with_no_model_named_handles_gray_and_colour(tmp_path: Path) -> None:
    """No --model/--sigma: the default of the input's colour for its estimated noise level -- here the blind one,
    as 19x23 is too small to estimate (each written line says so)."""
    if _default("denoise", sigma="blind", color="gray") is None:
        pytest.skip("no default blind gray denoiser shipped yet")
    rng = np.random.default_rng(0)
    io.write_image(tmp_path / "in" / "g.png", rng.integers(0, 256, (19, 23), dtype=np.uint8))
    io.write_image(tmp_path / "in" / "c.png", rng.integers(0, 256, (19, 23, 3), dtype=np.uint8))
    r = subprocess.run([restore_exe(), "denoise", "in", "-o", "out"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert io.read_image(tmp_path / "out" / "g_denoised.png").shape == (19, 23)
    assert io.read_image(tmp_path / "out" / "c_denoised.png").shape == (19, 23, 3)
    lines = r.stdout.strip().splitlines()
    tail = "(23x19 -> 23x19; a 23x19 image is too small to estimate its noise level: blind model)"
    assert sum(line.endswith(tail) for line in lines) == 2, lines
    summary = lines[-1]  # names both models that ran, never "pending"
    for color in ("gray", "rgb"):
        m = load_model(SHIPPED_DIR / str(_default("denoise", sigma="blind", color=color)["file"])).meta
        assert f"{m.family}/{m.variant} x1, cpu, fp32" in summary, summary
    assert "pending" not in summary


def test_summary_names_the_model_the_size_picked(tmp_path: Path) -> None:
    """--width 64 on a 32-px-wide image runs the x2 default: the summary names it, not the x4 loaded first."""
    x2 = _default("sr", scale=2, color="rgb")
    if x2 is None or _default("sr", scale=4, color="rgb") is None:
        pytest.skip("needs the shipped x2 and x4 defaults")
    io.write_image(tmp_path / "a.png", np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    r = subprocess.run([restore_exe(), "upscale", "a.png", "--width", "64"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    m = load_model(SHIPPED_DIR / str(x2["file"])).meta
    summary = r.stdout.strip().splitlines()[-1]
    assert f"[{m.family}/{m.variant} x2, cpu, fp32 " in summary and "pending" not in summary, summary


def test_manifest_path_is_inside_the_package() -> None:
    assert MANIFEST.parent == SHIPPED_DIR and SHIPPED_DIR.parent.name == "restore"


@needs_models
def test_bench_takes_shipped_model_names() -> None:
    from restore.bench import load

    sr = next((m for m in MODELS if m["task"] == "sr"), None)
    if sr is None:
        pytest.skip("no SR model shipped yet")
    label, model = load(str(sr["name"]), 4)
    assert label == sr["name"] and model.meta.params == sr["params"]
