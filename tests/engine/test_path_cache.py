"""The tuning cache (restore.engine.path_cache): a second Restorer (another process, a second `restore upscale`)
reuses the measured CPU path and the exported graph; anything that can change the answer changes the key; a
damaged record is ignored; `restore cache info|clear`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from restore.archs.espcn import ESPCN
from restore.engine import cpu_paths as cpu
from restore.engine import path_cache
from restore.engine.restorer import Restorer


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return ESPCN(scale=2, features=(8, 8)).eval()


def _img(side: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)


class _Spy:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.timed = 0
        self.exported = 0
        real_fastest, real_export = cpu.fastest_fp32, cpu.export_onnx

        def fastest(*a, **k):  # noqa: ANN202
            self.timed += 1
            return real_fastest(*a, **k)

        def export(*a, **k):  # noqa: ANN202
            self.exported += 1
            return real_export(*a, **k)

        monkeypatch.setattr(cpu, "fastest_fp32", fastest)
        monkeypatch.setattr(cpu, "export_onnx", export)


def test_second_run_reuses_the_choice_and_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(monkeypatch)
    first = Restorer(_model(), device="cpu")
    a = first.run(_img(160))
    assert spy.timed == 1 and first.backend in cpu.FP32_CANDIDATES
    second = Restorer(_model(), device="cpu")
    b = second.run(_img(160))
    assert spy.timed == 1 and second.backend == first.backend  # the cached choice, untimed
    assert spy.exported == (1 if cpu.onnxruntime_available() else 0)  # the graph came from the cache
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    info = path_cache.info()
    assert info["paths"]["entries"] == 1


def test_cached_choice_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """fastest_fp32 verified the cached choice before storing it: a cache hit runs no eager reference (the unfused
    model on a crop: most of a small job's time after ``import torch``); the small-input default still does."""
    eager_runs = []
    real_forward = cpu.EagerModel.forward

    def counting(self, x):  # noqa: ANN001, ANN202
        eager_runs.append(tuple(x.shape))
        return real_forward(self, x)

    monkeypatch.setattr(cpu.EagerModel, "forward", counting)
    Restorer(_model(), device="cpu").run(_img(160))
    assert eager_runs  # timed: the reference ran
    eager_runs.clear()
    r = Restorer(_model(), device="cpu")
    r.run(_img(160))
    assert eager_runs == [] or r.backend == "eager", eager_runs
    eager_runs.clear()
    small = Restorer(_model(), device="cpu")
    small.run(_img(100))  # under SMALL_PROBE_PIXELS: the measured default, verified on the crop
    assert eager_runs, "the untimed default must still be checked against the model"


def test_other_weights_threads_or_size_bucket_measure_again(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(monkeypatch)
    Restorer(_model(0), device="cpu").run(_img(160))
    Restorer(_model(1), device="cpu").run(_img(160))  # other weights
    assert spy.timed == 2
    Restorer(_model(0), device="cpu").run(_img(400))  # probe 256x256: another size bucket than 160x160
    assert spy.timed == 3
    n = torch.get_num_threads()
    torch.set_num_threads(n + 1)
    try:
        Restorer(_model(0), device="cpu").run(_img(160))
    finally:
        torch.set_num_threads(n)
    assert spy.timed == 4


def test_small_input_uses_the_default_untimed(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(monkeypatch)
    r = Restorer(_model(), device="cpu")
    r.run(_img(100))  # 100x100 < SMALL_PROBE_PIXELS, over TUNE_MIN_PIXELS
    assert spy.timed == 0
    assert r.backend == (path_cache.DEFAULT_FP32_PATH if cpu.onnxruntime_available() else "torch")


def test_damaged_record_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(monkeypatch)
    Restorer(_model(), device="cpu").run(_img(160))
    for rec in (path_cache.cache_dir() / "paths").glob("*.json"):
        rec.write_text("{not json")
    Restorer(_model(), device="cpu").run(_img(160))
    assert spy.timed == 2
    recs = list((path_cache.cache_dir() / "paths").glob("*.json"))
    assert len(recs) == 1 and json.loads(recs[0].read_text())["backend"] in cpu.FP32_CANDIDATES


def test_digest_depends_on_the_weights_only() -> None:
    assert path_cache.model_digest(_model(0)) == path_cache.model_digest(_model(0))
    assert path_cache.model_digest(_model(0)) != path_cache.model_digest(_model(1))


def test_digest_of_a_model_with_scalar_buffers() -> None:
    """BatchNorm's 0-dim ``num_batches_tracked`` (a DnCNN trained with batch_norm: true, before fuse) is hashed
    like any tensor: it once raised 'self.dim() cannot be 0 to view Long as Byte' on the first large image."""
    from restore.archs.dncnn import DnCNN

    torch.manual_seed(0)
    net = DnCNN(num_layers=3, num_features=4, batch_norm=True)
    assert any(t.dim() == 0 for t in net.state_dict().values())
    a = path_cache.model_digest(net)
    next(t for t in net.state_dict().values() if t.dim() == 0).fill_(5)
    assert path_cache.model_digest(net) != a


def test_cache_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(path_cache.ENV, str(tmp_path / "c"))
    assert path_cache.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(path_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert path_cache.cache_dir() == tmp_path / "xdg" / "restore"


def test_cli_cache_info_and_clear(capsys: pytest.CaptureFixture[str]) -> None:
    from restore.cli import main

    Restorer(_model(), device="cpu").run(_img(160))
    assert main(["cache", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["paths"]["entries"] == 1 and info["folder"] == str(path_cache.cache_dir())
    assert main(["cache", "clear"]) == 0
    assert "removed" in capsys.readouterr().out
    assert path_cache.info()["paths"]["entries"] == 0
