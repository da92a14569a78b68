"""scripts/bench_denoise.py on tiny synthetic images (no ../shared, no trained model): cache keys, resume, the
computed table and verdict, NLM's uint8 input, the README/results.md splice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from restore import io
from tests.scripts_module import load_script


@pytest.fixture(scope="module")
def bd():  # noqa: ANN201
    return load_script("bench_denoise")


def make_images(folder: Path, n: int, size: int = 40) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    base = np.linspace(0, 255, size)[None, :, None] * np.ones((size, 1, 3))
    for i in range(n):
        img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        io.write_image(folder / f"im{i}.png", img, overwrite=True)
    return io.list_images(folder)


def fake(bd, row: str, version: str = "v1", calls: list[str] | None = None, label: str = "fake"):  # noqa: ANN001, ANN201
    """A method that clips its input (counts its calls in ``calls``)."""
    def run(noisy: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.append(row)
        return np.clip(noisy, 0, 1)
    return bd.Method(row, row.split("-")[0], version, label, run)


def test_cache_key_follows_the_weights_file(bd, tmp_path: Path) -> None:
    w = tmp_path / "cdncnn_x.pth"
    w.write_bytes(b"weights one")
    k1 = bd.cache_key(bd.ours_method("ours", w), "CBSD68", 25, "101085")
    assert k1 == bd.cache_key(bd.ours_method("ours-blind", w), "CBSD68", 25, "101085")  # same file: one entry
    w.write_bytes(b"weights two")
    k2 = bd.cache_key(bd.ours_method("ours", w), "CBSD68", 25, "101085")
    assert k1 != k2 and bd.sha256(w) in k2
    assert bd.cache_key(bd.nlm_method(25), "CBSD68", 25, "a") != bd.cache_key(bd.nlm_method(15), "CBSD68", 15, "a")


def test_resume_computes_only_missing_images(bd, tmp_path: Path) -> None:
    files = make_images(tmp_path / "S", 3)
    cache_path = tmp_path / "cache.json"
    calls: list[str] = []
    methods = {25: [fake(bd, "ours", calls=calls), fake(bd, "ours-blind", calls=calls), fake(bd, "cbm3d", calls=calls)]}
    assert bd.run_bench({"S": files[:2]}, methods, bd.load_cache(cache_path), cache_path) == 4
    assert calls == ["ours", "cbm3d"] * 2  # ours-blind is the same file as ours: measured once
    assert len(json.loads(cache_path.read_text())["results"]) == 4
    calls.clear()
    assert bd.run_bench({"S": files}, methods, bd.load_cache(cache_path), cache_path) == 2  # a fresh process
    assert calls == ["ours", "cbm3d"]
    calls.clear()
    assert bd.run_bench({"S": files}, methods, bd.load_cache(cache_path), cache_path) == 0 and not calls
    methods[25][0] = fake(bd, "ours", version="v2", calls=calls)  # new weights: ours again, CBM3D not
    assert bd.run_bench({"S": files}, methods, bd.load_cache(cache_path), cache_path) == 3
    assert calls == ["ours"] * 3 and not list(tmp_path.glob("*.part"))


def cells_for(bd, table: dict[tuple[str, str, int], float]) -> dict:  # noqa: ANN001
    return {k: bd.Cell(p, 0.8, 2, 1.0, 0.5) for k, p in table.items()}


def test_verdict_and_table_come_from_the_numbers(bd) -> None:
    cells = cells_for(bd, {("ours", "CBSD68", 25): 30.00, ("cbm3d", "CBSD68", 25): 30.12,
                           ("ours", "Kodak24", 25): 31.50, ("cbm3d", "Kodak24", 25): 31.20,
                           ("ours", "Kodak24", 50): 28.001, ("cbm3d", "Kodak24", 50): 28.0})
    text = bd.verdict(cells, "cdncnn_blind", ["CBSD68", "Kodak24"], [25, 50])
    assert "wins 1 of 3 cells: Kodak24 σ25 (+0.30 dB)" in text
    assert "loses 1: CBSD68 σ25 (-0.12 dB)" in text and "ties 1: Kodak24 σ50" in text
    assert "cdncnn_blind" in text
    lines = bd.table(cells, {"ours": "**ours**", "cbm3d": "CBM3D"}, ["CBSD68", "Kodak24"], [25, 50])
    assert lines[0] == "| method | CBSD68 σ25 | CBSD68 σ50 | Kodak24 σ25 | Kodak24 σ50 | s/MP |"
    assert lines[2] == "| **ours** | 30.00 / 0.8000 | — | 31.50 / 0.8000 | 28.00 / 0.8000 | 2.00 |"
    assert bd.verdict({}, "x", ["CBSD68"], [25]).startswith("No cell")


def test_summary_labels_and_partial_runs(bd, tmp_path: Path) -> None:
    files = make_images(tmp_path / "S", 2)
    methods = {s: [fake(bd, "ours", label="m"), fake(bd, "ours-blind", label="m"),
                   fake(bd, "cbm3d", "b", label="CBM3D"), fake(bd, "nlm", f"h{s}", label="OpenCV NLM")]
               for s in (15, 25)}
    cache = bd.load_cache(tmp_path / "c.json")
    bd.run_bench({"S": files}, methods, cache, None)
    cells = bd.summarize(cache["results"], {"S": files[:1]}, methods)
    assert cells["ours", "S", 15].images == 1 and ("ours-blind", "S", 15) in cells
    labels = bd.row_labels(methods)
    assert list(labels) == ["ours", "cbm3d", "nlm"]  # the blind default is the same file: folded into ours
    assert "with and without" in labels["ours"] and "uint8" in labels["nlm"]
    methods[25][1] = fake(bd, "ours-blind", "other", label="blind")
    assert list(bd.row_labels(methods)) == ["ours", "ours-blind", "cbm3d", "nlm"]
    body = "\n".join(bd.section_body(cells, methods, {"S": files[:1]}, threads=1, picture=None))
    assert "ties 2" in body and "33.89 / 31.23 / 27.92" in body and "S: 1 images" in body


def test_nlm_gets_uint8(bd, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = bd.cv2.fastNlMeansDenoisingColored

    def spy(src: np.ndarray, *args: object) -> np.ndarray:
        seen.append(src.dtype)
        return real(src, *args)

    monkeypatch.setattr(bd.cv2, "fastNlMeansDenoisingColored", spy)
    noisy = np.random.default_rng(0).normal(0.5, 0.4, (24, 24, 3)).astype(np.float32)  # outside [0, 1] too
    out = bd.nlm_method(25).run(noisy)
    assert seen == [np.uint8] and out.dtype == np.uint8 and out.shape == noisy.shape
    np.testing.assert_array_equal(bd.nlm_input(np.array([-0.2, 0.5, 1.3, 0.1])), [0, 128, 255, 26])


def test_cbm3d_gets_the_unclipped_float_image(bd, monkeypatch: pytest.MonkeyPatch) -> None:
    bm3d = pytest.importorskip("bm3d")  # the real call costs seconds even on a tiny image: spy on it instead
    seen = []

    def spy(z: np.ndarray, sigma_psd: float, profile: object) -> np.ndarray:
        seen.append((z, sigma_psd, profile))
        return z

    monkeypatch.setattr(bm3d, "bm3d_rgb", spy)
    noisy = bd.add_noise(np.full((8, 8, 3), 250, np.uint8), 25, seed=0)
    method = bd.cbm3d_method(25, threads=1)
    assert method.run(noisy) is noisy and "bm3d" in method.version
    z, sigma_psd, profile = seen[0]
    assert z.dtype == np.float32 and z.max() > 1.0 and sigma_psd == pytest.approx(25 / 255)
    assert type(profile) is bm3d.BM3DProfile and profile.num_threads == 1  # the default ('np') profile


def test_readme_insert_and_replace(bd) -> None:
    readme = "# r\n\nDenoisers: gray and colour\nDnCNN.\n\n![x](y.png)\n"
    sec = bd.block(bd.TAG, "| a |")
    once = bd.insert_readme(readme, sec)
    assert once.index("DnCNN.") < once.index("<!-- denoise-bench:begin -->") < once.index("![x](y.png)")
    twice = bd.insert_readme(once, bd.block(bd.TAG, "| b |"))
    assert "| a |" not in twice and twice.count("denoise-bench:begin") == 1 and "```bash" not in twice


def test_main_writes_docs_picture_and_cache(bd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sets = {"CBSD68": tmp_path / "c", "Kodak24": tmp_path / "k"}
    make_images(sets["CBSD68"], 2)
    make_images(sets["Kodak24"], 2)
    (tmp_path / "README.md").write_text("# r\n\nDenoisers: all.\n\nend\n")
    for name, value in {"SETS": sets, "CACHE": tmp_path / "d.json", "RESULTS": tmp_path / "results.md",
                        "README": tmp_path / "README.md", "PICTURE": tmp_path / "img" / "p.png", "CROP": 16}.items():
        monkeypatch.setattr(bd, name, value)
    monkeypatch.setattr(bd, "build_methods", lambda names, sigma, threads: [
        fake(bd, "ours", label="cdncnn_blind"), fake(bd, "cbm3d", "b", label="CBM3D")])
    assert bd.main(["--sigmas", "25", "--limit", "1"]) == 0
    md = (tmp_path / "results.md").read_text()
    assert "<!-- denoise-bench:begin -->" in md and "only the first 1 of 2 images" in md
    assert "](img/denoise_compare.png)" in md
    readme = (tmp_path / "README.md").read_text()
    assert readme.index("Denoisers: all.") < readme.index("denoise-bench:begin") < readme.index("end")
    pic = io.read_image(tmp_path / "img" / "p.png")
    assert pic.shape[0] == 16 * bd.ZOOM + 24 and pic.shape[1] == 4 * 16 * bd.ZOOM + 3 * 8
    assert json.loads((tmp_path / "d.json").read_text())["picture"]["image"] == "im0.png"


def test_best_crop_finds_the_textured_window(bd) -> None:
    flat = np.full((64, 64, 3), 128, np.uint8)
    busy = flat.copy()
    busy[40:56, 8:24] = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    assert bd.best_crop([flat, busy], 16) == (1, 40, 8)


def test_the_tta_row_is_its_own_cache_entry_and_verdict(bd, tmp_path: Path) -> None:
    w = tmp_path / "cdncnn_x.pth"
    w.write_bytes(b"weights")
    plain, tta = bd.ours_method("ours", w), bd.ours_method("ours-tta", w, tta=True)
    assert bd.cache_key(plain, "CBSD68", 25, "a") != bd.cache_key(tta, "CBSD68", 25, "a")
    assert tta.label.endswith("+ tta") and tta.kind == "ours-tta"
    cells = cells_for(bd, {("ours", "Kodak24", 25): 31.90, ("ours-tta", "Kodak24", 25): 32.05,
                           ("cbm3d", "Kodak24", 25): 32.00})
    assert "wins 0 of 1" in bd.verdict(cells, "m", ["Kodak24"], [25])
    text = bd.verdict(cells, "m", ["Kodak24"], [25], row="ours-tta")
    assert text.startswith("Our default with `--tta` (m)") and "wins 1 of 1 cells: Kodak24 σ25 (+0.05 dB)" in text


@pytest.mark.shipped
def test_the_auto_row_picks_by_the_estimate_and_keys_on_the_bands(bd, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ours-auto`` (restore denoise without --sigma): the model for each noisy image's estimated level; its cache
    identity changes with the bands."""
    import restore.weights as rw

    ran: list[str] = []

    class Fake:
        def __init__(self, path: Path) -> None:
            self.path = path

        def run(self, noisy: np.ndarray) -> np.ndarray:
            ran.append(self.path.stem)
            return noisy

    monkeypatch.setattr(bd, "restorer", lambda path, tta=False: Fake(path))
    m = bd.auto_method()
    assert m.row == m.kind == "ours-auto" and m.label.startswith("auto: ")
    yy, xx = np.mgrid[0:96, 0:96] / 96
    clean = np.stack([0.4 + 0.2 * yy, 0.45 + 0.1 * xx, 0.5 + 0.1 * yy * xx], axis=2)
    for sigma, level in ((25, "25"), (50, "50"), (35, "blind")):
        m.run(clean + np.random.default_rng(0).normal(0, sigma / 255, clean.shape))
        assert ran[-1] == rw.default_denoiser(level, "rgb").stem
    monkeypatch.setitem(rw.SIGMA_BANDS["rgb"], "25", (20.0, 30.0))
    assert bd.auto_method().version != m.version
    assert "ours-auto" in bd.row_labels({25: [m]})
    cells = cells_for(bd, {("ours-auto", "Kodak24", 25): 31.5, ("cbm3d", "Kodak24", 25): 32.0})
    assert bd.verdict(cells, "est", ["Kodak24"], [25], row="ours-auto").startswith("Our default without `--sigma` "
                                                                                   "(est) vs CBM3D")
