"""SPAN family: SPAN and its NTIRE efficient-SR descendants (DSCF / DSCLoRA, SPAN-tiny).

Papers:
  * Wan et al., "Swift Parameter-free Attention Network for Efficient Super-Resolution",
    CVPR Workshops 2024. Official code: https://github.com/hongyuanyu/SPAN (Apache-2.0),
    ``basicsr/archs/span_arch.py``.
  * Chai et al., "Distillation-Supervised Convolutional Low-Rank Adaptation for Efficient Image
    Super-Resolution" (DSCLoRA, NTIRE 2025 ESR winner, CVPR Workshops 2025). Official code:
    https://github.com/Yaozzz666/DSCF-SR (MIT), ``models/team23_DSCF.py``.
  * NTIRE ESR challenge entries with the same architecture (MIT):
    https://github.com/Amazingren/NTIRE2024_ESR (team38 SPAN ch28, team39 SPAN-tiny ch26) and
    https://github.com/Amazingren/NTIRE2025_ESR (team23 DSCF, team46 SPAN ch28 with a 20-wide
    ``conv_cat``; also the deploy-only relatives team24 SPAN-F and team36 ESPAN, see
    :class:`SPANF` and :class:`ESPAN`).

Re-implemented from the papers and the official code's behaviour (no code copied). Numerics match
the official forward exactly:

* input RGB in [0, 1]; inside, ``x = (x - mean) * 255`` with mean (0.4488, 0.4371, 0.4040); the
  output is **not** de-normalised (no ``/255 + mean``): the checkpoints were trained that way;
* SPAB: ``a1 = silu(c1(x)); a2 = silu(c2(a1)); o3 = c3(a2); out = (o3 + x) * (sigmoid(o3) - 0.5)``.
  The official block applies ``SiLU(inplace=True)`` to ``out1`` and returns ``out1``, so the tensor
  that block 6 hands to ``conv_cat`` is the *activated* c1 output ``a1``; this module returns
  ``a1`` explicitly;
* ``conv_cat`` (1x1) over ``cat[f, conv_2(b6), b1, a1 of block 6]`` (4C -> C, or -> 20 for NTIRE
  2025 team46), then ``upsampler.0`` (3x3, -> 3*s^2) + PixelShuffle(s).

Every 3x3 conv except ``upsampler.0`` is a :class:`~restore.archs.reparam.Conv3XC`, in train form
(``sk`` + ``conv.{0,1,2}``) or deploy form (``eval_conv``); :meth:`SPAN.fuse` turns the first into
the second.

fp16: the ``* 255`` input scaling does not overflow half precision on natural images (largest conv
output over Set5/Set14/Urban100-subset LR images: about 220 for DSCF; fp16 max 65504; fp16 vs fp32
output within 2/255 on Set5). Pathological 1-px checkerboards push DSCF's ``conv_2`` to ~2.4e4 (the
fp32 output is already meaningless there), and gradient-ascent inputs can exceed 65504, hence
``half_safe`` holds for natural images only.

Official train-form checkpoints also carry a (recomputed-at-eval) ``eval_conv`` copy
next to the branches; :func:`detect` drops it, since the official eval forward ignores the stored
copy and re-derives it from the branches.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restore.archs.base import Detection, Form, ModelMeta, count_params, matches_state_dict, tensor_shape
from restore.archs.reparam import Conv3XC
from restore.ops.conv_pixelshuffle import upsample_tail

FAMILY = "span"
RGB_MEAN = (0.4488, 0.4371, 0.4040)
NUM_BLOCKS = 6
CONV3XC_NAMES = (
    "conv_1",
    *(f"block_{i}.c{j}_r" for i in range(1, NUM_BLOCKS + 1) for j in (1, 2, 3)),
    "conv_2",
)
# conv_1 + 6 blocks x 3 convs + conv_2 + upsampler.0, each 3x3 (radius 1); conv_cat is 1x1.
RECEPTIVE_FIELD = 1 + 3 * NUM_BLOCKS + 1 + 1


def attention(o: Tensor, x: Tensor) -> Tensor:
    """SPAN's parameter-free attention: ``(o + x) * (sigmoid(o) - 0.5)``."""
    return (o + x) * (torch.sigmoid(o) - 0.5)


