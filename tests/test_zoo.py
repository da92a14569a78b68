"""The spandrel model zoo behind restore's own loader (issue 10).

Zoo models are built from randomly initialised spandrel architectures (no downloads), saved, and run
through ``restore upscale`` / ``restore denoise`` (tiled and whole), ``restore info`` and the Python API.
Tests that need spandrel skip without it; the pins that restore's families win, and the install hint
when spandrel is absent, run either way.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from restore import zoo
from restore.archs.cfsr import CFSR
from restore.archs.dncnn import DnCNN
from restore.archs.espcn import ESPCN
from restore.archs.imdn import IMDN, IMDN_RTC
from restore.archs.span import ESPAN, SPAN, SPANF
from restore.cli import main
from restore.engine.restorer import Restorer
from restore.io import read_image, write_image
from restore.weights import ModelLoadError, describe, load_model
from tests.conftest import shared_path

# spandrel's SwinIR / OmniSR call torch.meshgrid without ``indexing``
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")

# ------------------------------------------------------------------------------------------ helpers


def spandrel_or_skip():
    return pytest.importorskip("spandrel", reason="spandrel not installed (optional extra restore[zoo])",
                               exc_type=ImportError)


def save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def image(h: int = 36, w: int = 40, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def span_train_with_eval_copies() -> dict[str, torch.Tensor]:
    """A train-form SPAN dict as official training saves it: the ``Conv3XC`` branches *and* the eval-time
    ``eval_conv`` copies (spandrel's SPAN detector keys on both)."""
    model = SPAN(feature_channels=8, upscale=2, form="train").eval()
    sd = dict(model.state_dict())
    sd.update({k: v for k, v in model.fuse().state_dict().items() if ".eval_conv." in k})
    return sd


# Our own families: (expected family, state dict factory). Deploy forms as the papers ship them, plus the
# train forms spandrel could also read.
OWN: dict[str, tuple[str, Callable[[], dict[str, torch.Tensor]]]] = {
    "span-deploy-dscf": ("span", lambda: SPAN(feature_channels=26, upscale=4, form="deploy").state_dict()),
    "span-deploy-cat20": ("span", lambda: SPAN(feature_channels=28, cat_channels=20, form="deploy").state_dict()),
    "span-train": ("span", lambda: SPAN(feature_channels=8, upscale=2, form="train").state_dict()),
    "span-train+eval_conv": ("span", span_train_with_eval_copies),
    "spanf": ("span", lambda: SPANF().state_dict()),
    "espan": ("span", lambda: ESPAN().state_dict()),
    "imdn": ("imdn", lambda: IMDN(scale=2, nf=16, num_modules=2).state_dict()),
    "imdn-rtc": ("imdn", lambda: IMDN_RTC().state_dict()),
    "cfsr-deploy": ("cfsr", lambda: CFSR(scale=2, embed_dim=16, depths=(1,), form="deploy").state_dict()),
    "cfsr-train": ("cfsr", lambda: CFSR(scale=2, embed_dim=16, depths=(1,), form="train").state_dict()),
    "espcn": ("espcn", lambda: ESPCN(scale=3).state_dict()),
    "dncnn-kair": ("dncnn", lambda: DnCNN(in_channels=1, num_layers=17, batch_norm=False).state_dict()),
}


# ------------------------------------------------------------------------------------------ own families win


@pytest.mark.parametrize("key", sorted(OWN))
def test_own_families_never_reach_the_fallback(tmp_path, monkeypatch, key: str) -> None:
    family, make = OWN[key]

    def no_fallback(*args: object, **kwargs: object) -> nn.Module:
        raise AssertionError(f"{key}: the spandrel fallback was consulted")

    monkeypatch.setattr(zoo, "from_state_dict", no_fallback)
    p = save(make(), tmp_path / f"{key}.pth")
    model = load_model(p)
    assert model.meta.family == family and not isinstance(model, zoo.ZooModel)
    info = describe(p)
    assert info["loader"] == "restore" and info["family"] == family and "assumed" not in info


@pytest.mark.parametrize("key", ["span-train+eval_conv", "dncnn-kair"])
def test_own_loader_wins_where_spandrel_also_matches(tmp_path, key: str) -> None:
    """These dicts are recognised by spandrel too (SPAN, DnCNN): restore's family must take them."""
    sp = spandrel_or_skip()
    family, make = OWN[key]
    sd = make()
    matches = [s.architecture.id for s in sp.MAIN_REGISTRY.architectures("detection") if s.detect(dict(sd))]
    assert matches, f"{key}: spandrel no longer recognises this dict, so the pin is vacuous"
    p = save(sd, tmp_path / "w.pth")
    assert load_model(p).meta.family == family
    assert describe(p)["loader"] == "restore"


REFERENCE = ["imdn/IMDN_x4.pth", "imdn/model_RTC.pth", "cfsr/CFSR_x2.pth", "dscf/team23_DSCF.pth",
             "ntire_esr/2024/team38_span_ch28_slim.pth", "ntire_esr/2025/team24_spanf.pth",
             "ntire_esr/2025/team36_espan.pth", "ntire_esr/2025/team46_span.pth", "dncnn/kair/dncnn_25.pth",
             "dncnn/saoyan/DnCNN-S-25.pth", "espcn/ESPCN_x3.pb"]


@pytest.mark.parametrize("rel", REFERENCE)
def test_reference_checkpoints_stay_with_our_loader(monkeypatch, rel: str) -> None:
    """The published checkpoints (KAIR's dncnn_25 is also a spandrel DnCNN) never reach the fallback."""
    p = shared_path("weights", *rel.split("/"))
    monkeypatch.setattr(zoo, "from_state_dict", lambda *a, **k: pytest.fail(f"{rel}: fallback consulted"))
    assert describe(p)["loader"] == "restore"


def test_spandrel_span_train_dict_runs_as_our_span(tmp_path) -> None:
    """A SPAN train-form checkpoint written by spandrel's class is ours, with the same output."""
    spandrel_or_skip()
    from spandrel.architectures.SPAN import SPAN as SpandrelSPAN

    ref = SpandrelSPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2).eval()
    model = load_model(save(ref.state_dict(), tmp_path / "span.pth"))
    assert model.meta.family == "span" and model.meta.form == "train"
    x = torch.rand(1, 3, 13, 17)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=2e-4)


