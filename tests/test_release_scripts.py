"""scripts/train_release.py, scripts/ship_weights.py and scripts/prepare_extra_data.py: the release plan is
consistent (every stage's option file and overrides validate, warm starts and shipped models name real stages)
and the extra training photographs are copied (scikit-image) or extracted and halved (Debian wallpapers) exactly."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import make_results  # noqa: E402
import prepare_extra_data  # noqa: E402
import ship_weights  # noqa: E402
import train_release  # noqa: E402

from restore.train.options import load_options  # noqa: E402


@pytest.mark.parametrize("name", sorted(train_release.STAGES))
def test_every_stage_validates(name: str) -> None:
    stage = train_release.STAGES[name]
    opts = load_options(ROOT / stage.option_file, stage.sets, check_classes=False)
    assert opts.name == name  # experiments/<name> is where ship_weights looks
    assert opts.train.total_iter == stage.total_iter
    warm = [s.split("=", 1)[1] for s in stage.sets if s.startswith("path.pretrain_network_g=")]
    for path in warm:  # a warm start reads another stage's final weights, or a model as shipped at a commit
        if path.startswith(train_release.RELEASES.as_posix() + "/"):  # <model>.pth or <composite>.<part>.pth
            model, _, part = Path(path).stem.partition(".")
            assert model in {s.name for s in ship_weights.SHIPS} and part in ("", "luma", "chroma")
            continue
        start = Path(path).parts[1]
        assert start in train_release.STAGES and start != name


def _has_commit(commit: str) -> bool:
    probe = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _has_commit(train_release.SHIPPED_7), reason="git history without the session-7 release commit "
                    "(shallow clone)")
def test_extract_release_checks_the_manifest_of_that_commit(tmp_path: Path) -> None:
    out = tmp_path / train_release.SHIPPED_7 / "espcn_x2.pth"
    train_release.extract_release(out)
    blob = subprocess.run(["git", "show", f"{train_release.SHIPPED_7}:restore/weights/manifest.json"], cwd=ROOT,
                          check=True, capture_output=True).stdout
    want = next(m["sha256"] for m in json.loads(blob)["models"] if m["name"] == "espcn_x2")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == want
    assert set(torch.load(out, map_location="cpu", weights_only=True)) >= {"conv1.weight", "conv3.bias"}
    with pytest.raises(SystemExit, match="espcn_x9"):  # not shipped at that commit: a clear error, no file
        train_release.extract_release(tmp_path / train_release.SHIPPED_7 / "espcn_x9.pth")
    assert not (tmp_path / train_release.SHIPPED_7 / "espcn_x9.pth").exists()


@pytest.mark.skipif(not _has_commit(train_release.SHIPPED_14), reason="git history without the session-14 release "
                    "commit (shallow clone)")
def test_extract_release_takes_one_part_of_a_composite(tmp_path: Path) -> None:
    """``<composite>.<part>.pth``: that part's tensors of the file shipped at the commit, prefix stripped, float32,
    loadable strictly into a gray DnCNN (how a chain continues when its experiment folders are gone)."""
    import io

    from restore.archs.dncnn import DnCNN

    out = tmp_path / train_release.SHIPPED_14 / "cdncnn_opp_s50.chroma.pth"
    train_release.extract_release(out)
    blob = subprocess.run(["git", "show", f"{train_release.SHIPPED_14}:restore/weights/cdncnn_opp_s50.pth"], cwd=ROOT,
                          check=True, capture_output=True).stdout
    whole = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    part = torch.load(out, map_location="cpu", weights_only=True)
    assert set(part) == {k.removeprefix("chroma.") for k in whole if k.startswith("chroma.")}
    assert all(v.dtype == torch.float32 and torch.equal(v, whole[f"chroma.{k}"].float()) for k, v in part.items())
    DnCNN(in_channels=1, num_layers=17, batch_norm=False).load_state_dict(part, strict=True)
    with pytest.raises(SystemExit, match="no 'lume"):  # a part the file does not have: a clear error, no file
        train_release.extract_release(tmp_path / train_release.SHIPPED_14 / "cdncnn_opp_s50.lume.pth")
    assert not list((tmp_path / train_release.SHIPPED_14).glob("*lume*"))


def test_ship_composite_keeps_a_part_whose_folder_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a new machine (no experiment folders), re-shipping a composite with its recorded stages keeps both parts
    tensor for tensor, and twice gives the same bytes (same sha256)."""
    old = {m["name"]: m for m in json.loads(ship_weights.MANIFEST.read_text())["models"]}
    recorded = {str(r["stage"]): r for m in old.values() for r in m.get("stages", [])}
    comp = next(s for s in ship_weights.SHIPS if s.name == "cdncnn_opp_s50")
    monkeypatch.setattr(ship_weights, "WEIGHTS", tmp_path)
    shutil.copy(ROOT / "restore/weights/cdncnn_opp_s50.pth", tmp_path / "cdncnn_opp_s50.pth")
    shipped = old["cdncnn_opp_s50"]
    entry = ship_weights.ship_composite(comp, tmp_path / "no-experiments", partial=False, recorded=recorded,
                                        shipped=shipped)
    assert entry is not None and entry["iterations"] == shipped["iterations"]
    assert [(r["stage"], r["part"]) for r in entry["stages"]] == [(r["stage"], r["part"]) for r in shipped["stages"]]
    before = torch.load(ROOT / "restore/weights/cdncnn_opp_s50.pth", map_location="cpu", weights_only=True)
    after = torch.load(tmp_path / "cdncnn_opp_s50.pth", map_location="cpu", weights_only=True)
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    again = ship_weights.ship_composite(comp, tmp_path / "no-experiments", partial=False, recorded=recorded,
                                        shipped=shipped)
    assert again is not None and again["sha256"] == entry["sha256"]
    # a part recorded with other stages than the plan's (the plan moved on, its folder is gone): nothing shipped
    moved = ship_weights.Composite("cdncnn_opp_s50", comp.luma, comp.chroma + ("opp_chroma_s50_2",), comp.sigma)
    assert ship_weights.ship_composite(moved, tmp_path / "no-experiments", partial=False, recorded=recorded,
                                       shipped=shipped) is None


