"""Every family's state dicts are recognised by exactly one family, and round-trip through load_model."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from restore.archs.cfsr import CFSR
from restore.archs.dncnn import DnCNN
from restore.archs.espcn import ESPCN
from restore.archs.imdn import IMDN, IMDN_AS, IMDN_RTC, IMDN_RTE
from restore.archs.span import SPAN
from restore.registry import FAMILIES, detect_all
from restore.weights import load_model
from tests.conftest import shared_path

MODELS: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "imdn-x3": ("imdn", lambda: IMDN(scale=3, nf=16, num_modules=2)),
    "imdn-as": ("imdn", lambda: IMDN_AS(nf=16, num_modules=2)),
    "imdn-rtc": ("imdn", lambda: IMDN_RTC()),
    "imdn-rte": ("imdn", lambda: IMDN_RTE()),
    "cfsr-train": ("cfsr", lambda: CFSR(scale=2, embed_dim=16, depths=(1, 1), form="train")),
    "cfsr-deploy": ("cfsr", lambda: CFSR(scale=4, embed_dim=16, depths=(2,), form="deploy")),
    "span-train": ("span", lambda: SPAN(feature_channels=26, upscale=4, form="train")),
    "span-deploy": ("span", lambda: SPAN(feature_channels=28, upscale=2, form="deploy")),
    "span-cat20": ("span", lambda: SPAN(feature_channels=28, upscale=4, cat_channels=20, form="deploy")),
    "dncnn-bn": ("dncnn", lambda: DnCNN(in_channels=3, num_layers=17, batch_norm=True)),
    "dncnn-folded": ("dncnn", lambda: DnCNN(in_channels=1, num_layers=20, batch_norm=False)),
    "dncnn-weighted": ("dncnn", lambda: DnCNN(in_channels=1, num_layers=5, batch_norm=True, weighted=True)),
    "espcn-x3": ("espcn", lambda: ESPCN(scale=3)),
}


@pytest.mark.parametrize("key", sorted(MODELS))
def test_exactly_one_family_detects(key: str) -> None:
    family, make = MODELS[key]
    model = make()
    found = detect_all(model.state_dict())
    assert [d.family for d in found] == [family], f"{key}: detected by {[d.family for d in found]}"


@pytest.mark.parametrize("wrapper", ["flat", "params", "params_ema+module"])
@pytest.mark.parametrize("key", ["imdn-x3", "cfsr-train", "span-deploy", "dncnn-bn", "espcn-x3"])
def test_load_model_roundtrip(tmp_path, key: str, wrapper: str) -> None:
    family, make = MODELS[key]
    model = make().eval()
    sd = model.state_dict()
    if wrapper == "params":
        obj: object = {"params": sd}
    elif wrapper == "params_ema+module":
        obj = {"params": {k: torch.zeros_like(v) for k, v in sd.items()},
               "params_ema": {f"module.{k}": v for k, v in sd.items()}}
    else:
        obj = sd
    p = tmp_path / "w.pth"
    torch.save(obj, p)
    loaded = load_model(p)
    assert loaded.meta.family == family and loaded.meta == model.meta
    c = loaded.meta.in_channels
    x = torch.rand(1, c, 12, 16) * loaded.meta.input_range
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert not any(p.requires_grad for p in loaded.parameters())


REFERENCE = [
    ("imdn/IMDN_x2.pth", "imdn", 2), ("imdn/IMDN_x3.pth", "imdn", 3), ("imdn/IMDN_x4.pth", "imdn", 4),
    ("imdn/IMDN_AS.pth", "imdn", 1), ("imdn/model_RTC.pth", "imdn", 2), ("imdn/model_RTE.pth", "imdn", 2),
    ("cfsr/CFSR_x2.pth", "cfsr", 2), ("cfsr/CFSR_x3.pth", "cfsr", 3), ("cfsr/CFSR_x4.pth", "cfsr", 4),
    ("dscf/team23_DSCF.pth", "span", 4), ("ntire_esr/2024/team38_span_ch28_slim.pth", "span", 4),
    ("ntire_esr/2024/team39_spantiny_ch26_slim.pth", "span", 4), ("ntire_esr/2025/team46_span.pth", "span", 4),
    ("ntire_esr/2025/team24_spanf.pth", "span", 4), ("ntire_esr/2025/team36_espan.pth", "span", 4),
    ("dncnn/kair/dncnn_25.pth", "dncnn", 1), ("dncnn/saoyan/DnCNN-S-25.pth", "dncnn", 1),
    ("dncnn/saoyan/DnCNN-B.pth", "dncnn", 1),
    ("espcn/ESPCN_x2.pb", "espcn", 2), ("espcn/ESPCN_x3.pb", "espcn", 3), ("espcn/ESPCN_x4.pb", "espcn", 4),
]


@pytest.mark.parametrize("rel,family,scale", REFERENCE)
def test_reference_checkpoints_load_strictly(rel: str, family: str, scale: int) -> None:
    m = load_model(shared_path("weights", *rel.split("/")))
    assert (m.meta.family, m.meta.scale) == (family, scale)


@pytest.mark.parametrize("rel", ["dscf/team00_EFDN.pth", "ntire_esr/2024/team00_rlfn.pth"])
def test_foreign_architectures_are_refused_clearly(rel: str) -> None:
    from restore.weights import ModelLoadError

    with pytest.raises(ModelLoadError, match="unrecognised architecture"):
        load_model(shared_path("weights", *rel.split("/")))


def test_registry_lists_every_family() -> None:
    assert set(FAMILIES) == {f for f, _ in MODELS.values()}