# ------------------------------------------------------------------------------------------ spandrel absent


def test_without_spandrel_the_error_names_the_extra(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "spandrel", None)  # makes ``import spandrel`` raise ImportError
    p = save({"foo.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "unknown.pth")
    with pytest.raises(ModelLoadError, match=r"pip install 'restore\[zoo\]'") as e:
        load_model(p)
    assert "unrecognised architecture" in str(e.value) and "foo.weight" in str(e.value)
    assert not zoo.available()
    with pytest.raises(ModelLoadError, match=r"restore\[zoo\]"):
        zoo.zoo_architectures()
    assert main(["info", str(p)]) == 2
    assert "restore[zoo]" in capsys.readouterr().err
    # our own families do not need it
    assert load_model(save(ESPCN(scale=2).state_dict(), tmp_path / "espcn.pth")).meta.family == "espcn"


def test_cli_models_zoo_without_spandrel(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "spandrel", None)
    assert main(["models", "--zoo"]) == 2
    assert "pip install 'restore[zoo]'" in capsys.readouterr().err


def test_unknown_dict_with_spandrel(tmp_path) -> None:
    spandrel_or_skip()
    p = save({"foo.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "unknown.pth")
    with pytest.raises(ModelLoadError, match=r"unrecognised architecture: no restore family \(imdn.*spandrel"):
        load_model(p)


def test_zoo_architectures() -> None:
    spandrel_or_skip()
    names = zoo.zoo_architectures()
    assert {"ESRGAN", "SwinIR", "SPAN", "OmniSR", "Compact", "HAT"} <= set(names)
    assert names == sorted(names, key=str.lower) and len(names) == len(set(names)) >= 30


# ------------------------------------------------------------------------------------------ zoo models


def _esrgan_x2_unshuffle() -> nn.Module:  # Real-ESRGAN x2plus layout: pixel-unshuffle in front, multiple of 4
    from spandrel.architectures.ESRGAN import ESRGAN

    return ESRGAN(in_nc=12, out_nc=3, num_filters=8, num_blocks=1, scale=4, shuffle_factor=2)


def _swinir() -> nn.Module:
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4, mlp_ratio=2.0, upscale=2,
                  upsampler="pixelshuffledirect")


def _omnisr() -> nn.Module:
    from spandrel.architectures.OmniSR import OmniSR

    return OmniSR(num_feat=16, block_num=1, window_size=4, res_num=1, up_scale=2)


def _span_no_norm() -> nn.Module:  # no mean shift: different numerics from our SPAN, so not ours
    from spandrel.architectures.SPAN import SPAN as SpandrelSPAN

    return SpandrelSPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2, norm=False)


def _compact_gray() -> nn.Module:
    from spandrel.architectures.Compact import Compact

    return Compact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2, upscale=1)


def _fdncnn() -> nn.Module:  # noise-level map added by spandrel's call function (batch size 1 only)
    from spandrel.architectures.DnCNN import DnCNN as SpandrelDnCNN

    return SpandrelDnCNN(in_nc=2, out_nc=1, nc=8, nb=8, act_mode="R", mode="FDnCNN")


# key: (factory, wrapper, expected arch, scale, channels, size multiple, half-safe, conv-only)
ZOO: dict[str, tuple[Callable[[], nn.Module], str, str, int, int, int, bool, bool]] = {
    "esrgan-x2-unshuffle": (_esrgan_x2_unshuffle, "params_ema", "ESRGAN", 2, 3, 4, True, True),
    "swinir": (_swinir, "netG.", "SwinIR", 2, 3, 1, False, False),
    "omnisr": (_omnisr, "flat", "OmniSR", 2, 3, 1, True, False),
    "span-no-norm": (_span_no_norm, "module.", "SPAN", 2, 3, 1, True, True),
    "compact-gray-x1": (_compact_gray, "flat", "Compact", 1, 1, 1, True, True),
    "fdncnn-gray": (_fdncnn, "flat", "DnCNN", 1, 1, 1, False, True),
}


def _wrap(sd: dict[str, torch.Tensor], wrapper: str) -> object:
    if wrapper == "params_ema":
        return {"params_ema": sd}
    if wrapper in ("netG.", "module."):
        return {f"{wrapper}{k}": v for k, v in sd.items()}
    return sd


@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory) -> dict[str, Path]:
    """Each zoo architecture saved once from a seeded random init."""
    spandrel_or_skip()
    root = tmp_path_factory.mktemp("zoo")
    files = {}
    for i, (key, (make, wrapper, *_)) in enumerate(ZOO.items()):
        torch.manual_seed(i)
        files[key] = save(_wrap(make().eval().state_dict(), wrapper), root / f"{key}.pth")
    return files


