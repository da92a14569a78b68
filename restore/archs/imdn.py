"""IMDN: Information Multi-distillation Network, and its real-time variants.

Paper: Zheng Hui, Xinbo Gao, Yunchu Yang, Xiumei Wang, "Lightweight Image Super-Resolution with
Information Multi-distillation Network", ACM Multimedia 2019 (arXiv:1909.11856).
Official code: https://github.com/Zheng222/IMDN (``model/architecture.py``, ``model/block.py``); the
repository carries no licence file, so this is an independent re-implementation written from the paper
and from reading that code. Parameter names follow the official checkpoints so they load strictly.

Variants (all RGB):

* :class:`IMDN` -- six IMDBs with contrast-aware channel attention (CCA), conv + PixelShuffle(s);
  input [0, 1].
* :class:`IMDN_AS` -- "arbitrary size": two stride-2 convs in front, PixelShuffle(4) at the end, so the
  network is x1 (used for RealSR, where LR and HR have the same size); input [0, 1].
* :class:`IMDN_RTC` -- AI-in-RTC challenge winner: nf=12, five IMDBs *without* CCA, x2; input [0, 1].
* :class:`IMDN_RTE` -- nf=20, stride-2 front end, six "large" distillation blocks (ReLU, no bias, no CCA),
  PixelShuffle(4) for an x2 result; input [0, 255]. The published ``IMDN_RTE`` class cannot be built
  (it names ``IMDModule_Large`` without the ``B.`` module prefix); this class is what the checkpoint implies.

CCA uses per-channel mean and standard deviation over the whole image, so IMDN and IMDN_AS have no finite
receptive field (``meta.receptive_field is None``); RTC and RTE are purely convolutional.

Numerics follow the official code. The one deliberate difference: in float16/bfloat16 the CCA statistics are
computed in float32 (the official ``sum().sum() / (H*W)`` overflows float16 on large images); in float32 the
operations are the official ones, unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from restore.archs.base import Detection, ModelMeta, count_params, matches_state_dict, tensor_shape
from restore.ops.conv_pixelshuffle import upsample_tail

FAMILY = "imdn"
_LRELU_SLOPE = 0.05


def _conv(c_in: int, c_out: int, k: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """'Same' convolution (padding (k-1)//2), as the official ``conv_layer``."""
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2, bias=bias)


def _split_sizes(channels: int, rate: float = 0.25) -> tuple[int, int]:
    distilled = int(channels * rate)
    return distilled, channels - distilled


def _upsampler(c_in: int, c_out: int, factor: int) -> nn.Sequential:
    """3x3 conv to ``c_out * factor**2`` channels, then PixelShuffle (keys ``upsampler.0.*``)."""
    return nn.Sequential(_conv(c_in, c_out * factor**2, 3), nn.PixelShuffle(factor))


def _channel_stats(x: Tensor) -> Tensor:
    """Per-channel spatial standard deviation + mean (the CCA descriptor), shape (N, C, 1, 1).

    Same operation order as the official ``stdv_channels(x) + AdaptiveAvgPool2d(1)(x)``.
    Half-precision inputs are upcast so the spatial sums cannot overflow.
    """
    xs = x if x.dtype in (torch.float32, torch.float64) else x.float()
    n = xs.size(2) * xs.size(3)
    mean = xs.sum(3, keepdim=True).sum(2, keepdim=True) / n
    var = (xs - mean).pow(2).sum(3, keepdim=True).sum(2, keepdim=True) / n
    avg = xs.mean(dim=(2, 3), keepdim=True)
    return (var.pow(0.5) + avg).to(x.dtype)


class CCALayer(nn.Module):
    """Contrast-aware channel attention: sigmoid(MLP(std + mean)) scales the channels."""

    fx_leaf = True  # dtype-dependent statistics: graph passes (cpu_paths.fuse_conv_activations) run it whole

    def __init__(self, *, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv_du(_channel_stats(x))


class IMDModule(nn.Module):
    """Information multi-distillation block (IMDB).

    Three 3x3 convs each keep a quarter of their output ("distilled") and pass the rest on; a fourth conv
    produces the last quarter. The concatenation goes through CCA (if ``attention``) and a 1x1 conv, plus
    the block input. ``attention=False`` is the official ``IMDModule_speed`` (RTC).
    """

    def __init__(self, *, channels: int, attention: bool = True) -> None:
        super().__init__()
        d, r = _split_sizes(channels)
        self.distilled, self.remaining = d, r
        self.c1 = _conv(channels, channels, 3)
        self.c2 = _conv(r, channels, 3)
        self.c3 = _conv(r, channels, 3)
        self.c4 = _conv(r, d, 3)
        self.act = nn.LeakyReLU(_LRELU_SLOPE)
        self.c5 = _conv(4 * d, channels, 1)
        self.cca = CCALayer(channels=4 * d) if attention else None

    def forward(self, x: Tensor) -> Tensor:
        sizes = (self.distilled, self.remaining)
        d1, r1 = torch.split(self.act(self.c1(x)), sizes, dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), sizes, dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), sizes, dim=1)
        out = torch.cat([d1, d2, d3, self.c4(r3)], dim=1)
        if self.cca is not None:
            out = self.cca(out)
        return self.c5(out) + x


