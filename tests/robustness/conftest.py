"""The project's own red team: inputs a user or an attacker can hand ``restore``, generated here (no committed
binaries). Every case asserts the documented exit code, a one-line message naming the file, no traceback, no
partial output, inputs unchanged, and that the rest of a batch is processed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from restore.archs.espcn import ESPCN
from restore.io import image


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("restore: error:")]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``restore ...`` in this process (torch loaded once): exit code and captured output."""
    from restore.cli import main

    def run(*argv: str | Path) -> Run:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # argparse usage errors
            rc = int(e.code or 0)
        cap = capsys.readouterr()
        return Run(rc, cap.out, cap.err)

    return run


@pytest.fixture(scope="session")
def espcn_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("weights") / "espcn_x2.pth"
    torch.save(ESPCN(scale=2, features=(8, 8)).state_dict(), p)
    return p


@pytest.fixture(scope="session")
def dncnn_pth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from restore.archs.dncnn import DnCNN

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("weights") / "dncnn_rgb.pth"
    torch.save(DnCNN(in_channels=3, num_layers=3, num_features=8).state_dict(), p)
    return p


def write_png(path: Path, h: int = 12, w: int = 10, seed: int = 0) -> Path:
    image.write_image(path, np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return path


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (inputs must come out unchanged)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_clean_failure(r: Run, name: str, *, rc: int) -> None:
    """Exit code ``rc``, exactly one error line and it names ``name``, no traceback anywhere."""
    assert r.rc == rc, (r.rc, r.err)
    assert "Traceback" not in r.err + r.out
    assert len(r.error_lines) == 1, r.err
    assert name in r.error_lines[0], r.error_lines[0]


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".part" in p.name]