@pytest.mark.parametrize("key", list(ZOO))
def test_zoo_meta_and_describe(zoo_files, key: str) -> None:
    _, _, arch, scale, ch, mult, half, _ = ZOO[key]
    model = load_model(zoo_files[key])
    assert isinstance(model, zoo.ZooModel)
    m = model.meta
    assert (m.family, m.scale, m.in_channels, m.out_channels) == (f"zoo:{arch}", scale, ch, ch)
    assert m.task == ("sr" if scale > 1 else "denoise")
    assert m.color_space == ("rgb" if ch == 3 else "gray") and m.input_range == 1.0
    assert (m.size_multiple, m.half_safe, m.receptive_field) == (mult, half, None)
    assert m.params == sum(p.numel() for p in model.parameters()) > 0
    assert not any(p.requires_grad for p in model.parameters())
    info = describe(zoo_files[key])
    assert info["loader"] == "spandrel" and arch in str(info["detected"])
    assert info["tiling"] == "feathered (receptive field unknown)"
    assert info["assumed"][:2] == ["tiling: feathered (receptive field unknown)",
                                   f"input range: [0,1] {'RGB' if ch == 3 else 'gray'} (assumed)"]
    assert info["family"] == f"zoo:{arch}"
    json.dumps(info)


@pytest.mark.parametrize("key", list(ZOO))
def test_zoo_forward_matches_spandrel(zoo_files, key: str) -> None:
    """Our forward (padding to the size requirements, call function, crop) equals spandrel's own call, up to
    its clamp; a batch equals the images one by one."""
    import spandrel

    desc = spandrel.ModelLoader().load_from_file(zoo_files[key])
    model = load_model(zoo_files[key])
    ch = model.meta.in_channels
    x = torch.rand(2, ch, 11, 13)  # below every minimum size, not a multiple of 4
    with torch.inference_mode():
        y = model(x)
        assert y.shape == (2, ch, 11 * model.meta.scale, 13 * model.meta.scale)
        for i in range(2):
            torch.testing.assert_close(y[i:i + 1].clamp(0, 1), desc(x[i:i + 1]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("key", list(ZOO))
def test_zoo_restorer_whole_and_tiled(zoo_files, key: str) -> None:
    import restore

    model = restore.load_model(zoo_files[key])
    s, conv_only = model.meta.scale, ZOO[key][7]
    img = image()  # colour input also for gray models (each channel through the network)
    whole = restore.Restorer(model, device="cpu", tile=None, precision="fp32").run(img)
    tiled = restore.Restorer(model, device="cpu", tile=16, precision="fp32").run(img)
    assert whole.shape == tiled.shape == (36 * s, 40 * s, 3) and whole.dtype == tiled.dtype == np.uint8
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    if conv_only:  # local networks: feathered tiles with 32 px overlap reproduce the whole image closely
        assert diff.mean() < 1.0, f"{key}: mean |tiled - whole| = {diff.mean():.3f}"


def test_gray_batch_runs_image_by_image_for_custom_calls(zoo_files) -> None:
    """FDnCNN's spandrel call builds a 1-image noise map; a colour image (3 gray planes in one batch) must
    equal its channels run one at a time."""
    model = load_model(zoo_files["fdncnn-gray"])
    assert not model.batched
    runner = Restorer(model, device="cpu", tile=None, precision="fp32")
    img = image(20, 24)
    out = runner.run(img)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], runner.run(np.ascontiguousarray(img[..., c])))