class SPAB(nn.Module):
    """Swift parameter-free attention block; returns ``(out, silu(c1(x)))``.

    With ``in_channels != out_channels`` (SPAN-F's first block) there is no residual/attention and
    ``out`` is the raw c3 output, as in the official code.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        mid_channels: int | None = None,
        out_channels: int | None = None,
        gain: int = 2,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        mid = in_channels if mid_channels is None else mid_channels
        out = in_channels if out_channels is None else out_channels
        self.has_attention = in_channels == out
        self.c1_r = Conv3XC(in_channels=in_channels, out_channels=mid, gain=gain, deploy=deploy)
        self.c2_r = Conv3XC(in_channels=mid, out_channels=mid, gain=gain, deploy=deploy)
        self.c3_r = Conv3XC(in_channels=mid, out_channels=out, gain=gain, deploy=deploy)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a1 = F.silu(self.c1_r(x))
        a2 = F.silu(self.c2_r(a1))
        o3 = self.c3_r(a2)
        return (attention(o3, x) if self.has_attention else o3), a1


def _spab_chain(blocks: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Run SPABs one after another from ``x``; returns the first block's output, the last block's output and
    the last block's ``silu(c1(.))``."""
    first, a1 = blocks[0](x)
    out = first
    for block in blocks[1:]:
        out, a1 = block(out)
    return first, out, a1


class _Net(nn.Module):
    """What the family's networks share: the sizes they are built with, and their metadata (RGB
    super-resolution on [0, 1] input, any size, half-safe for natural images)."""

    def __init__(self, *, feature_channels: int, upscale: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.feature_channels = feature_channels
        self.upscale = upscale
        self.in_channels = in_channels
        self.out_channels = out_channels

    def _meta(self, *, variant: str, receptive_field: int, form: Form = "deploy") -> ModelMeta:
        return ModelMeta(
            family=FAMILY,
            variant=variant,
            task="sr",
            scale=self.upscale,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            input_range=1.0,
            color_space="rgb",
            size_multiple=1,
            half_safe=True,
            receptive_field=receptive_field,
            form=form,
            params=count_params(self),
        )


class SPAN(_Net):
    """SPAN / DSCF / SPAN-tiny super-resolution network (6 SPABs)."""

    def __init__(
        self,
        *,
        feature_channels: int = 48,
        upscale: int = 4,
        cat_channels: int | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        gain: int = 2,
        img_range: float = 255.0,
        rgb_mean: tuple[float, float, float] = RGB_MEAN,
        form: Form = "train",
    ) -> None:
        super().__init__(
            feature_channels=feature_channels, upscale=upscale, in_channels=in_channels, out_channels=out_channels
        )
        if form not in ("train", "deploy"):
            raise ValueError(f"form must be 'train' or 'deploy', got {form!r}")
        c = feature_channels
        cat = c if cat_channels is None else cat_channels
        deploy = form == "deploy"
        self.cat_channels = cat
        self.gain = gain
        self.img_range = img_range
        self.register_buffer("mean", torch.tensor(rgb_mean).view(1, -1, 1, 1), persistent=False)

        self.conv_1 = Conv3XC(in_channels=in_channels, out_channels=c, gain=gain, deploy=deploy)
        self.block_1 = SPAB(in_channels=c, gain=gain, deploy=deploy)
        self.block_2 = SPAB(in_channels=c, gain=gain, deploy=deploy)
        self.block_3 = SPAB(in_channels=c, gain=gain, deploy=deploy)
        self.block_4 = SPAB(in_channels=c, gain=gain, deploy=deploy)
        self.block_5 = SPAB(in_channels=c, gain=gain, deploy=deploy)
        self.block_6 = SPAB(in_channels=c, gain=gain, deploy=deploy)
        self.conv_cat = nn.Conv2d(4 * c, cat, 1, padding=0, bias=True)
        self.conv_2 = Conv3XC(in_channels=c, out_channels=c, gain=gain, deploy=deploy)
        self.upsampler = nn.Sequential(
            nn.Conv2d(cat, out_channels * upscale**2, 3, padding=1, bias=True),
            nn.PixelShuffle(upscale),
        )

    @property
    def form(self) -> Form:
        return "deploy" if all(m.deploy for m in self.modules() if isinstance(m, Conv3XC)) else "train"

    @property
    def variant(self) -> str:
        v = f"ch{self.feature_channels}"
        return v if self.cat_channels == self.feature_channels else f"{v}_cat{self.cat_channels}"

    @property
    def meta(self) -> ModelMeta:
        return self._meta(variant=self.variant, receptive_field=RECEPTIVE_FIELD, form=self.form)

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.mean.to(x.dtype)) * self.img_range
        f = self.conv_1(x)
        blocks = (self.block_1, self.block_2, self.block_3, self.block_4, self.block_5, self.block_6)
        b1, b6, a1_6 = _spab_chain(blocks, f)
        out = self.conv_cat(torch.cat([f, self.conv_2(b6), b1, a1_6], dim=1))
        return upsample_tail(self.upsampler, out, self.upscale)  # fused on CUDA (restore.ops)

    @torch.no_grad()
    def fuse(self) -> SPAN:
        """Return a deploy-form copy: every train-form ``Conv3XC`` collapsed to its ``eval_conv``."""
        out = copy.deepcopy(self)
        for name in CONV3XC_NAMES:
            parent_name, _, child = name.rpartition(".")
            parent = out.get_submodule(parent_name) if parent_name else out
            setattr(parent, child, getattr(parent, child).fuse())
        return out


