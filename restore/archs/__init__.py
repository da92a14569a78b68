"""Network architectures, one family per file.

Each family module exposes ``detect(state_dict) -> Detection | None`` (the state dict is
already unwrapped from ``params``/``params_ema``/``state_dict`` and has ``module.`` stripped)
and model classes carrying a ``meta`` property (:class:`restore.archs.base.ModelMeta`).
"""