class IMDModuleLarge(nn.Module):
    """The RTE block (official ``IMDModule_Large``): six bias-free 3x3 convs with ReLU, five distillation
    steps of ``channels // 4`` each, 1x1 fusion of the six quarters, residual; no attention."""

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        d, r = _split_sizes(channels)
        self.distilled, self.remaining = d, r
        self.c1 = _conv(channels, channels, 3, bias=False)
        self.c2 = _conv(r, channels, 3, bias=False)
        self.c3 = _conv(r, channels, 3, bias=False)
        self.c4 = _conv(r, r, 3, bias=False)
        self.c5 = _conv(r - d, r - d, 3, bias=False)
        self.c6 = _conv(d, d, 3, bias=False)
        self.act = nn.ReLU()
        self.c7 = _conv(6 * d, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        d, r = self.distilled, self.remaining
        d1, r1 = torch.split(self.act(self.c1(x)), (d, r), dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), (d, r), dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), (d, r), dim=1)
        d4, r4 = torch.split(self.act(self.c4(r3)), (d, r - d), dim=1)
        d5, r5 = torch.split(self.act(self.c5(r4)), (d, r - 2 * d), dim=1)
        out6 = self.act(self.c6(r5))
        return self.c7(torch.cat([d1, d2, d3, d4, d5, out6], dim=1)) + x


