"""Time one training step (forward, loss, backward, Adam) per memory format and precision; print ratios.

What ``train.channels_last`` and ``train.amp_dtype: bf16`` buy on this machine, for the networks the release
trains (``scripts/train_release.py``): SPAN-tiny x4 (batch 16 of 32x32 LR patches, L1) and DnCNN-17 gray
(batch 32 of 40x40, MSE on the noise). bf16 is only timed where training uses it: SPAN's gradients under bf16
autocast are far from fp32's (cosine 0.01 on span_tiny_x4_3), DnCNN's are not (0.9994).

    OMP_NUM_THREADS=1 python scripts/bench_train_step.py [--threads 1] [--repeat 4]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn

from restore.archs.dncnn import DnCNN
from restore.archs.span import SPAN


def step_time(make: Callable[[], nn.Module], shape: tuple[int, ...], *, channels_last: bool, bf16: bool,
              repeat: int) -> float:
    """Best of ``repeat`` timed steps (after two warm-up steps), seconds."""
    torch.manual_seed(0)
    net = make().train()
    x = torch.rand(shape)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    times = []
    for _ in range(repeat + 2):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = net(x)
        loss = y.float().abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return min(times[2:])


CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], bool]] = {
    "span_tiny_x4": (lambda: SPAN(feature_channels=26, upscale=4), (16, 3, 32, 32), False),
    "dncnn_17": (lambda: DnCNN(in_channels=1, num_layers=17, num_features=64, batch_norm=True), (32, 1, 40, 40),
                 True),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=4)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} thread(s); seconds per training step (ratio vs fp32 NCHW)")
    for name, (make, shape, bf16_ok) in CASES.items():
        combos = [(False, False), (True, False)] + ([(False, True), (True, True)] if bf16_ok else [])
        base = None
        parts = []
        for cl, bf in combos:
            t = step_time(make, shape, channels_last=cl, bf16=bf, repeat=a.repeat)
            base = base or t
            parts.append(f"{'bf16' if bf else 'fp32'} {'NHWC' if cl else 'NCHW'} {t:.3f} ({base / t:.2f}x)")
        print(f"{name:14s} " + "  ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
