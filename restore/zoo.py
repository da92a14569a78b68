"""Optional model zoo: run any architecture that spandrel can load through restore's engine.

spandrel (https://github.com/chaiNNer-org/spandrel, MIT licence; PyPI ``spandrel`` 0.4.x, installed with
the optional extra ``restore[zoo]``) recognises about 40 architectures (ESRGAN/Real-ESRGAN, SwinIR, HAT,
OmniSR, SPAN, ...) from a state dict alone and builds them. It has no tiling, file handling or video, which
restore provides. :func:`restore.weights.load_model` asks spandrel only when none of restore's own families
recognises a checkpoint; restore's families always win (strict load, exact metadata).

:class:`ZooModel` wraps the network spandrel built and maps its descriptor onto :class:`ModelMeta`:

* scale, input/output channels, ``size_multiple`` (spandrel's ``size_requirements.multiple_of``),
  ``half_safe`` (``supports_half``); task ``"sr"`` for scale > 1, ``"denoise"`` (restoration) for x1.
* What spandrel does not record gets safe defaults: ``receptive_field=None`` (unknown), so the engine
  tiles with feathered overlaps instead of exact tiles; input range ``[0, 1]`` in RGB (3 channels) or gray
  (1 channel), which is spandrel's calling convention for every architecture.

Forward convention as for every restore model: float NCHW in ``[0, 1]`` in, the restored image out (not
clamped; the engine clips when it writes integer images). Like spandrel's own call, the input is padded to
the model's size requirements (minimum side, multiple, square; reflect then replicate) and the output
cropped back, and architecture-specific call functions (noise-level maps, tuple outputs, ...) are applied.
spandrel documents those call functions for one image at a time, so unless the architecture uses the plain
``model(x)`` call, a batch goes through them image by image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from restore.archs.base import ModelMeta, Task, count_params
from restore.errors import ModelLoadError

INSTALL_HINT = "pip install 'restore[zoo]'"
FAMILY_PREFIX = "zoo:"
ASSUMED_TILING = "tiling: feathered (receptive field unknown)"
TILING_ADVICE = {
    "DISCOURAGED": "spandrel discourages tiling this model (it uses global image information): "
                   "prefer --tile 0 where memory allows",
    "INTERNAL": "spandrel says this model tiles internally: prefer --tile 0",
}

CallFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _spandrel() -> ModuleType:
    """The spandrel module, or a :class:`ModelLoadError` that names the extra to install."""
    try:
        import spandrel
    except ImportError:
        raise ModelLoadError(f"the model zoo needs the optional package spandrel: {INSTALL_HINT}") from None
    return spandrel


def available() -> bool:
    """True when spandrel can be imported."""
    try:
        _spandrel()
    except ModelLoadError:
        return False
    return True


def spandrel_version() -> str:
    return str(getattr(_spandrel(), "__version__", "unknown"))


def zoo_architectures() -> list[str]:
    """Ids of the architectures in spandrel's ``MAIN_REGISTRY`` (sorted, case-insensitive), for
    ``restore models --zoo``; raises :class:`ModelLoadError` with the install hint without spandrel."""
    reg = _spandrel().MAIN_REGISTRY
    return sorted((str(a.architecture.id) for a in reg.architectures("insertion")), key=str.lower)


def _is_plain_call(call_fn: object) -> bool:
    """spandrel's default call is ``lambda model, image: model(image)`` defined in the descriptor's
    ``__init__``; anything else is an architecture-specific call documented for batch size 1."""
    return call_fn is None or "ImageModelDescriptor.__init__" in getattr(call_fn, "__qualname__", "")


class ZooModel(nn.Module):
    """A spandrel-built network with restore's ``meta`` and forward convention."""

    def __init__(
        self,
        *,
        net: nn.Module,
        arch: str,
        tags: tuple[str, ...] = (),
        purpose: str = "SR",
        scale: int = 1,
        in_channels: int = 3,
        out_channels: int = 3,
        min_size: int = 0,
        size_multiple: int = 1,
        square: bool = False,
        half_safe: bool = False,
        bf16_safe: bool = False,
        tiling: str = "SUPPORTED",
        call_fn: CallFn | None = None,
    ) -> None:
        super().__init__()
        if (in_channels, out_channels) not in ((3, 3), (1, 1)):
            raise ValueError(f"{arch}: restore runs RGB (3 -> 3) or gray (1 -> 1) models, this one maps "
                             f"{in_channels} -> {out_channels} channels")
        self.net = net.eval()
        self.arch = arch
        self.tags = tuple(tags)
        self.purpose = purpose
        self.scale = int(scale)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.min_size = int(min_size)
        self.size_multiple = max(1, int(size_multiple))
        self.square = bool(square)
        self.half_safe = bool(half_safe)
        self.bf16_safe = bool(bf16_safe)
        self.tiling = tiling
        self.batched = _is_plain_call(call_fn)
        self._call: CallFn = call_fn if call_fn is not None else _plain_call

    @classmethod
    def from_descriptor(cls, desc: object) -> ZooModel:
        """Wrap a spandrel ``ImageModelDescriptor``."""
        req = desc.size_requirements
        return cls(
            net=desc.model,
            arch=str(desc.architecture.id),
            tags=tuple(str(t) for t in desc.tags),
            purpose=str(desc.purpose),
            scale=int(desc.scale),
            in_channels=int(desc.input_channels),
            out_channels=int(desc.output_channels),
            min_size=int(req.minimum),
            size_multiple=int(req.multiple_of),
            square=bool(req.square),
            half_safe=bool(desc.supports_half),
            bf16_safe=bool(desc.supports_bfloat16),
            tiling=str(getattr(desc.tiling, "name", desc.tiling)),
            call_fn=getattr(desc, "_call_fn", None),
        )

    @property
    def task(self) -> Task:
        return "sr" if self.scale > 1 else "denoise"

    @property
    def meta(self) -> ModelMeta:
        return ModelMeta(
            family=f"{FAMILY_PREFIX}{self.arch}",
            variant="-".join(self.tags) or "default",
            task=self.task,
            scale=self.scale,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            input_range=1.0,
            color_space="rgb" if self.in_channels == 3 else "gray",
            size_multiple=self.size_multiple,
            half_safe=self.half_safe,
            receptive_field=None,
            form="deploy",
            params=count_params(self),
        )

    def description(self) -> str:
        tags = f" {' '.join(self.tags)}" if self.tags else ""
        return f"{self.arch}{tags} x{self.scale} ({self.purpose})"

    def assumptions(self) -> list[str]:
        """The defaults restore assumes where spandrel's metadata is silent (shown by ``restore info``)."""
        space = "RGB" if self.in_channels == 3 else "gray"
        notes = [ASSUMED_TILING, f"input range: [0,1] {space} (assumed)"]
        if self.tiling in TILING_ADVICE:
            notes.append(TILING_ADVICE[self.tiling])
        return notes

    def padding(self, h: int, w: int) -> tuple[int, int]:
        """(bottom, right) padding that meets the size requirements, as spandrel computes it."""
        ph, pw = max(self.min_size, h), max(self.min_size, w)
        m = self.size_multiple
        ph, pw = -(-ph // m) * m, -(-pw // m) * m
        if self.square:
            ph = pw = max(ph, pw)
        return ph - h, pw - w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = self.padding(h, w)
        if pad_h or pad_w:
            rh, rw = min(pad_h, h - 1), min(pad_w, w - 1)  # reflect is limited to size - 1
            x = F.pad(x, (0, rw, 0, rh), mode="reflect")
            x = F.pad(x, (0, pad_w - rw, 0, pad_h - rh), mode="replicate")
        if self.batched or x.shape[0] == 1:
            y = self._call(self.net, x)
        else:
            y = torch.cat([self._call(self.net, x[i:i + 1]) for i in range(x.shape[0])])
        return y[..., : h * self.scale, : w * self.scale]


def _plain_call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def _first_keys(sd: Mapping[str, torch.Tensor], n: int = 4) -> str:
    return ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(sd.items())[:n]) or "(empty)"