class _Variant(nn.Module):
    """Common base of the four variants: their channel counts and how their :class:`ModelMeta` is built."""

    def __init__(self, *, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels

    def _meta(
        self,
        *,
        variant: str,
        scale: int,
        input_range: float = 1.0,
        size_multiple: int = 1,
        receptive_field: int | None = None,
    ) -> ModelMeta:
        """The metadata every variant shares (RGB, SR, half-safe, deploy form) with the given differences."""
        return ModelMeta(
            family=FAMILY,
            variant=variant,
            task="sr",
            scale=scale,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            input_range=input_range,
            color_space="rgb",
            size_multiple=size_multiple,
            half_safe=True,
            receptive_field=receptive_field,
            form="deploy",
            params=count_params(self),
        )


class _IMDBTrunk(_Variant):
    """Shared body of IMDN / IMDN_AS: ``fea_conv`` (set by the subclass), ``IMDB1..IMDBn``, 1x1 ``c`` over all
    block outputs, ``LR_conv``, ``upsampler``."""

    def _build_trunk(self, nf: int, num_modules: int) -> None:
        self.num_modules = num_modules
        for i in range(1, num_modules + 1):
            self.add_module(f"IMDB{i}", IMDModule(channels=nf))
        self.c = nn.Sequential(nn.Conv2d(nf * num_modules, nf, 1), nn.LeakyReLU(_LRELU_SLOPE))
        self.LR_conv = _conv(nf, nf, 3)

    def _trunk(self, fea: Tensor) -> Tensor:
        outs: list[Tensor] = []
        h = fea
        for i in range(1, self.num_modules + 1):
            h = getattr(self, f"IMDB{i}")(h)
            outs.append(h)
        return self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea

    def forward(self, x: Tensor) -> Tensor:
        return upsample_tail(self.upsampler, self._trunk(self.fea_conv(x)), self.upsampler[1].upscale_factor)


class IMDN(_IMDBTrunk):
    """IMDN for x2/x3/x4 (official checkpoints: nf=64, 6 IMDBs). Input RGB in [0, 1]."""

    def __init__(
        self,
        *,
        scale: int = 4,
        nf: int = 64,
        num_modules: int = 6,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels)
        self.scale, self.nf = scale, nf
        self.fea_conv = _conv(in_channels, nf, 3)
        self._build_trunk(nf, num_modules)
        self.upsampler = _upsampler(nf, out_channels, scale)

    @property
    def meta(self) -> ModelMeta:
        return self._meta(variant="IMDN", scale=self.scale)


class IMDN_AS(_IMDBTrunk):
    """IMDN for arbitrary-size input: ``fea_conv`` = conv s2, LeakyReLU, conv s2 (features at 1/4 size);
    PixelShuffle(``shuffle``). With the official ``shuffle=4`` the network is x1 and needs H, W divisible by 4
    (otherwise the output is ``4*ceil(H/4)`` x ``4*ceil(W/4)``). Input RGB in [0, 1]."""

    def __init__(
        self,
        *,
        shuffle: int = 4,
        nf: int = 64,
        num_modules: int = 6,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels)
        if shuffle % 4:
            raise ValueError(f"IMDN_AS needs a PixelShuffle factor divisible by 4, got {shuffle}")
        self.shuffle, self.nf = shuffle, nf
        self.fea_conv = nn.Sequential(
            _conv(in_channels, nf, 3, stride=2), nn.LeakyReLU(_LRELU_SLOPE), _conv(nf, nf, 3, stride=2)
        )
        self._build_trunk(nf, num_modules)
        self.upsampler = _upsampler(nf, out_channels, shuffle)

    @property
    def meta(self) -> ModelMeta:
        return self._meta(variant="IMDN_AS", scale=self.shuffle // 4, size_multiple=4)


class _Shortcut(nn.Module):
    """``x + sub(x)`` (official ``ShortcutBlock``; key ``sub``)."""

    def __init__(self, sub: nn.Module) -> None:
        super().__init__()
        self.sub = sub

    def forward(self, x: Tensor) -> Tensor:
        return x + self.sub(x)


def rtc_receptive_field(num_modules: int) -> int:
    """Radius in input px: first 3x3 conv, four chained 3x3 convs per block, 3x3 upsampler conv."""
    return 1 + 4 * num_modules + 1


def rte_receptive_field(num_modules: int) -> int:
    """Radius in input px around ``floor(out / scale)``.

    Feature pixel ``i`` (stride 2) sees features ``i +- (6*num_modules + 1)`` (six 3x3 convs per block and
    the 3x3 upsampler conv); the stride-2 conv and the first conv widen that to input ``2i +- (2*that + 2)``,
    and the outputs of feature ``i`` project to input ``2i`` or ``2i + 1``.
    """
    return 2 * (6 * num_modules + 1) + 2 + 1


class IMDN_RTC(_Variant):
    """IMDN_RTC (AI in RTC 2019 winner): ``model`` = [3x3 conv, shortcut(IMDB_speed x n, 1x1 conv),
    3x3 conv, PixelShuffle]. Official: nf=12, 5 blocks, x2. Input RGB in [0, 1]."""

    def __init__(
        self,
        *,
        scale: int = 2,
        nf: int = 12,
        num_modules: int = 5,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels)
        self.scale, self.nf, self.num_modules = scale, nf, num_modules
        blocks: list[nn.Module] = [IMDModule(channels=nf, attention=False) for _ in range(num_modules)]
        body = nn.Sequential(*blocks, _conv(nf, nf, 1))
        self.model = nn.Sequential(
            _conv(in_channels, nf, 3),
            _Shortcut(body),
            _conv(nf, out_channels * scale**2, 3),
            nn.PixelShuffle(scale),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    @property
    def meta(self) -> ModelMeta:
        return self._meta(variant="IMDN_RTC", scale=self.scale, receptive_field=rtc_receptive_field(self.num_modules))


class IMDN_RTE(_Variant):
    """IMDN_RTE: ``fea_conv`` = 3x3 conv, ReLU, bias-free 3x3 conv with stride 2; ``block1..n`` (large
    distillation blocks); bias-free 1x1 ``LR_conv`` + residual; conv + PixelShuffle(2*scale).
    Official: nf=20, 6 blocks, x2. Input RGB in [0, 255]; H and W should be even."""

    def __init__(
        self,
        *,
        scale: int = 2,
        nf: int = 20,
        num_modules: int = 6,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels)
        self.scale, self.nf, self.num_modules = scale, nf, num_modules
        self.fea_conv = nn.Sequential(_conv(in_channels, nf, 3), nn.ReLU(), _conv(nf, nf, 3, stride=2, bias=False))
        for i in range(1, num_modules + 1):
            self.add_module(f"block{i}", IMDModuleLarge(channels=nf))
        self.LR_conv = _conv(nf, nf, 1, bias=False)
        self.upsampler = _upsampler(nf, out_channels, 2 * scale)

    def forward(self, x: Tensor) -> Tensor:
        fea = self.fea_conv(x)
        h = fea
        for i in range(1, self.num_modules + 1):
            h = getattr(self, f"block{i}")(h)
        return upsample_tail(self.upsampler, self.LR_conv(h) + fea, self.upsampler[1].upscale_factor)

    @property
    def meta(self) -> ModelMeta:
        return self._meta(
            variant="IMDN_RTE",
            scale=self.scale,
            input_range=255.0,
            size_multiple=2,
            receptive_field=rte_receptive_field(self.num_modules),
        )


# --------------------------------------------------------------------------------------------- detection


def _count_indexed(sd: Mapping[str, Tensor], pattern: str) -> int:
    """Number of consecutive indices ``1..n`` (or ``0..n-1`` if the pattern starts at 0) present."""
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in sd if (m := rx.fullmatch(k))}
    start = 0 if 0 in found else 1
    n = 0
    while start + n in found:
        n += 1
    return n if len(found) == n else -1


def _shuffle_factor(out_ch: int, img_ch: int) -> int | None:
    if img_ch <= 0 or out_ch % img_ch:
        return None
    f = math.isqrt(out_ch // img_ch)
    return f if f * f * img_ch == out_ch and f >= 1 else None


def _spec(sd: Mapping[str, Tensor]) -> tuple[str, dict[str, int]] | None:
    """Guess class name and constructor arguments from keys/shapes (checked afterwards by building)."""
    if "model.0.weight" in sd and "model.1.sub.0.c1.weight" in sd:  # RTC
        first, up = tensor_shape(sd, "model.0.weight"), tensor_shape(sd, "model.2.weight")
        n = _count_indexed(sd, r"model\.1\.sub\.(\d+)\.c1\.weight")
        if first is None or up is None or len(first) != 4 or n < 1:
            return None
        f = _shuffle_factor(up[0], first[1])
        if f is None:
            return None
        return "IMDN_RTC", {"scale": f, "nf": first[0], "num_modules": n, "in_channels": first[1]}
    up = tensor_shape(sd, "upsampler.0.weight")
    if up is None or len(up) != 4:
        return None
    if "fea_conv.weight" in sd and "IMDB1.c1.weight" in sd:  # plain IMDN
        first = tensor_shape(sd, "fea_conv.weight")
        kind = "IMDN"
        n = _count_indexed(sd, r"IMDB(\d+)\.c1\.weight")
    elif "fea_conv.0.weight" in sd and "IMDB1.c1.weight" in sd:
        first = tensor_shape(sd, "fea_conv.0.weight")
        kind = "IMDN_AS"
        n = _count_indexed(sd, r"IMDB(\d+)\.c1\.weight")
    elif "fea_conv.0.weight" in sd and "block1.c7.weight" in sd:
        first = tensor_shape(sd, "fea_conv.0.weight")
        kind = "IMDN_RTE"
        n = _count_indexed(sd, r"block(\d+)\.c7\.weight")
    else:
        return None
    if first is None or len(first) != 4 or n < 1:
        return None
    f = _shuffle_factor(up[0], first[1])
    if f is None:
        return None
    args = {"nf": first[0], "num_modules": n, "in_channels": first[1], "out_channels": first[1]}
    if kind == "IMDN":
        return kind, {"scale": f, **args}
    if kind == "IMDN_AS":
        return (kind, {"shuffle": f, **args}) if f % 4 == 0 else None
    return (kind, {"scale": f // 2, **args}) if f % 2 == 0 else None


_CLASSES: dict[str, type[nn.Module]] = {
    "IMDN": IMDN,
    "IMDN_AS": IMDN_AS,
    "IMDN_RTC": IMDN_RTC,
    "IMDN_RTE": IMDN_RTE,
}


def detect(state_dict: Mapping[str, Tensor]) -> Detection | None:
    """Recognise an IMDN / IMDN_AS / IMDN_RTC / IMDN_RTE state dict (``module.`` already stripped)."""
    spec = _spec(state_dict)
    if spec is None:
        return None
    name, kwargs = spec
    cls = _CLASSES[name]
    try:
        with torch.device("meta"):
            probe = cls(**kwargs)
    except (ValueError, RuntimeError):
        return None
    if not matches_state_dict(probe, state_dict):
        return None
    meta = probe.meta
    sd = dict(state_dict)
    desc = (
        f"{name} x{meta.scale} (nf={kwargs['nf']}, {kwargs['num_modules']} blocks, "
        f"input range [0, {meta.input_range:g}])"
    )
    return Detection(
        family=FAMILY,
        build=lambda: cls(**kwargs),
        state_dict=sd,
        description=desc,
        extra={"variant": name, **kwargs},
    )
