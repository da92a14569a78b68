"""Shared fixtures for the training tests: a handful of generated images, and the tiny runs done once.

Everything is made here, in a temporary folder (no ../shared data): smooth random colour/gray images for
SR (HR-only training folder, paired HR + MATLAB-bicubic LR validation folder) and denoising. The tiny
option files (options/tiny/*.yml) name these folders relative to the working directory, so the runs chdir
into the temporary folder and use it as ``--root``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO

TINY = REPO / "options" / "tiny"
# order matters: the LoRA / distillation runs start from the SPAN run and distil from the IMDN run
TINY_RUNS = ("span_x2", "imdn_x2", "cfsr_x2", "espcn_x2", "span_lora_x2", "dsclora_x2", "dncnn_gray_blind",
             "dncnn_weighted_rgb")


def smooth_image(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    """Sum of random sinusoids, uint8: learnable structure at several frequencies."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, c), np.float32)
    for _ in range(6):
        fy, fx = rng.uniform(0.02, 0.25, 2)
        ph = rng.uniform(0, 6.28, c)
        img += np.sin(fy * yy[..., None] + fx * xx[..., None] + ph) * rng.uniform(0.2, 1.0)
    img = (img - img.min()) / (img.max() - img.min() + 1e-6)
    out = np.round(img * 255).astype(np.uint8)
    return out[..., 0] if c == 1 else out


def make_tiny_data(root: Path) -> Path:
    from restore import io
    from restore.metrics.imresize import imresize

    rng = np.random.default_rng(0)
    d = root / "tiny_data"
    for i in range(6):
        io.write_image(d / "sr" / "HR" / f"img{i}.png", smooth_image(rng, 64, 72, 3))
    for i in range(2):
        hr = smooth_image(rng, 48, 48, 3)
        io.write_image(d / "sr" / "val" / "HR" / f"v{i}.png", hr)
        io.write_image(d / "sr" / "val" / "LR_bicubic" / "X2" / f"v{i}x2.png", imresize(hr, 0.5))
    for color, c in (("gray", 1), ("rgb", 3)):
        for i in range(4):
            io.write_image(d / color / "train" / f"d{i}.png", smooth_image(rng, 40, 44, c))
        for i in range(2):
            io.write_image(d / color / "val" / f"v{i}.png", smooth_image(rng, 32, 32, c))
    return d


@dataclass
class TinyRuns:
    root: Path
    results: dict[str, object]

    def exp(self, run: str) -> Path:
        return self.root / "experiments" / f"tiny_{run}"


def losses_in_log(log: Path, key: str = "l_pix") -> list[float]:
    return [float(m.group(1)) for m in re.finditer(rf"{key}: ([0-9.eE+-]+)", log.read_text())]


@pytest.fixture
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyRuns]:
    """Every options/tiny/*.yml trained once (1 thread, CPU), in a temporary working directory."""
    pytest.importorskip("basicsr")
    from restore.train.loop import train

    root = tmp_path_factory.mktemp("tiny")
    make_tiny_data(root)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    results: dict[str, object] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for run in TINY_RUNS:
            results[run] = train(TINY / f"{run}.yml", root=root, overrides=["num_gpu=0"])
    torch.set_num_threads(n)
    yield TinyRuns(root=root, results=results)
