"""restore.train.checkpoint.atomic_save: atomic, and the same tensors give the same bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from restore.train.checkpoint import atomic_save, load


def test_same_tensors_same_bytes_whatever_the_file_name(tmp_path: Path) -> None:
    """torch.save names the archive's inner folder after the file it writes; atomic_save writes a temp file with a
    random name, so without care every save of one model had another sha256 (a re-shipped model lost its
    recorded scores)."""
    g = torch.Generator().manual_seed(0)
    sd = {"a.weight": torch.randn(3, 2, 3, 3, generator=g).half(), "a.bias": torch.randn(3, generator=g)}
    paths = [atomic_save(sd, tmp_path / name) for name in ("one.pth", "two.pth", "one.pth")]
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert len(digests) == 1
    back = load(tmp_path / "two.pth")
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.pth", "two.pth"]  # no temp file left
