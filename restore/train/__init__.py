"""Training from BasicSR-style YAML option files (``restore train -opt FILE``).

BasicSR (PyPI ``basicsr-fixed``, the ``train`` extra) is the engine: its registries, models'
optimisers/schedulers/EMA, losses, data loaders, prefetchers and loggers. Our architectures, datasets,
models and losses are registered into its registries by :mod:`restore.train.registry`. Only modules of
this package import ``basicsr``, and only when training actually starts: importing ``restore.train`` (or
:mod:`restore.train.options`) does not.

Modules:
  * :mod:`restore.train.options`  -- the option schema, parsed once into validated dataclasses;
  * :mod:`restore.train.networks` -- building networks by type name, ConvLoRA setup, deploy conversion;
  * :mod:`restore.train.data`     -- datasets (paired / HR-only SR, denoising) and the resumable sampler;
  * :mod:`restore.train.losses`   -- chunked spatial-affinity distillation loss;
  * :mod:`restore.train.models`   -- SR, denoising and DSCLoRA distillation models (BasicSR ``SRModel``);
  * :mod:`restore.train.checkpoint` -- atomic saves, RNG capture, latest-state lookup;
  * :mod:`restore.train.loop`     -- the iteration loop (``train``);
  * :mod:`restore.train.dist`     -- launchers (torchrun, SLURM), the process group, what the ranks agree on;
  * :mod:`restore.train.testing`  -- ``restore test -opt options/test/*.yml`` (torch only, no basicsr);
"""

from __future__ import annotations


def basicsr_problem() -> str | None:
    """Why training cannot start (BasicSR missing or broken), or None: what ``restore train`` checks first."""
    try:
        import basicsr  # noqa: F401
    except ImportError:
        return "'restore train' needs BasicSR: pip install 'restore[train]' (the basicsr-fixed package)"
    return None
