"""CFSR: ConvFormer-based lightweight super-resolution (one architecture, its reparameterisation and detection:
one concern, hence over 500 lines).

Paper: G. Wu, J. Jiang, J. Jiang, X. Liu, "Transforming Image Super-Resolution: A ConvFormer-based Efficient
Approach", IEEE TIP 2024 (arXiv:2401.05633).
Official code: https://github.com/Aitical/CFSR (``basicsr/archs/cfsr_arch.py``, commit ec9b237c5e86); the
repository has no licence file. This is an independent re-implementation with the same module and parameter
names, so the official checkpoints (``model_zoo/CFSR_x{2,3,4}.pth``, BasicSR ``params`` wrapper) load
strictly.

Network (RGB in [0, 1]): ``x - mean`` -> ``conv_first`` 3x3 -> ``len(depths)`` layers of ConvFormer blocks
(each layer ends with a 1x1 ``conv`` plus a residual) -> channels-first ``norm`` -> ``conv_after_body`` 3x3
with a long residual -> ``upsample`` (3x3 conv to ``3 * s^2`` channels + PixelShuffle) -> ``+ mean``.
A block is ``x + ls1 * ConvMod(x)`` then ``x + ls2 * EFN(x)``, where ConvMod is
``proj((a(norm x)) * v(norm x))`` with ``a = 1x1 conv, GELU, depthwise k x k`` and the EFN ("MLP") is
``fc2(h + GELU(pos(h)))`` with ``h = GELU(fc1(norm x))``.

Two forms of the re-parameterisable parts:

* deploy (what the checkpoints hold): ``attn.a.2.lkb_reparam`` (depthwise k x k with bias) and a single
  depthwise 3x3 ``mlp.pos``.
* train: ``mlp.pos`` plus three fixed-pattern depthwise 3x3 branches (Sobel-x, Sobel-y, Laplacian masks scaled
  per channel, each with its own bias), exactly as the official ``MLP`` defines them (including its mask
  layouts, which are reproduced as published); and a RepLKNet-style large-kernel mixer
  ``attn.a.2.lkb_origin`` (depthwise k x k conv without bias + BatchNorm) plus ``attn.a.2.small_conv``
  (depthwise ``small_kernel`` x ``small_kernel`` conv + BatchNorm). The published CFSR code keeps only the
  merged ``lkb_reparam`` (its ``LargeKernelConv`` has no training branches); the branch names follow
  RepLKNet's ``ReparamLargeKernelConv``, from which ``lkb_reparam`` and CFSR's ``get_conv2d`` come, and
  ``small_kernel: 3`` is taken from the official test configs.

``CFSR.fuse()`` (and ``fuse()`` on each re-parameterisable block) turns the train form into the deploy form in
place. The RGB mean is a constant buffer, not part of the state dict.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restore.archs.base import Detection, Form, ModelMeta, count_params
from restore.ops.conv_pixelshuffle import upsample_tail
from restore.ops.lk_dwconv import run_depthwise

FAMILY = "cfsr"
RGB_MEAN = (0.4488, 0.4371, 0.4040)
LN_EPS = 1e-6
LAYER_SCALE_INIT = 1e-6
EDGE_INIT_STD = 1e-3

# The official EFN masks, entry by entry as the official code writes them ((row, col) -> value). Note that
# the published "Sobel-x" has its +1 at (0, 1) rather than (0, 0), and the "Laplacian" its top +1 at (0, 0)
# rather than (0, 1); the checkpoints were trained (and merged) with these exact masks.
SOBEL_X = {(0, 1): 1.0, (1, 0): 2.0, (2, 0): 1.0, (0, 2): -1.0, (1, 2): -2.0, (2, 2): -1.0}
SOBEL_Y = {(0, 0): 1.0, (0, 1): 2.0, (0, 2): 1.0, (2, 0): -1.0, (2, 1): -2.0, (2, 2): -1.0}
LAPLACIAN = {(0, 0): 1.0, (1, 0): 1.0, (1, 2): 1.0, (2, 1): 1.0, (1, 1): -4.0}
EDGE_BRANCHES = (("sobel_x", SOBEL_X), ("sobel_y", SOBEL_Y), ("laplacian", LAPLACIAN))


def edge_mask(entries: Mapping[tuple[int, int], float], channels: int) -> Tensor:
    """A depthwise (channels, 1, 3, 3) kernel with the given entries in every channel."""
    k = torch.zeros(3, 3)
    for (r, c), v in entries.items():
        k[r, c] = v
    return k.expand(channels, 1, 3, 3).clone()


def fuse_conv_bn(weight: Tensor, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Fold an eval-mode BatchNorm that follows a bias-free conv into (kernel, bias)."""
    std = (bn.running_var + bn.eps).sqrt()
    t = bn.weight / std
    return weight * t.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * bn.weight / std


