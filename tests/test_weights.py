from __future__ import annotations

import pytest
import torch

from restore.weights import ModelLoadError, detect, read_state_dict, unwrap_state_dict


def test_unwrap_prefers_params_ema_and_strips_module():
    a, b = torch.zeros(2), torch.ones(2)
    sd = unwrap_state_dict({"params": {"module.x": a}, "params_ema": {"module.x": b}})
    assert list(sd) == ["x"] and torch.equal(sd["x"], b)
    assert list(unwrap_state_dict({"state_dict": {"y": a}})) == ["y"]
    assert list(unwrap_state_dict({"module.z": a, "w": a})) == ["module.z", "w"]  # mixed: left alone


def test_unwrap_rejects_non_state_dicts():
    with pytest.raises(ModelLoadError, match="expected a state dict"):
        unwrap_state_dict({"epoch": 3})
    with pytest.raises(ModelLoadError, match="expected a state dict"):
        unwrap_state_dict([1, 2])


def test_unknown_architecture_names_families(tmp_path):
    p = tmp_path / "odd.pth"
    torch.save({"foo.weight": torch.zeros(3, 3)}, p)
    with pytest.raises(ModelLoadError, match="unrecognised architecture.*imdn.*foo.weight"):
        detect(read_state_dict(p), source=str(p))