def from_state_dict(state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict") -> ZooModel:
    """Ask spandrel to recognise and build ``state_dict``; :class:`ModelLoadError` when it cannot (or when
    spandrel is not installed: the message names the extra)."""
    sp = _spandrel()
    sd = sp.canonicalize_state_dict(dict(state_dict))  # spandrel may modify the dict it loads
    supports = sp.MAIN_REGISTRY.architectures("detection")
    arch = next((s.architecture for s in supports if s.detect(sd)), None)
    if arch is None:
        from restore.registry import FAMILIES

        raise ModelLoadError(
            f"{source}: unrecognised architecture: no restore family ({', '.join(FAMILIES)}) matches, nor any of "
            f"the {len(supports)} architectures of spandrel {spandrel_version()} ('restore models --zoo'); "
            f"first keys: {_first_keys(sd)}")
    try:
        desc = arch.load(dict(sd))
    except Exception as e:  # spandrel's loaders raise whatever their parsing hits
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{source}: spandrel {spandrel_version()} detected {arch.id} but could not "
                             f"load it: {msg}") from e
    if not isinstance(desc, sp.ImageModelDescriptor):
        raise ModelLoadError(f"{source}: {arch.id} is a {desc.purpose} model (it needs a mask input); "
                             f"restore runs image-to-image models only")
    try:
        model = ZooModel.from_descriptor(desc)
    except ValueError as e:
        raise ModelLoadError(f"{source}: {e}") from None
    return model.eval()


def read_safetensors(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (the ``safetensors`` package comes with the zoo extra)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ModelLoadError(f"{path}: reading .safetensors needs the optional extra: {INSTALL_HINT}") from None
    try:
        return dict(load_file(path, device="cpu"))
    except Exception as e:  # safetensors raises its own SafetensorError for corrupt headers
        raise ModelLoadError(f"{path}: not a readable .safetensors file ({e})") from None
