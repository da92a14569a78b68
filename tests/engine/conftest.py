from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _auto_device_is_cpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Engine tests compare against CPU float32 numerics: ``device="auto"`` (the default) must resolve to the
    CPU even on a CUDA machine, except in tests marked ``gpu``."""
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