def test_manifest_follows_the_release_plan() -> None:
    """Each shipped entry's default flag and summary are the plan's (a stale default once outlived its change)."""
    shipped = {m["name"]: m for m in json.loads(ship_weights.MANIFEST.read_text())["models"]}
    assert set(shipped) <= {s.name for s in ship_weights.SHIPS}, "a shipped model the plan does not know"
    for ship in ship_weights.SHIPS:  # a planned model may still be training (not shipped yet)
        if ship.name in shipped:
            assert (shipped[ship.name]["default"], shipped[ship.name]["summary"]) == (ship.default, ship.summary), \
                ship.name


def test_shipped_models_name_real_stages() -> None:
    for ship in ship_weights.SHIPS:
        assert all(s in train_release.STAGES for s in ship.stages), ship.name
    # one default per SR scale (whatever its colour space); denoisers: one per sigma and colour
    defaults = [(s.task, s.scale) if s.task == "sr" else (s.task, s.sigma, s.color) for s in ship_weights.SHIPS
                if s.default]
    assert len(defaults) == len(set(defaults)), "two defaults for the same slot"
    assert {d[1] for d in defaults if d[0] == "sr"} == {2, 3, 4}


@pytest.mark.parametrize("folder", [prepare_extra_data.OUT, prepare_extra_data.WALLPAPERS_OUT])
def test_stages_with_extra_photos_list_the_folder(folder: Path) -> None:
    extra = folder.as_posix()
    users = [s for s in train_release.STAGES.values() if any(extra in x for x in s.sets)]
    assert users, f"no stage trains on {extra}"
    for stage in users:
        opts = load_options(ROOT / stage.option_file, stage.sets, check_classes=False)
        roots = [str(r) for r in opts.datasets["train"].dataroot_gt]
        assert extra in roots and len(roots) == len(set(roots)), roots
        # the extra photographs are added to the shared training sets, never replace them
        assert all(r in roots for r in ("../shared/data/train/T91", "../shared/data/train/BSD200"))