# --------------------------------------------------------------------------- NTIRE 2025 variants


class EvalConv(nn.Module):
    """A deploy-only k x k conv stored as ``<name>.eval_conv`` (ESPAN's 9x9 ``Conv9XC``)."""

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.eval_conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.eval_conv(x)


class SPANF(_Net):
    """SPAN-F (NTIRE 2025 ESR team24), deploy form only.

    No mean shift and no ``* 255``. ``conv_near`` is a grouped 3x3 (one group per input channel,
    no bias) giving ``C_in * s^2`` maps; ``block_1`` maps the raw input to C without attention;
    ``conv_cat`` (1x1) over ``cat[conv_near(x), b5, b1]``; ``conv_2`` (3x3, C -> C_in * s^2) then
    PixelShuffle(s).
    """

    def __init__(self, *, feature_channels: int = 32, upscale: int = 4, in_channels: int = 3) -> None:
        super().__init__(
            feature_channels=feature_channels, upscale=upscale, in_channels=in_channels, out_channels=in_channels
        )
        c, near = feature_channels, in_channels * upscale**2
        self.conv_near = nn.Conv2d(in_channels, near, 3, padding=1, groups=in_channels, bias=False)
        self.block_1 = SPAB(in_channels=in_channels, mid_channels=c, out_channels=c, deploy=True)
        self.block_2 = SPAB(in_channels=c, deploy=True)
        self.block_3 = SPAB(in_channels=c, deploy=True)
        self.block_4 = SPAB(in_channels=c, deploy=True)
        self.block_5 = SPAB(in_channels=c, deploy=True)
        self.conv_cat = nn.Conv2d(2 * c + near, c, 1, padding=0, bias=True)
        self.conv_2 = Conv3XC(in_channels=c, out_channels=near, deploy=True)
        self.depth_to_space = nn.PixelShuffle(upscale)

    @property
    def meta(self) -> ModelMeta:
        # blocks 1-5 (3x3 each) + conv_2; conv_near is in parallel
        return self._meta(variant=f"spanf_ch{self.feature_channels}", receptive_field=3 * 5 + 1)

    def forward(self, x: Tensor) -> Tensor:
        near = self.conv_near(x)
        b1, b5, _ = _spab_chain((self.block_1, self.block_2, self.block_3, self.block_4, self.block_5), x)
        out = self.conv_cat(torch.cat([near, b5, b1], dim=1))
        return self.depth_to_space(self.conv_2(out))


