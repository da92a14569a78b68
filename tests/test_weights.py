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


# ------------------------------------------------------------------------------------------ unwrapping


def test_unwrap_rejects_a_dict_that_is_not_all_tensors():
    t = torch.zeros(2)
    for obj in ({"w": t, "epoch": 3}, {"params": {"w": t, "note": "x"}}, {"params_ema": {"w": t, "b": [t]}},
                {"a": 1, "b": 2.0}, {}, {"params": {}}):
        with pytest.raises(ModelLoadError, match="expected a state dict"):
            unwrap_state_dict(obj)


def test_unwrap_only_looks_under_the_known_wrapper_keys():
    t, u = torch.zeros(2), torch.ones(3)
    for key in ("optimizer", "ema", "generator", "schedulers"):
        with pytest.raises(ModelLoadError, match="expected a state dict"):
            unwrap_state_dict({key: {"w": t}})
    # an unknown key listed first is skipped, the known wrapper taken
    sd = unwrap_state_dict({"optimizer": {"w": t}, "iter": 5, "params": {"module.x": u}})
    assert list(sd) == ["x"] and torch.equal(sd["x"], u)
    sd = unwrap_state_dict({"state_dict": {"model": {"y": u}}, "epoch": 1})  # nested known wrappers
    assert list(sd) == ["y"]


# ------------------------------------------------------------------------------------------ ambiguity


def _espcn_dict() -> dict[str, torch.Tensor]:
    from restore.archs.espcn import ESPCN

    return ESPCN(scale=2).state_dict()


def test_two_families_detecting_one_dict_is_an_error(monkeypatch, tmp_path):
    """Never the first match: load_model / resolve / detect refuse, naming both families."""
    from restore import registry
    from restore.weights import load_model, resolve

    monkeypatch.setitem(registry.FAMILIES, "espcn_twin", "restore.archs.espcn")  # a second family, same detector
    sd = _espcn_dict()
    assert [d.family for d in registry.detect_all(sd)] == ["espcn", "espcn"]
    with pytest.raises(ModelLoadError, match=r"ambiguous, matches \['espcn', 'espcn'\]"):
        resolve(sd, source="twin.pth")
    with pytest.raises(ModelLoadError, match="ambiguous"):
        detect(sd)
    p = tmp_path / "twin.pth"
    torch.save(sd, p)
    with pytest.raises(ModelLoadError, match=r"twin\.pth: ambiguous"):
        load_model(p)


def test_ambiguity_builds_nothing_and_never_asks_the_zoo(monkeypatch):
    from restore import registry, zoo
    from restore.archs.base import Detection
    from restore.archs.espcn import ESPCN
    from restore.weights import resolve

    built: list[str] = []
    sd = _espcn_dict()

    def det(family: str) -> Detection:
        def build() -> torch.nn.Module:
            built.append(family)
            return ESPCN(scale=2)

        return Detection(family=family, build=build, state_dict=sd, description=family)

    monkeypatch.setattr(registry, "detect_all", lambda state_dict: [det("first"), det("second")])
    monkeypatch.setattr(zoo, "from_state_dict", lambda *a, **k: pytest.fail("the zoo was consulted"))
    with pytest.raises(ModelLoadError, match=r"ambiguous, matches \['first', 'second'\]"):
        resolve(sd)
    assert built == []
    monkeypatch.setattr(registry, "detect_all", lambda state_dict: [det("only")])
    model, found = resolve(sd)
    assert built == ["only"] and found == {"loader": "restore", "detected": "only"}


def test_sigma_bands_hold_their_level_and_do_not_overlap():
    """``--sigma auto``: each colour's bands contain their own level, are ordered and disjoint; an estimate outside
    them, or none (an image too small), runs the blind model."""
    from restore.weights import SHIPPED_SIGMAS, SIGMA_BANDS, sigma_for_estimate

    for color, bands in SIGMA_BANDS.items():
        assert tuple(bands) == SHIPPED_SIGMAS
        edges = [x for lv in SHIPPED_SIGMAS for x in bands[lv]]
        assert edges == sorted(edges) and len(set(edges)) == len(edges), color
        for lv, (lo, hi) in bands.items():
            assert lo < float(lv) < hi
            assert sigma_for_estimate(float(lv), color) == lv
            assert sigma_for_estimate(lo - 0.01, color) != lv and sigma_for_estimate(hi + 0.01, color) != lv
        assert sigma_for_estimate(None, color) == sigma_for_estimate(3.0, color) == "blind"
        assert sigma_for_estimate(37.0, color) == sigma_for_estimate(80.0, color) == "blind"