def center_pad(kernel: Tensor, size: int) -> Tensor:
    """Zero-pad a (.., k, k) kernel to (.., size, size), keeping it centred (k and size odd)."""
    p = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, [p, p, p, p])


def _form(form: Form | str) -> Form:
    if form not in ("train", "deploy"):
        raise ValueError(f"form must be 'train' or 'deploy', got {form!r}")
    return form  # type: ignore[return-value]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of NCHW tensors (ConvNeXt "channels_first"), same arithmetic order.

    Half/bfloat16 inputs are normalised in float32 and cast back: with the released x4 weights the final
    ``norm`` sees features up to ~470, whose squared deviations (~2e5) overflow float16 and zero the output
    (-1.4 dB on Set5). Float32 inputs take the official path unchanged.
    """

    fx_leaf = True  # dtype-dependent branch: graph passes (restore.engine.cpu_paths.fuse_conv_activations) run it whole

    def __init__(self, *, channels: int, eps: float = LN_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            return self._normalise(x.float(), self.weight.float(), self.bias.float()).to(x.dtype)
        return self._normalise(x, self.weight, self.bias)

    def _normalise(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return weight[:, None, None] * x + bias[:, None, None]


class ConvBN(nn.Sequential):
    """Depthwise conv without bias followed by BatchNorm (keys ``conv.*``, ``bn.*``)."""

    def __init__(self, *, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.add_module(
            "conv",
            nn.Conv2d(channels, channels, kernel_size, 1, kernel_size // 2, groups=channels, bias=False),
        )
        self.add_module("bn", nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(run_depthwise(self.conv, x))  # Triton large-kernel path when dispatched (restore.ops)

    def equivalent(self) -> tuple[Tensor, Tensor]:
        return fuse_conv_bn(self.conv.weight, self.bn)


class LargeKernelConv(nn.Module):
    """Depthwise k x k token mixer.

    deploy: ``lkb_reparam`` (conv with bias). train: ``lkb_origin`` (conv + BN) plus, when ``small_kernel`` is
    set, ``small_conv`` (small conv + BN) on the same input; ``fuse()`` folds both into ``lkb_reparam``.
    """

    def __init__(
        self, *, channels: int, kernel_size: int, small_kernel: int | None = 3, form: Form = "deploy"
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd")
        if small_kernel is not None and (small_kernel % 2 == 0 or small_kernel > kernel_size):
            raise ValueError("small_kernel must be odd and not larger than kernel_size")
        self.channels = channels
        self.kernel_size = kernel_size
        self.small_kernel = small_kernel
        self.lkb_reparam: nn.Conv2d | None = None
        self.lkb_origin: ConvBN | None = None
        self.small_conv: ConvBN | None = None
        if _form(form) == "deploy":
            self.lkb_reparam = self._deploy_conv()
        else:
            self.lkb_origin = ConvBN(channels=channels, kernel_size=kernel_size)
            if small_kernel is not None:
                self.small_conv = ConvBN(channels=channels, kernel_size=small_kernel)

    def _deploy_conv(self) -> nn.Conv2d:
        k = self.kernel_size
        return nn.Conv2d(self.channels, self.channels, k, 1, k // 2, groups=self.channels, bias=True)

    @property
    def form(self) -> Form:
        return "deploy" if self.lkb_reparam is not None else "train"

    def forward(self, x: Tensor) -> Tensor:
        if self.lkb_reparam is not None:
            return run_depthwise(self.lkb_reparam, x)  # Triton large-kernel path when dispatched (restore.ops)
        assert self.lkb_origin is not None
        out = self.lkb_origin(x)
        if self.small_conv is not None:
            out = out + self.small_conv(x)
        return out

    def equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        if self.lkb_reparam is not None:
            return self.lkb_reparam.weight, self.lkb_reparam.bias
        assert self.lkb_origin is not None
        k, b = self.lkb_origin.equivalent()
        if self.small_conv is not None:
            ks, bs = self.small_conv.equivalent()
            k = k + center_pad(ks, self.kernel_size)
            b = b + bs
        return k, b

    @torch.no_grad()
    def fuse(self) -> LargeKernelConv:
        """Fold the train-form branches (with their BN running statistics) into ``lkb_reparam``; in place."""
        if self.lkb_reparam is None:
            k, b = self.equivalent_kernel_bias()
            conv = self._deploy_conv().to(device=k.device, dtype=k.dtype)
            conv.weight.copy_(k)
            conv.bias.copy_(b)
            self.lkb_origin = None
            self.small_conv = None
            self.lkb_reparam = conv
        return self


class MLP(nn.Module):
    """Edge-preserving feed-forward network (EFN): ``fc2(h + GELU(pos(h)))``, ``h = GELU(fc1(norm x))``.

    In train form ``pos`` is accompanied by three depthwise 3x3 branches with fixed masks (Sobel-x, Sobel-y,
    Laplacian) scaled per channel (``scale_*``) with their own biases (``*_bias``); ``fuse()`` adds them into
    ``pos``. The masks are constant buffers named as in the official code (``mask_*``), so an unmerged
    official state dict loads strictly.
    """

    def __init__(self, *, dim: int, mlp_ratio: int = 2, form: Form = "deploy") -> None:
        super().__init__()
        hidden = dim * mlp_ratio
        self.out_channels = hidden
        self.norm = LayerNorm2d(channels=dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.pos = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.act = nn.GELU()
        self.merged = _form(form) == "deploy"
        if not self.merged:
            for name, entries in EDGE_BRANCHES:
                self.register_parameter(
                    f"scale_{name}", nn.Parameter(torch.randn(hidden, 1, 1, 1) * EDGE_INIT_STD)
                )
                self.register_parameter(f"{name}_bias", nn.Parameter(torch.randn(hidden) * EDGE_INIT_STD))
                self.register_buffer(f"mask_{name}", edge_mask(entries, hidden))

    @property
    def form(self) -> Form:
        return "deploy" if self.merged else "train"

    def _branches(self) -> Iterator[tuple[Tensor, Tensor]]:
        for name, _ in EDGE_BRANCHES:
            yield (
                getattr(self, f"scale_{name}") * getattr(self, f"mask_{name}"),
                getattr(self, f"{name}_bias"),
            )

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.fc1(self.norm(x)))
        out = self.pos(x)
        if not self.merged:
            for weight, bias in self._branches():
                out = out + F.conv2d(x, weight, bias, 1, 1, 1, self.out_channels)
        x = x + self.act(out)
        return self.fc2(x)

    def equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        if self.merged:
            return self.pos.weight, self.pos.bias
        (kx, bx), (ky, by), (kl, bl) = self._branches()
        # same summation order as the official merge, so merged weights match it bit for bit
        return kx + ky + kl + self.pos.weight, bx + by + bl + self.pos.bias

    @torch.no_grad()
    def fuse(self) -> MLP:
        """Add the Sobel/Laplacian branches into ``pos`` and drop them; in place."""
        if not self.merged:
            k, b = self.equivalent_kernel_bias()
            self.pos.weight.copy_(k)
            self.pos.bias.copy_(b)
            for name, _ in EDGE_BRANCHES:
                delattr(self, f"scale_{name}")
                delattr(self, f"{name}_bias")
                delattr(self, f"mask_{name}")
            self.merged = True
        return self


class ConvMod(nn.Module):
    """Large-kernel modulation: ``proj(a(n) * v(n))`` with ``n = norm(x)``."""

    def __init__(self, *, dim: int, dw_size: int, small_kernel: int | None, form: Form) -> None:
        super().__init__()
        self.norm = LayerNorm2d(channels=dim)
        self.a = nn.Sequential(
            nn.Conv2d(dim, dim, 1),
            nn.GELU(),
            LargeKernelConv(channels=dim, kernel_size=dw_size, small_kernel=small_kernel, form=form),
        )
        self.v = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        return self.proj(self.a(x) * self.v(x))


class Block(nn.Module):
    """ConvFormer block with per-channel layer scales."""

    def __init__(
        self,
        *,
        dim: int,
        dw_size: int,
        mlp_ratio: int,
        small_kernel: int | None,
        mixer_form: Form,
        mlp_form: Form,
    ) -> None:
        super().__init__()
        self.attn = ConvMod(dim=dim, dw_size=dw_size, small_kernel=small_kernel, form=mixer_form)
        self.mlp = MLP(dim=dim, mlp_ratio=mlp_ratio, form=mlp_form)
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.layer_scale_1.unsqueeze(-1).unsqueeze(-1) * self.attn(x)
        return x + self.layer_scale_2.unsqueeze(-1).unsqueeze(-1) * self.mlp(x)


class Layer(nn.Module):
    """``depth`` blocks, then a 1x1 conv with a residual around it."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        dw_size: int,
        mlp_ratio: int,
        small_kernel: int | None,
        mixer_form: Form,
        mlp_form: Form,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(
                dim=dim,
                dw_size=dw_size,
                mlp_ratio=mlp_ratio,
                small_kernel=small_kernel,
                mixer_form=mixer_form,
                mlp_form=mlp_form,
            )
            for _ in range(depth)
        )
        self.conv = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.conv(x) + x


