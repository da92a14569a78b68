"""restore export --onnx: every family's fused deploy form as an ONNX graph (dynamic batch / height / width, the
model's conventions in its metadata), ONNX Runtime equal to PyTorch within 1e-4 at odd sizes; --fp16."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from restore.archs.cfsr import CFSR
from restore.archs.dncnn import DnCNN
from restore.archs.espcn import ESPCN
from restore.archs.imdn import IMDN, IMDN_RTC
from restore.archs.span import SPAN
from restore.cli import main

if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
    pytest.skip("onnxruntime / onnx are not installed (the onnx extra)", allow_module_level=True)


def _bn_stats(m: nn.Module) -> nn.Module:
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    return m


FAMILIES = {  # small random networks of every family, each in its training form where it has one
    "espcn_y": lambda: ESPCN(scale=3, features=(8, 8)),
    "span_train": lambda: SPAN(feature_channels=12, upscale=2),
    "cfsr": lambda: CFSR(scale=2, embed_dim=12, depths=(1, 1), dw_size=7),
    "imdn": lambda: IMDN(scale=2, nf=16, num_modules=2),
    "imdn_rtc": lambda: IMDN_RTC(scale=2),
    "dncnn_bn": lambda: _bn_stats(DnCNN(in_channels=3, num_layers=4, num_features=8)),
    "dncnn_weighted": lambda: DnCNN(in_channels=1, num_layers=4, num_features=8, weighted=True),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_exports_and_matches(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    model = FAMILIES[name]().eval()
    src = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), src)
    out = tmp_path / f"{name}.onnx"
    assert main(["export", "--weights", str(src), "--onnx", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    diff = float(said.split("max |diff| ")[1].split()[0])
    assert diff <= 1e-4, said
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    meta = model.meta
    assert props["restore.family"] == meta.family and props["restore.scale"] == str(meta.scale)
    assert props["restore.color_space"] == meta.color_space and props["restore.input_range"] == str(meta.input_range)
    # dynamic batch, height and width, checked here too (independently of the export's own check)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    m = max(1, meta.size_multiple)
    for n, (h, w) in ((3, (11, 27)), (1, (36, 14))):
        h, w = -(-h // m) * m, -(-w // m) * m
        x = torch.rand(n, meta.in_channels, h, w) * meta.input_range
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"x": x.numpy()})[0]
        assert got.shape == ref.shape and np.abs(got - ref).max() / meta.input_range <= 1e-4


def test_fp16_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    torch.manual_seed(0)
    src = tmp_path / "espcn.pth"
    torch.save(ESPCN(scale=2, features=(8, 8)).state_dict(), src)
    assert main(["export", "--weights", str(src), "--onnx", "--fp16", "-o", str(tmp_path / "m.onnx")]) == 0
    m = onnx.load(tmp_path / "m.onnx")
    assert {i.data_type for i in m.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in and out
    assert {p.key: p.value for p in m.metadata_props}["restore.precision"] == "fp16"


def test_export_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.pth").write_text("not a checkpoint")
    assert main(["export", "--weights", str(tmp_path / "bad.pth"), "--onnx", "-o", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.pth" in err[0] and not (tmp_path / "x.onnx").exists()
    src = tmp_path / "e.pth"
    torch.save(ESPCN(scale=2, features=(4, 4)).state_dict(), src)
    assert main(["export", "--weights", str(src), "--fp16", "-o", str(tmp_path / "y.pth")]) == 2
    assert "--onnx" in capsys.readouterr().err