def test_zoo_bf16_copy(zoo_files) -> None:
    """A zoo model runs in bf16 on any CPU (PyTorch has bf16 convolutions everywhere; oneDNN only makes them
    fast): no skip. The output is exactly the bfloat16 copy in channels_last (what the engine documents), and
    within one uint8 level of float32 (bf16's 8 significant bits: an output in [0, 1] rounds by <= 2^-9)."""
    from restore import pixels
    from restore.engine.cpu_paths import deploy_copy

    model = load_model(zoo_files["compact-gray-x1"])
    runner = Restorer(model, device="cpu", tile=None, precision="bf16")
    assert runner.precision == "bf16" and runner.backend == "torch"
    img = image(16, 20, channels=1)
    out = runner.run(img)
    low = deploy_copy(model).to(torch.bfloat16).to(memory_format=torch.channels_last)
    x = torch.from_numpy(img.astype(np.float32) / 255)[None, None].to(torch.bfloat16)
    with torch.inference_mode():
        y = low(x.contiguous(memory_format=torch.channels_last)).float()[0, 0].numpy()
    np.testing.assert_array_equal(out, pixels.to_uint(y, np.uint8))
    ref = Restorer(model, device="cpu", tile=None, precision="fp32").run(img)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("key", ["esrgan-x2-unshuffle", "swinir", "omnisr", "compact-gray-x1"])
@pytest.mark.parametrize("tile", ["32", "0"])
def test_cli_with_zoo_models(tmp_path, zoo_files, key: str, tile: str) -> None:
    s = ZOO[key][3]
    src = tmp_path / "in.png"
    write_image(src, image(37, 45))
    dst = tmp_path / "out.png"
    verb = "upscale" if s > 1 else "denoise"
    rc = main([verb, str(src), "-o", str(dst), "--weights", str(zoo_files[key]), "--tile", tile,
               "--device", "cpu", "--precision", "fp32"])
    assert rc == 0
    out = read_image(dst)
    assert out.shape == (37 * s, 45 * s, 3)


def test_cli_models_zoo_and_info_text(zoo_files, capsys) -> None:
    assert main(["models", "--zoo"]) == 0
    words = capsys.readouterr().out.split()
    assert {"ESRGAN", "SwinIR", "OmniSR"} <= set(words)
    assert main(["info", str(zoo_files["esrgan-x2-unshuffle"])]) == 0
    out = capsys.readouterr().out
    assert "loader: spandrel" in out and "input range: [0,1] RGB (assumed)" in out and "zoo:ESRGAN" in out


def test_cli_info_json(zoo_files, capsys) -> None:
    assert main(["info", str(zoo_files["swinir"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["loader"] == "spandrel" and info["family"] == "zoo:SwinIR" and info["half_safe"] is False
    assert any("discourages tiling" in a for a in info["assumed"])


def test_safetensors_files(tmp_path) -> None:
    spandrel_or_skip()
    from safetensors.torch import save_file

    ours = SPAN(feature_channels=8, upscale=2, form="deploy").state_dict()
    save_file({k: v.contiguous() for k, v in ours.items()}, tmp_path / "span.safetensors")
    assert describe(tmp_path / "span.safetensors")["loader"] == "restore"
    torch.manual_seed(0)
    theirs = _compact_gray().state_dict()
    save_file(theirs, tmp_path / "compact.safetensors")
    assert load_model(tmp_path / "compact.safetensors").meta.family == "zoo:Compact"
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(tmp_path / "bad.safetensors")


def test_zoo_model_rejects_unsupported_channels() -> None:
    with pytest.raises(ValueError, match="RGB .* or gray"):
        zoo.ZooModel(net=nn.Conv2d(4, 4, 3), arch="X", in_channels=4, out_channels=4)


def test_restore_video_with_a_zoo_model(tmp_path, zoo_files) -> None:
    """`restore video` runs a spandrel-loaded model through the same engine (frames, size, audio kept)."""
    pytest.importorskip("av")
    from restore import io
    from tests.engine.test_video import make_clip

    src = make_clip(tmp_path / "in.mp4", n=6)
    dst = tmp_path / "out.mp4"
    rc = main(["video", str(src), "-o", str(dst), "--weights", str(zoo_files["esrgan-x2-unshuffle"]),
               "--device", "cpu", "--precision", "fp32", "--threads", "1"])
    assert rc == 0
    a, b = io.probe_video(src), io.probe_video(dst)
    assert (b.width, b.height) == (2 * a.width, 2 * a.height)
    assert any("audio" in s for s in b.streams) and b.streams == a.streams