def receptive_field(*, depths: Sequence[int], dw_size: int) -> int:
    """Radius in LR pixels: conv_first 3x3 (1) + per block dw k x k ((k-1)/2) and EFN 3x3 ``pos`` (1)
    + conv_after_body 3x3 (1) + upsampler 3x3 (1). Everything else is 1x1 or per-pixel."""
    return 1 + sum(depths) * (dw_size // 2 + 1) + 1 + 1


class CFSR(nn.Module):
    """CFSR with the ``pixelshuffledirect`` upsampler (the released x2/x3/x4 models).

    ``form`` sets both re-parameterisable parts; ``mixer_form`` / ``mlp_form`` override it per part.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_chans: int = 3,
        embed_dim: int = 48,
        depths: Sequence[int] = (6, 6),
        dw_size: int = 9,
        mlp_ratio: int = 2,
        small_kernel: int | None = 3,
        form: Form = "deploy",
        mixer_form: Form | None = None,
        mlp_form: Form | None = None,
    ) -> None:
        super().__init__()
        if in_chans not in (1, 3):
            raise ValueError("in_chans must be 1 or 3")
        self.scale = scale
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.depths = tuple(int(d) for d in depths)
        self.dw_size = dw_size
        self.mlp_ratio = mlp_ratio
        self.small_kernel = small_kernel
        mixer = _form(mixer_form or form)
        mlp = _form(mlp_form or form)
        mean = RGB_MEAN if in_chans == 3 else (0.0,)
        self.register_buffer("mean", torch.tensor(mean).view(1, in_chans, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.layers = nn.ModuleList(
            Layer(
                dim=embed_dim,
                depth=d,
                dw_size=dw_size,
                mlp_ratio=mlp_ratio,
                small_kernel=small_kernel,
                mixer_form=mixer,
                mlp_form=mlp,
            )
            for d in self.depths
        )
        self.norm = LayerNorm2d(channels=embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.upsample = nn.Sequential(
            nn.Conv2d(embed_dim, in_chans * scale * scale, 3, 1, 1), nn.PixelShuffle(scale)
        )

    def forward(self, x: Tensor) -> Tensor:
        mean = self.mean.to(x.dtype)
        x = self.conv_first(x - mean)
        f = x
        for layer in self.layers:
            f = layer(f)
        x = self.conv_after_body(self.norm(f)) + x
        return upsample_tail(self.upsample, x, self.scale, residual=mean)  # fused on CUDA (restore.ops)

    def reparam_blocks(self) -> list[LargeKernelConv | MLP]:
        return [m for m in self.modules() if isinstance(m, (LargeKernelConv, MLP))]

    @property
    def form(self) -> Form:
        return "deploy" if all(m.form == "deploy" for m in self.reparam_blocks()) else "train"

    def fuse(self) -> CFSR:
        """Convert every train-form block to deploy form, in place (call in eval mode); returns ``self``."""
        for m in self.reparam_blocks():
            m.fuse()
        return self

    @property
    def meta(self) -> ModelMeta:
        variant = f"x{self.scale}"
        if (self.embed_dim, self.depths, self.dw_size, self.mlp_ratio) != (48, (6, 6), 9, 2):
            depths = ".".join(map(str, self.depths))
            variant += f"-e{self.embed_dim}-d{depths}-k{self.dw_size}-r{self.mlp_ratio}"
        return ModelMeta(
            family=FAMILY,
            variant=variant,
            task="sr",
            scale=self.scale,
            in_channels=self.in_chans,
            out_channels=self.in_chans,
            input_range=1.0,
            color_space="rgb" if self.in_chans == 3 else "gray",
            size_multiple=1,
            half_safe=True,
            receptive_field=receptive_field(depths=self.depths, dw_size=self.dw_size),
            form=self.form,
            params=count_params(self),
        )


# ----------------------------------------------------------------------------------------------- detection

_BLOCK_KEY = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.layer_scale_1$")
_REQUIRED = (
    "conv_first.weight",
    "conv_after_body.weight",
    "upsample.0.weight",
    "norm.weight",
    "layers.0.conv.weight",
    "layers.0.blocks.0.attn.a.0.weight",
    "layers.0.blocks.0.attn.v.weight",
    "layers.0.blocks.0.mlp.fc1.weight",
    "layers.0.blocks.0.mlp.pos.weight",
    "layers.0.blocks.0.layer_scale_2",
)


def _depths(sd: Mapping[str, Tensor]) -> tuple[int, ...] | None:
    blocks: dict[int, set[int]] = {}
    for k in sd:
        m = _BLOCK_KEY.match(k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        return None
    depths = []
    for i in range(len(blocks)):
        if sorted(blocks[i]) != list(range(len(blocks[i]))):
            return None
        depths.append(len(blocks[i]))
    return tuple(depths)


def _part_form(sd: Mapping[str, Tensor], keys: Sequence[str], train_key: str, deploy_key: str) -> Form | None:
    """The single form used by every block for one part, or None when missing/mixed across blocks."""
    forms = {
        ("train" if f"{p}{train_key}" in sd else "deploy" if f"{p}{deploy_key}" in sd else "none")
        for p in keys
    }
    if len(forms) != 1 or "none" in forms:
        return None
    return forms.pop()  # type: ignore[return-value]


def detect(state_dict: Mapping[str, Tensor]) -> Detection | None:
    """Recognise a CFSR state dict (deploy, train or mixed form) from its keys and shapes."""
    sd = state_dict
    if not all(k in sd for k in _REQUIRED):
        return None
    depths = _depths(sd)
    if depths is None:
        return None
    w_first, w_up = sd["conv_first.weight"], sd["upsample.0.weight"]
    if w_first.ndim != 4 or w_up.ndim != 4:
        return None
    embed, in_chans = int(w_first.shape[0]), int(w_first.shape[1])
    if in_chans not in (1, 3) or w_up.shape[1] != embed or w_up.shape[0] % in_chans:
        return None
    scale = math.isqrt(int(w_up.shape[0]) // in_chans)
    if scale < 1 or scale * scale * in_chans != w_up.shape[0]:
        return None
    hidden = int(sd["layers.0.blocks.0.mlp.fc1.weight"].shape[0])
    if hidden % embed:
        return None
    prefixes = [f"layers.{i}.blocks.{j}." for i, d in enumerate(depths) for j in range(d)]
    mixer = _part_form(
        sd, [p + "attn.a.2." for p in prefixes], "lkb_origin.conv.weight", "lkb_reparam.weight"
    )
    mlp = _part_form(sd, [p + "mlp." for p in prefixes], "scale_sobel_x", "pos.weight")
    if mixer is None or mlp is None:
        return None
    p0 = prefixes[0] + "attn.a.2."
    if mixer == "deploy":
        dw_size, small = int(sd[p0 + "lkb_reparam.weight"].shape[-1]), 3
    else:
        dw_size = int(sd[p0 + "lkb_origin.conv.weight"].shape[-1])
        ks = sd.get(p0 + "small_conv.conv.weight")
        small = None if ks is None else int(ks.shape[-1])
    if dw_size % 2 == 0 or (small is not None and (small % 2 == 0 or small > dw_size)):
        return None
    kwargs: dict[str, object] = dict(
        scale=scale,
        in_chans=in_chans,
        embed_dim=embed,
        depths=depths,
        dw_size=dw_size,
        mlp_ratio=hidden // embed,
        small_kernel=small,
        mixer_form=mixer,
        mlp_form=mlp,
    )

    def build() -> CFSR:
        return CFSR(**kwargs)  # type: ignore[arg-type]

    with torch.device("meta"):
        reference = build().state_dict()
    out = dict(sd)
    for k, v in reference.items():  # constants that an exported dict may omit
        if k not in out and (k.endswith("num_batches_tracked") or ".mask_" in k):
            if ".mask_" in k:
                name = k.rsplit(".mask_", 1)[1]
                out[k] = edge_mask(dict(EDGE_BRANCHES)[name], int(v.shape[0]))
            else:
                out[k] = torch.tensor(0, dtype=torch.long)
    if set(out) != set(reference) or any(out[k].shape != reference[k].shape for k in reference):
        return None
    form = "deploy" if (mixer, mlp) == ("deploy", "deploy") else "train"
    desc = (
        f"CFSR x{scale} (embed {embed}, depths {list(depths)}, dw {dw_size}, mlp_ratio {hidden // embed}, "
        f"{form} form: mixer {mixer}, EFN {mlp})"
    )
    return Detection(
        family=FAMILY,
        build=build,
        state_dict=out,
        description=desc,
        extra={"scale": scale, "form": form, "mixer_form": mixer, "mlp_form": mlp},
    )
