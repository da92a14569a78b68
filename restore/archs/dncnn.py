"""DnCNN: residual-learning Gaussian denoiser.

Paper: K. Zhang, W. Zuo, Y. Chen, D. Meng, L. Zhang, "Beyond a Gaussian Denoiser: Residual Learning of Deep
CNN for Image Denoising", IEEE TIP 26(7), 2017. Official code (MatConvNet): https://github.com/cszn/DnCNN.
PyTorch ports whose checkpoint layouts this module loads (both read for reference only; this is an
independent re-implementation):

* cszn/KAIR (MIT), ``models/network_dncnn.py``, ``act_mode='R'``: BatchNorm already folded into the conv
  biases; keys ``model.{0,2,...,2(L-1)}.weight/bias`` (conv at even indices, ReLU at odd ones). Here this is
  the *deploy* form (``batch_norm=False``).
* SaoYan/DnCNN-PyTorch (GPL-3.0), ``models.py``: conv (no bias) + ``BatchNorm2d`` (eps 1e-5) + ReLU; keys
  ``dncnn.N.weight`` / ``dncnn.N.{weight,bias,running_mean,running_var}``, conv at 0, 2, 5, 8, ...,
  BatchNorm at 3, 6, ...; the published files have no ``num_batches_tracked``. Here this is the *train*
  form (``batch_norm=True``).

Network: conv3x3(C→F)+ReLU, (L-2) × [conv3x3(F→F)+BN+ReLU], conv3x3(F→C); ``L`` = 17 (DnCNN-S) or 20
(DnCNN-B), ``F`` = 64, ``C`` = 1 (gray) or 3 (colour). The net predicts the noise; like KAIR's forward (and
SaoYan's test script, which does ``noisy - net(noisy)``) :meth:`DnCNN.forward` returns the denoised image
``x - net(x)``, unclamped. Input: [0, 1].

Option ``weighted=True`` replaces every 3x3 conv by :class:`restore.archs.weighted_conv.WeightedConv2d`
(Cammarasana & Patanè, "Optimal Weighted Convolution for Classification and Denoising", arXiv:2505.24558,
2025 — they evaluate exactly this DnCNN variant); keys gain ``alfa``/``Phi`` buffers (fixed density) or a
``den`` parameter (trainable density). :meth:`DnCNN.fuse` folds the density and the BatchNorm into plain
biased convs and returns the KAIR-layout deploy model.

The training noise level cannot be read from the weights; pass ``sigma=`` to record it in ``meta.variant``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from restore.archs.base import Detection, ModelMeta, count_params
from restore.archs.weighted_conv import WeightedConv2d, den_from_state

FAMILY = "dncnn"


class DnCNN(nn.Module):
    """DnCNN: train form (``batch_norm=True``, SaoYan keys ``dncnn.N``) or deploy form (KAIR ``model.N``)."""

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_layers: int = 17,
        num_features: int = 64,
        batch_norm: bool = True,
        weighted: bool = False,
        den: Sequence[float] | None = None,
        trainable_den: bool = False,
        sigma: float | None = None,
    ) -> None:
        super().__init__()
        if num_layers < 3:
            raise ValueError(f"num_layers must be >= 3, got {num_layers}")
        self.in_channels = in_channels
        self.num_layers = num_layers
        self.num_features = num_features
        self.batch_norm = batch_norm
        self.weighted = weighted
        self.sigma = sigma

        def conv(cin: int, cout: int) -> nn.Module:
            bias = not batch_norm  # SaoYan: no conv bias (BN follows); KAIR deploy: biased convs
            plain = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
            if not weighted:
                return plain
            rng = torch.random.get_rng_state()  # the weighted layer's own init must not shift later layers' draws
            wc = WeightedConv2d(in_channels=cin, out_channels=cout, kernel_size=3, den=den,
                                trainable=trainable_den, padding=1, bias=bias)
            torch.random.set_rng_state(rng)
            # same initial weights as the plain layer (the official wConv2d uses kaiming-normal fan-out, which
            # on the 64->1 output conv is ~20x larger than nn.Conv2d's and wrecks early training), so a
            # weighted-vs-plain comparison differs only in the density
            with torch.no_grad():
                wc.weight.copy_(plain.weight)
                if bias:
                    wc.bias.copy_(plain.bias)
            return wc

        nf = num_features
        layers: list[nn.Module] = [conv(in_channels, nf), nn.ReLU(inplace=True)]
        for _ in range(num_layers - 2):
            layers.append(conv(nf, nf))
            if batch_norm:
                layers.append(nn.BatchNorm2d(nf))
            layers.append(nn.ReLU(inplace=True))
        layers.append(conv(nf, in_channels))
        body = nn.Sequential(*layers)
        if batch_norm:
            self.dncnn = body
        else:
            self.model = body

    @property
    def body(self) -> nn.Sequential:
        return self.dncnn if self.batch_norm else self.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)

    def conv_bn_pairs(self) -> list[tuple[nn.Module, nn.BatchNorm2d | None]]:
        """Each conv with the BatchNorm that follows it (``None`` when there is none)."""
        mods = list(self.body)
        pairs: list[tuple[nn.Module, nn.BatchNorm2d | None]] = []
        for i, m in enumerate(mods):
            if isinstance(m, nn.Conv2d | WeightedConv2d):
                nxt = mods[i + 1] if i + 1 < len(mods) else None
                pairs.append((m, nxt if isinstance(nxt, nn.BatchNorm2d) else None))
        return pairs

    @property
    def meta(self) -> ModelMeta:
        color = "gray" if self.in_channels == 1 else "rgb"
        variant = f"dncnn{self.num_layers}-{color}"
        if self.num_features != 64:
            variant += f"-f{self.num_features}"
        if self.weighted:
            variant += "-weighted"
        if self.sigma is not None:
            variant += f"-s{self.sigma:g}"
        return ModelMeta(
            family=FAMILY,
            variant=variant,
            task="denoise",
            scale=1,
            in_channels=self.in_channels,
            out_channels=self.in_channels,
            input_range=1.0,
            color_space=color,
            size_multiple=1,
            half_safe=True,
            receptive_field=self.num_layers,  # one pixel of radius per 3x3 conv
            form="train" if (self.batch_norm or self.weighted) else "deploy",
            params=count_params(self),
        )

    @torch.no_grad()
    def fuse(self) -> DnCNN:
        """Deploy form (KAIR layout, plain biased convs): density and eval-mode BatchNorm folded in.

        Returns a new module in eval mode; ``self`` is left unchanged. The result equals ``self`` in eval
        mode (BatchNorm uses its running statistics).
        """
        out = DnCNN(in_channels=self.in_channels, num_layers=self.num_layers, num_features=self.num_features,
                    batch_norm=False, weighted=False, sigma=self.sigma)
        ref = next(self.parameters())
        out = out.to(device=ref.device, dtype=ref.dtype)
        for (src, bn), (dst, _) in zip(self.conv_bn_pairs(), out.conv_bn_pairs(), strict=True):
            w = src.effective_weight() if isinstance(src, WeightedConv2d) else src.weight
            b = src.bias if src.bias is not None else torch.zeros_like(dst.bias)
            if bn is not None:
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                w = w * scale.reshape(-1, 1, 1, 1)
                b = (b - bn.running_mean) * scale + bn.bias
            dst.weight.copy_(w)
            dst.bias.copy_(b)
        return out.eval()


# ------------------------------------------------------------------------------------- opponent colour


class OpponentDnCNN(nn.Module):
    """Colour denoising with two gray DnCNNs in an orthonormal luminance / chrominance basis.

    ``T`` (rows ``(1,1,1)/sqrt3``, ``(1,0,-1)/sqrt2``, ``(1,-2,1)/sqrt6``) is orthonormal, so i.i.d. RGB noise of
    sigma stays i.i.d. with the same sigma in it, and the colour MSE is the mean of the three channels' MSEs. The
    luminance ``(R+G+B)/sqrt3`` is denoised as the gray image ``mean(R, G, B)`` (noise ``sigma/sqrt3``) by
    ``luma`` and scaled back; each chrominance channel (smooth, centred on 0.5) by ``chroma`` at the full sigma.
    Both are plain :class:`DnCNN` s (checkpoint keys ``luma.*`` / ``chroma.*``); the composite is what the
    colour defaults ship: nothing but DnCNNs and a fixed colour transform (see docs/results.md for why it
    beats a 3-channel DnCNN trained on this project's budget). ``fuse()`` folds both nets."""

    def __init__(self, luma: DnCNN, chroma: DnCNN, *, sigma: float | None = None) -> None:
        super().__init__()
        if luma.in_channels != 1 or chroma.in_channels != 1:
            raise ValueError("OpponentDnCNN takes two gray (1-channel) DnCNNs")
        self.luma, self.chroma = luma, chroma
        self.sigma = sigma
        t = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0]], dtype=torch.float64)
        self.register_buffer("basis", (t / t.norm(dim=1, keepdim=True)).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        t = self.basis.to(x.dtype)
        z = torch.einsum("kc,nchw->nkhw", t, x)
        root3 = 3.0**0.5
        lum = self.luma(z[:, :1] / root3) * root3
        chroma = self.chroma(z[:, 1:].reshape(n * 2, 1, h, w) + 0.5).reshape(n, 2, h, w) - 0.5
        return torch.einsum("kc,nkhw->nchw", t, torch.cat([lum, chroma], dim=1))

    @property
    def meta(self) -> ModelMeta:
        ml, mc = self.luma.meta, self.chroma.meta
        variant = f"opp-dncnn{self.luma.num_layers}x{self.chroma.num_layers}"
        if self.sigma is not None:
            variant += f"-s{self.sigma:g}"
        return ModelMeta(family=FAMILY, variant=variant, task="denoise", scale=1, in_channels=3, out_channels=3,
                         input_range=1.0, color_space="rgb", size_multiple=1, half_safe=ml.half_safe and mc.half_safe,
                         receptive_field=max(ml.receptive_field or 0, mc.receptive_field or 0),
                         form="deploy" if ml.form == mc.form == "deploy" else "train", params=count_params(self))

    @torch.no_grad()
    def fuse(self) -> OpponentDnCNN:
        return OpponentDnCNN(self.luma.fuse(), self.chroma.fuse(), sigma=self.sigma).eval()


# --------------------------------------------------------------------------------------------- detection

_KEY_RE = re.compile(r"^(dncnn|model)\.(\d+)\.([A-Za-z_]+)$")


def _conv_indices(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    idx = []
    for k, v in sd.items():
        m = _KEY_RE.match(k)
        if m and m.group(1) == prefix and m.group(3) == "weight" and v.ndim == 4:
            idx.append(int(m.group(2)))
    return sorted(idx)


def _expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def detect(state_dict: Mapping[str, torch.Tensor]) -> Detection | None:
    """Recognise a DnCNN state dict (SaoYan train layout or KAIR deploy layout, optionally weighted), or an
    :class:`OpponentDnCNN` (two gray ones under ``luma.`` / ``chroma.``)."""
    if not state_dict:
        return None
    if all(k.startswith(("luma.", "chroma.")) for k in state_dict):
        return _detect_opponent(state_dict)
    prefixes = set()
    for k in state_dict:
        m = _KEY_RE.match(k)
        if m is None:
            return None
        prefixes.add(m.group(1))
    if len(prefixes) != 1:
        return None
    prefix = prefixes.pop()
    batch_norm = prefix == "dncnn"
    convs = _conv_indices(state_dict, prefix)
    if len(convs) < 3 or convs[0] != 0:
        return None
    w0 = state_dict[f"{prefix}.0.weight"]
    wl = state_dict[f"{prefix}.{convs[-1]}.weight"]
    in_ch, nf = int(w0.shape[1]), int(w0.shape[0])
    if in_ch not in (1, 3) or tuple(w0.shape[2:]) != (3, 3) or tuple(wl.shape[:2]) != (in_ch, nf):
        return None

    wc = den_from_state(state_dict, f"{prefix}.0.")
    weighted = f"{prefix}.0.den" in state_dict or f"{prefix}.0.alfa" in state_dict
    if weighted and wc is None:
        return None
    den, trainable = wc if weighted and wc is not None else (None, False)

    kwargs = dict(in_channels=in_ch, num_layers=len(convs), num_features=nf, batch_norm=batch_norm,
                  weighted=weighted, den=den, trainable_den=trainable)
    with torch.device("meta"):
        expected = _expected_shapes(DnCNN(**kwargs))

    sd = dict(state_dict)
    if batch_norm:
        # SaoYan's files predate ``num_batches_tracked``: add it so a strict load of the returned dict works.
        for k in expected:
            if k.endswith(".num_batches_tracked") and k not in sd:
                sd[k] = torch.zeros((), dtype=torch.long)
    if set(sd) != set(expected) or any(tuple(sd[k].shape) != s for k, s in expected.items()):
        return None

    color = "gray" if in_ch == 1 else "colour"
    layout = ("SaoYan layout: conv + BatchNorm, train form" if batch_norm
              else "KAIR layout: BatchNorm folded into conv bias, deploy form")
    if weighted:
        layout += f", weighted conv ({'trainable' if trainable else 'fixed'} density {list(den or ())})"
    return Detection(
        family=FAMILY,
        build=lambda: DnCNN(**kwargs),
        state_dict=sd,
        description=f"DnCNN-{len(convs)} {color}, {nf} features ({layout})",
        extra={"num_layers": len(convs), "in_channels": in_ch, "form": "train" if batch_norm or weighted
               else "deploy"},
    )


def opponent_part(state_dict: Mapping[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    """The gray DnCNN ``part`` ("luma" or "chroma") of an :class:`OpponentDnCNN` state dict: its ``part.*``
    tensors with the prefix removed (empty when there are none)."""
    return {k[len(part) + 1:]: v for k, v in state_dict.items() if k.startswith(part + ".")}


def _detect_opponent(state_dict: Mapping[str, torch.Tensor]) -> Detection | None:
    parts = {}
    for part in ("luma", "chroma"):
        sub = opponent_part(state_dict, part)
        det = detect(sub) if sub and not any(k.startswith(("luma.", "chroma.")) for k in sub) else None
        if det is None or det.extra.get("in_channels") != 1:
            return None
        parts[part] = det
    luma, chroma = parts["luma"], parts["chroma"]
    sd = {f"{p}.{k}": v for p, d in parts.items() for k, v in d.state_dict.items()}
    return Detection(
        family=FAMILY,
        build=lambda: OpponentDnCNN(luma.build(), chroma.build()),  # type: ignore[arg-type]
        state_dict=sd,
        description=f"opponent-colour DnCNN: luminance {luma.description}; chrominance {chroma.description}",
        extra={"num_layers": luma.extra["num_layers"], "in_channels": 3, "form": luma.extra["form"]},
    )