class TeacherBlock(nn.Module):
    """ESPAN's two-conv SPAB: ``attention(c2(silu(c1(x))), x)``."""

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.c1_r = Conv3XC(in_channels=channels, out_channels=channels, deploy=True)
        self.c2_r = Conv3XC(in_channels=channels, out_channels=channels, deploy=True)

    def forward(self, x: Tensor) -> Tensor:
        return attention(self.c2_r(F.silu(self.c1_r(x))), x)


class ESPAN(_Net):
    """ESPAN (NTIRE 2025 ESR team36), deploy form only.

    No mean shift and no ``* 255``. 9x9 ``conv_1``, five SPABs, a two-conv ``teacher_block_seq``,
    ``tea_conv_cat`` (1x1) over ``cat[f, tea_conv_2(b6), b1, b6]``, ``tea_upsampler.0`` (3x3) +
    PixelShuffle(s). The official CUDA jiterator attention is the same formula as
    :func:`attention` (its ``use_fast_op=False`` path).
    """

    def __init__(
        self,
        *,
        feature_channels: int = 32,
        mid_channels: int = 32,
        upscale: int = 4,
        first_kernel: int = 9,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__(
            feature_channels=feature_channels, upscale=upscale, in_channels=in_channels, out_channels=out_channels
        )
        c = feature_channels
        self.first_kernel = first_kernel
        self.conv_1 = EvalConv(in_channels=in_channels, out_channels=c, kernel_size=first_kernel)
        self.block_1 = SPAB(in_channels=c, mid_channels=mid_channels, deploy=True)
        self.block_2 = SPAB(in_channels=c, mid_channels=mid_channels, deploy=True)
        self.block_3 = SPAB(in_channels=c, mid_channels=mid_channels, deploy=True)
        self.block_4 = SPAB(in_channels=c, mid_channels=mid_channels, deploy=True)
        self.block_5 = SPAB(in_channels=c, mid_channels=mid_channels, deploy=True)
        self.teacher_block_seq = TeacherBlock(channels=c)
        self.tea_conv_cat = nn.Conv2d(4 * c, c, 1, padding=0, bias=True)
        self.tea_conv_2 = Conv3XC(in_channels=c, out_channels=c, deploy=True)
        self.tea_upsampler = nn.Sequential(
            Conv3XC(in_channels=c, out_channels=out_channels * upscale**2, deploy=True),
            nn.PixelShuffle(upscale),
        )

    @property
    def meta(self) -> ModelMeta:
        # conv_1 + 5 blocks x 3 + teacher block x 2 + tea_conv_2 + tea_upsampler.0
        return self._meta(
            variant=f"espan_ch{self.feature_channels}", receptive_field=self.first_kernel // 2 + 3 * 5 + 2 + 1 + 1
        )

    def forward(self, x: Tensor) -> Tensor:
        f = self.conv_1(x)
        b1, b5, _ = _spab_chain((self.block_1, self.block_2, self.block_3, self.block_4, self.block_5), f)
        b6 = self.teacher_block_seq(b5)
        out = self.tea_conv_cat(torch.cat([f, self.tea_conv_2(b6), b1, b6], dim=1))
        return self.tea_upsampler(out)


# --------------------------------------------------------------------------- detection


def _square_root(n: int) -> int | None:
    r = math.isqrt(n)
    return r if r > 0 and r * r == n else None


def _shape(sd: Mapping[str, Tensor], key: str) -> tuple[int, ...] | None:
    return tensor_shape(sd, key, ndim=4)


def _detect_spanf(sd: dict[str, Tensor]) -> Detection | None:
    near, first = _shape(sd, "conv_near.weight"), _shape(sd, "block_1.c1_r.eval_conv.weight")
    if near is None or first is None or near[0] % first[1]:
        return None
    width, in_ch = first[0], first[1]
    scale = _square_root(near[0] // in_ch)
    if scale is None:
        return None

    def build() -> SPANF:
        return SPANF(feature_channels=width, upscale=scale, in_channels=in_ch)

    if not matches_state_dict(build(), sd):
        return None
    return Detection(
        family=FAMILY,
        build=build,
        state_dict=sd,
        description=f"SPAN-F (NTIRE 2025 team24) ch{width} x{scale}, deploy form",
        extra={"feature_channels": width, "scale": scale, "form": "deploy"},
    )


def _detect_espan(sd: dict[str, Tensor]) -> Detection | None:
    first = _shape(sd, "conv_1.eval_conv.weight")
    mid = _shape(sd, "block_1.c1_r.eval_conv.weight")
    up = _shape(sd, "tea_upsampler.0.eval_conv.weight")
    if first is None or mid is None or up is None or first[1] != 3 or up[0] % 3 or first[2] % 2 == 0:
        return None
    scale = _square_root(up[0] // 3)
    if scale is None:
        return None

    def build() -> ESPAN:
        return ESPAN(feature_channels=first[0], mid_channels=mid[0], upscale=scale, first_kernel=first[2])

    if not matches_state_dict(build(), sd):
        return None
    return Detection(
        family=FAMILY,
        build=build,
        state_dict=sd,
        description=f"ESPAN (NTIRE 2025 team36) ch{first[0]} x{scale}, deploy form",
        extra={"feature_channels": first[0], "scale": scale, "form": "deploy"},
    )


def detect(state_dict: Mapping[str, Tensor]) -> Detection | None:
    """Recognise a SPAN-family state dict from its keys and shapes.

    SPAN / DSCF / SPAN-tiny in deploy or train form; SPAN-F and ESPAN (deploy form).
    """
    sd = dict(state_dict)
    if "conv_near.weight" in sd:
        return _detect_spanf(sd)
    if "tea_conv_cat.weight" in sd:
        return _detect_espan(sd)
    if "conv_1.sk.weight" in sd:
        deploy = False
        # Official train-form checkpoints also store the eval-time copy; the branches are authoritative.
        sd = {k: v for k, v in sd.items() if ".eval_conv." not in k}
        first = sd["conv_1.sk.weight"]
    elif "conv_1.eval_conv.weight" in sd:
        deploy = True
        first = sd["conv_1.eval_conv.weight"]
    else:
        return None
    needed = ("conv_cat.weight", "upsampler.0.weight")
    if any(k not in sd for k in needed) or first.ndim != 4:
        return None
    width, in_ch = int(first.shape[0]), int(first.shape[1])
    cat = int(sd["conv_cat.weight"].shape[0])
    up = sd["upsampler.0.weight"]
    if in_ch != 3 or up.ndim != 4 or up.shape[0] % 3:
        return None
    scale = _square_root(int(up.shape[0]) // 3)
    if scale is None:
        return None
    gain = 2
    if not deploy:
        g0 = sd.get("conv_1.conv.0.weight")
        if g0 is None or g0.shape[0] % in_ch:
            return None
        gain = int(g0.shape[0]) // in_ch
    form: Form = "deploy" if deploy else "train"

    def build() -> SPAN:
        return SPAN(feature_channels=width, upscale=scale, cat_channels=cat, gain=gain, form=form)

    if not matches_state_dict(build(), sd):
        return None
    variant = f"ch{width}" if cat == width else f"ch{width}_cat{cat}"
    return Detection(
        family=FAMILY,
        build=build,
        state_dict=sd,
        description=f"SPAN-family (SPAN/DSCF/SPAN-tiny) {variant} x{scale}, {form} form",
        extra={"feature_channels": width, "cat_channels": cat, "scale": scale, "form": form, "gain": gain},
    )
