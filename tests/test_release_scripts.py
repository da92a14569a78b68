"""scripts/train_release.py, scripts/ship_weights.py and scripts/prepare_extra_data.py: the release plan is
consistent (every stage's option file and overrides validate, warm starts and shipped models name real stages)
and the extra training photographs are copied exactly."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

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
    for path in warm:  # a warm start reads another stage's final weights
        start = Path(path).parts[1]
        assert start in train_release.STAGES and start != name


def test_shipped_models_name_real_stages() -> None:
    for ship in ship_weights.SHIPS:
        assert all(s in train_release.STAGES for s in ship.stages), ship.name
    # one default per SR scale (whatever its colour space); denoisers: one per sigma and colour
    defaults = [(s.task, s.scale) if s.task == "sr" else (s.task, s.sigma, s.color) for s in ship_weights.SHIPS
                if s.default]
    assert len(defaults) == len(set(defaults)), "two defaults for the same slot"
    assert {d[1] for d in defaults if d[0] == "sr"} == {2, 3, 4}


def test_sr_stages_with_extra_photos_list_the_folder() -> None:
    extra = prepare_extra_data.OUT.as_posix()
    users = [s for s in train_release.STAGES.values() if any(extra in x for x in s.sets)]
    assert users, "no stage trains on the extra photographs"
    for stage in users:
        opts = load_options(ROOT / stage.option_file, stage.sets, check_classes=False)
        roots = [str(r) for r in opts.datasets["train"].dataroot_gt]
        assert extra in roots and len(roots) == 4


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