def test_halve_is_a_2x2_box_average(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.jpg", quality=100)
    src = np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB"), dtype=np.float64)
    prepare_extra_data.halve(tmp_path / "a.jpg", tmp_path / "a.png")
    out = np.asarray(Image.open(tmp_path / "a.png"))
    want = src.reshape(3, 2, 5, 2, 3).mean(axis=(1, 3))
    assert out.shape == (3, 5, 3) and np.abs(out - want).max() <= 0.5 + 1e-9


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian) to build a test package")
def test_wallpapers_from_a_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in .deb with the package's layout: the largest size of each chosen wallpaper is halved and
    recorded; a package with another hash is refused; a second run with everything in place does nothing."""
    from PIL import Image

    pkg = tmp_path / "pkg"
    for name, sizes in {"Path": [(40, 24), (80, 48)], "Render": [(80, 48)]}.items():
        folder = pkg / "usr/share/wallpapers" / name / "contents/images"
        folder.mkdir(parents=True)
        for w, h in sizes:
            Image.new("RGB", (w, h), (w, h, 7)).save(folder / f"{w}x{h}.jpg")
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN/control").write_text("Package: fake-wallpapers\nVersion: 1\nArchitecture: all\n"
                                        "Maintainer: t <t@t>\nDescription: t\n")
    deb = tmp_path / "fake.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(deb)], check=True, capture_output=True)
    monkeypatch.setattr(prepare_extra_data, "WALLPAPERS", {"Path": "someone"})
    with pytest.raises(SystemExit, match="sha256"):
        prepare_extra_data.prepare_wallpapers(root=tmp_path, deb=deb)
    monkeypatch.setattr(prepare_extra_data, "WALLPAPER_DEB_SHA256", hashlib.sha256(deb.read_bytes()).hexdigest())
    dst = prepare_extra_data.prepare_wallpapers(root=tmp_path, deb=deb)
    assert sorted(p.name for p in dst.iterdir()) == ["Path.png"]  # "Render" was not chosen
    assert Image.open(dst / "Path.png").size == (40, 24)  # the 80x48 one, halved
    record = json.loads(dst.with_name(dst.name + ".json").read_text())
    (entry,) = record["photos"]
    assert entry["source"].endswith("Path/contents/images/80x48.jpg") and entry["licence"] == "LGPLv3"
    assert entry["sha256"] == hashlib.sha256((dst / "Path.png").read_bytes()).hexdigest()
    before = (dst / "Path.png").stat().st_mtime_ns
    prepare_extra_data.prepare_wallpapers(root=tmp_path, deb=tmp_path / "absent.deb")  # all there: no-op
    assert (dst / "Path.png").stat().st_mtime_ns == before


def test_prepare_copies_exact_bytes_and_records_them(tmp_path: Path) -> None:
    dst = prepare_extra_data.prepare(root=tmp_path)
    src = prepare_extra_data.skimage_data_dir()
    names = sorted(p.name for p in dst.iterdir())
    assert names == sorted(prepare_extra_data.PHOTOS)
    assert "camera.png" not in names  # the cameraman is in Set12
    assert "coffee.png" not in names  # the example input of the README and the web demo
    record = json.loads(dst.with_name(dst.name + ".json").read_text())
    for entry in record["photos"]:
        data = (dst / entry["file"]).read_bytes()
        assert data == (src / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["licence"] and entry["source"]
    before = {p.name: p.stat().st_mtime_ns for p in dst.iterdir()}
    prepare_extra_data.prepare(root=tmp_path)  # idempotent: nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in dst.iterdir()} == before
    assert not list(dst.parent.glob(".*.part"))


def test_bench_train_step_times_every_case(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import bench_train_step

    tiny = {k: (lambda: torch.nn.Conv2d(1, 2, 3, padding=1), (2, 1, 8, 8), v[2])
            for k, v in bench_train_step.CASES.items()}
    monkeypatch.setattr(bench_train_step, "CASES", tiny)
    assert bench_train_step.main(["--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "span_tiny_x4" in out and "dncnn_17" in out and out.count("bf16 NHWC") == 1


def test_budget_note_reads_the_manifest() -> None:
    """The README's training paragraph is rendered from the shipped manifest, so its figures follow the weights."""
    models = json.loads((ROOT / "restore" / "weights" / "manifest.json").read_text())["models"]
    x4 = next(m for m in models if m["name"] == "span_tiny_x4_distilled")
    student = [s for s in x4["stages"] if s["option_file"].endswith("/span_tiny_x4.yml")]
    note = " ".join(make_results.budget_note(models).split())
    assert f"({sum(s['iterations'] for s in student):,} iterations of L1 in" in note
    assert f"{sum(s['wall_seconds'] for s in x4['stages']) / 3600:.1f} h for the default x4 model" in note
    assert make_results.budget_note([m for m in models if m["name"] != "span_tiny_x4_distilled"]) == ""
    readme = (ROOT / "README.md").read_text()
    assert "<!-- results-budget:begin -->" in readme and "<!-- results-budget:end -->" in readme


def test_comparison_rows_come_from_the_cache_without_checkpoints(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """The weighted-vs-plain table survives the (uncommitted) training checkpoints: cached figures are shown,
    nothing is evaluated, and a row with neither checkpoint nor figures is left out."""
    monkeypatch.setattr(make_results, "ROOT", tmp_path)  # no experiments/ here
    monkeypatch.setattr(make_results, "restore_eval", lambda *a, **k: pytest.fail("evaluated without a checkpoint"))
    cache = make_results.load_cache()
    rows = make_results.comparison_rows(cache)
    assert len(rows) == 2 + len(make_results.COMPARISON)
    assert all("—" not in r for r in rows[2:]), rows
    assert len(make_results.comparison_rows({})) == 2


def test_tta_rows_evaluate_with_the_flag_and_show_the_gain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []
    for folder in ("sr/Set5", "sr/Set14"):
        (tmp_path / folder).mkdir(parents=True)

    def fake_eval(source: list[str], data: Path, *, scale: int | None = None, sigma: int | None = None) -> dict:
        calls.append(source)
        return {"psnr_y": 30.25 if "--tta" in source else 30.0}

    monkeypatch.setattr(make_results, "restore_eval", fake_eval)
    monkeypatch.setattr(make_results, "save_cache", lambda cache: None)
    monkeypatch.setattr(make_results, "DATA", tmp_path)
    row = {"name": "espcn_x2", "task": "sr", "scale": 2, "sigma": None, "color": "y", "key": "k",
           "source": ["--model", "espcn_x2"]}
    cache = {"k|Set5|x2": {"psnr_y": 30.0}}
    lines = make_results.tta_rows({"ours": [row]}, cache)
    assert calls == [["--model", "espcn_x2", "--tta"]] * 2  # Set5 and Set14; Set14's plain figure is missing
    assert lines[2:] == ["| espcn_x2 | Set5 x2 | 30.00 (Y-PSNR) | 30.25 | +0.25 |"]
    assert "k|Set5|x2|tta" in cache
