"""End to end on generated data: every options/tiny/*.yml trains, checkpoints, resumes exactly, exports.

The tiny runs themselves are done once per session (``tiny_runs`` fixture, ~10 s on one core after
BasicSR's import); each test then checks one property.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from tests.train.conftest import TINY, TINY_RUNS, TinyRuns, losses_in_log, make_tiny_data

pytest.importorskip("basicsr")


@pytest.mark.parametrize("run", TINY_RUNS)
def test_loss_falls_and_checkpoints_are_written(tiny_runs: TinyRuns, run: str):
    res = tiny_runs.results[run]
    assert res.start_iter == 0 and res.end_iter == 30
    exp = tiny_runs.exp(run)
    key = "l_total" if run == "dsclora_x2" else "l_pix"
    losses = losses_in_log(res.log_file, key)
    assert len(losses) == 6, losses  # print_freq 5, 30 iterations
    assert losses[-1] < losses[0], f"{run}: {key} did not fall: {losses}"
    for it in (10, 20, 30):
        assert (exp / "models" / f"net_g_{it}.pth").is_file()
        assert (exp / "training_states" / f"{it}.state").is_file()
    for name in ("net_g_latest.pth", "net_g_best.pth"):
        assert (exp / "models" / name).is_file()
    assert not list(exp.rglob("*.part")), "temporary checkpoint files left behind"
    assert "tiny_val" in res.best or "tiny_denoise_val" in res.best


def test_distillation_logs_every_term(tiny_runs: TinyRuns):
    log = tiny_runs.results["dsclora_x2"].log_file
    for key in ("l_pix", "l_distill", "l_aff"):
        vals = losses_in_log(log, key)
        assert vals and all(np.isfinite(vals)), key
    assert losses_in_log(log, "l_aff")[-1] < losses_in_log(log, "l_aff")[0]
    text = log.read_text()
    assert "Teacher IMDN" in text and "ConvLoRA on 20 layers" in text


def test_lora_run_trains_only_the_adapters(tiny_runs: TinyRuns):
    ckpt = torch.load(tiny_runs.exp("span_lora_x2") / "models" / "net_g_30.pth", weights_only=True)
    base = torch.load(tiny_runs.exp("span_x2") / "models" / "net_g_latest.pth", weights_only=True)["params_ema"]
    from restore.archs.span import SPAN

    fused = SPAN(feature_channels=8, upscale=2)
    fused.load_state_dict(base)
    fused = fused.fuse().state_dict()
    sd = ckpt["params"]
    lora_b = [k for k in sd if k.endswith("lora_B")]
    assert len(lora_b) == 20 and any(sd[k].abs().max() > 0 for k in lora_b)
    for k, v in fused.items():  # frozen base weights unchanged
        assert torch.equal(sd[k], v), k
    assert ckpt["restore_arch"]["lora"]["targets"]["upsampler.0"] == [8, 16.0]


def _parser() -> argparse.ArgumentParser:
    from restore.cli.train import add_export_parser, add_train_parser

    ap = argparse.ArgumentParser(prog="restore")
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_train_parser(sub)
    add_export_parser(sub)
    return ap


def _cli(*argv: str) -> int:
    args = _parser().parse_args(list(argv))
    return args.func(args)


@pytest.mark.parametrize("run", TINY_RUNS)
def test_export_load_model_eval(tiny_runs: TinyRuns, run: str, tmp_path, one_thread, capsys):
    """The best checkpoint, exported (plain and fused), loaded and scored by ``restore eval``'s functions, scores
    what the training-time validation recorded for it (same network, images, noise seed and metric)."""
    from restore.evaluate import evaluate_denoise, evaluate_sr
    from restore.weights import load_model

    res = tiny_runs.results[run]
    (best,) = res.best.values()  # one validation set per tiny run
    recorded = best["psnr"]["val"]
    src = tiny_runs.exp(run) / "models" / "net_g_best.pth"
    for fuse in (False, True):
        out = tmp_path / f"{run}_{fuse}.pth"
        assert _cli("export", "--weights", str(src), "-o", str(out), *(["--fuse"] if fuse else [])) == 0
        assert "->" in capsys.readouterr().out
        sd = torch.load(out, weights_only=True)
        assert not any("lora" in k for k in sd), "LoRA not merged"
        model = load_model(out)
        if fuse:
            assert model.meta.form == "deploy"
        data = tiny_runs.root / "tiny_data"
        if model.meta.task == "sr":
            got = evaluate_sr(model, data / "sr" / "val", scale=2, progress=False)
        else:
            color = "gray" if model.meta.in_channels == 1 else "rgb"
            got = evaluate_denoise(model, data / color / "val", sigma=25, progress=False)
        assert len(got.per_image) == 2
        # unfused: the very network validation ran, so the very score; fused: float rounding differs, so a uint8
        # output may flip one level where it sat on a rounding boundary (one flip here moves the mean by < 2e-4
        # dB; cfsr_x2 fused measured -2.7e-5 dB, every other run exact)
        tol = 2e-4 if fuse else 1e-9
        assert got.psnr_y == pytest.approx(recorded, abs=tol), f"{run} fuse={fuse}: {got.psnr_y} vs {recorded}"


def test_export_matches_training_validation(tiny_runs: TinyRuns, tmp_path):
    """The exported EMA network scores what the training-time validation reported for it."""
    from restore import io
    from restore.engine.restorer import Restorer
    from restore.export import export
    from restore.metrics.psnr_ssim import calculate_psnr
    from restore.weights import load_model

    out = export(tiny_runs.exp("span_x2") / "models" / "net_g_30.pth", tmp_path / "s.pth", fuse=True).output
    runner = Restorer(load_model(out))
    val = tiny_runs.root / "tiny_data" / "sr" / "val"
    scores = []
    for hr_path in sorted((val / "HR").glob("*.png")):
        lr = io.read_rgb(val / "LR_bicubic" / "X2" / f"{hr_path.stem}x2.png")
        scores.append(calculate_psnr(runner.run(lr), io.read_rgb(hr_path), crop_border=2, test_y_channel=True))
    best = tiny_runs.results["span_x2"].best["tiny_val"]["psnr"]
    assert best["iter"] == 30
    assert float(np.mean(scores)) == pytest.approx(best["val"], abs=2e-3)


@pytest.mark.parametrize(("stop", "position"), [(20, "epoch 1, iter 20 (batch 5 of the epoch)"),
                                              (15, "epoch 1, iter 15 (batch 0 of the epoch)")])
def test_resume_continues_exactly(tiny_runs: TinyRuns, tmp_path, one_thread, monkeypatch, capsys, stop, position):
    """Stop mid-epoch (20) or at an epoch boundary (15, 15 iterations per epoch), resume with the CLI to 30:
    bit-identical to the uninterrupted run."""
    make_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    opt = str(TINY / "span_x2.yml")
    assert _cli("train", "-opt", opt, "--root", str(tmp_path), "--set", f"train.total_iter={stop}",
                "--set", "num_gpu=0") == 0
    capsys.readouterr()
    assert _cli("train", "-opt", opt, "--root", str(tmp_path), "--resume", "--set", "num_gpu=0") == 0
    assert f"iterations {stop} -> 30 (resumed from" in capsys.readouterr().out
    exp = tmp_path / "experiments" / "tiny_span_x2"
    logs = sorted(exp.glob("train_*.log"), key=lambda p: p.stat().st_mtime)
    text = logs[-1].read_text()
    assert "Resuming training from" in text and position in text
    assert f"Start training from epoch: 1, iter: {stop}" in text
    a = torch.load(tiny_runs.exp("span_x2") / "models" / "net_g_30.pth", weights_only=True)
    b = torch.load(exp / "models" / "net_g_30.pth", weights_only=True)
    for key in ("params", "params_ema"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs after resume"
    sa = torch.load(tiny_runs.exp("span_x2") / "training_states" / "30.state", weights_only=True)
    sb = torch.load(exp / "training_states" / "30.state", weights_only=True)
    assert torch.equal(sa["rng"]["torch"], sb["rng"]["torch"])
    assert sa["schedulers"] == sb["schedulers"] and (sa["epoch"], sa["batch_in_epoch"]) == (sb["epoch"],
                                                                                          sb["batch_in_epoch"])


def test_resume_skips_a_torn_or_orphan_state(tiny_runs: TinyRuns, tmp_path):
    """After a kill, a half-written newest state (or one whose model file is gone) is passed over."""
    import shutil

    from restore.train.checkpoint import latest_state

    exp = tmp_path / "exp"
    shutil.copytree(tiny_runs.exp("span_x2"), exp)
    assert latest_state(exp).name == "30.state"
    (exp / "training_states" / "40.state").write_bytes(b"torn")
    (exp / "training_states" / ".50.state.x.part").write_bytes(b"partial")
    assert latest_state(exp).name == "30.state"
    (exp / "models" / "net_g_30.pth").unlink()
    assert latest_state(exp).name == "20.state"


def test_resume_without_state_starts_fresh(tmp_path, one_thread, monkeypatch):
    from restore.train.loop import train

    make_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    res = train(TINY / "espcn_x2.yml", root=tmp_path, resume=True, overrides=["train.total_iter=5", "num_gpu=0"])
    assert res.start_iter == 0 and res.end_iter == 5 and res.resumed_from is None
    assert "no training state" in res.log_file.read_text()


def test_workers_do_not_change_the_batches(tmp_path, one_thread, monkeypatch):
    """Per-sample seeds: two loader workers give the same weights as loading in the main process."""
    from restore.train.loop import train

    make_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    common = ["train.total_iter=6", "num_gpu=0", "val.val_freq=100"]
    a = train(TINY / "espcn_x2.yml", root=tmp_path / "a", overrides=common)
    b = train(TINY / "espcn_x2.yml", root=tmp_path / "b",
              overrides=[*common, "datasets.train.num_worker_per_gpu=2", "datasets.train.prefetch_mode=cpu"])
    wa = torch.load(a.experiment / "models" / "net_g_6.pth", weights_only=True)["params"]
    wb = torch.load(b.experiment / "models" / "net_g_6.pth", weights_only=True)["params"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.gpu
def test_amp_on_cuda(tmp_path, monkeypatch):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from restore.train.loop import train

    make_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    res = train(TINY / "dsclora_x2.yml", root=tmp_path, overrides=["num_gpu=1", "train.total_iter=10",
                                                                   "path.pretrain_network_g=~",
                                                                   "path.pretrain_network_t=" + str(
                                                                       _random_teacher(tmp_path))])
    assert "Mixed precision" in res.log_file.read_text()
    state = torch.load(res.experiment / "training_states" / "10.state", weights_only=True)
    assert state["scaler"], "GradScaler state not saved"
    res2 = train(TINY / "dsclora_x2.yml", root=tmp_path, resume=True,
                 overrides=["num_gpu=1", "train.total_iter=12", "path.pretrain_network_g=~",
                            "path.pretrain_network_t=" + str(tmp_path / "teacher.pth")])
    assert res2.start_iter == 10 and res2.end_iter == 12


def test_bf16_autocast_on_cpu_trains_and_resumes(tmp_path, one_thread, monkeypatch):
    """train.amp_dtype: bf16 runs the forward in bf16 on the CPU (no scaler) and resumes exactly."""
    from restore.train.loop import train

    make_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    common = ["num_gpu=0", "train.amp_dtype=bf16", "val.val_freq=100", "logger.save_checkpoint_freq=4"]
    seen: list[tuple[bool, torch.dtype | None]] = []  # (training, autocast dtype or None)
    from restore.archs.dncnn import DnCNN

    orig = DnCNN.forward

    def spy(self, x):
        on = torch.is_autocast_enabled(x.device.type)
        seen.append((self.training, torch.get_autocast_dtype(x.device.type) if on else None))
        return orig(self, x)

    monkeypatch.setattr(DnCNN, "forward", spy)
    full = train(TINY / "dncnn_gray_blind.yml", root=tmp_path / "a", overrides=[*common, "train.total_iter=8"])
    log = full.log_file.read_text()
    assert "Mixed precision (bf16 autocast on cpu) is on" in log
    assert {d for training, d in seen if training} == {torch.bfloat16}
    assert {d for training, d in seen if not training} == {None}  # validation stays fp32
    state = torch.load(full.experiment / "training_states" / "8.state", weights_only=True)
    assert not state["scaler"], "no GradScaler with bf16"
    part = train(TINY / "dncnn_gray_blind.yml", root=tmp_path / "b", overrides=[*common, "train.total_iter=4"])
    assert part.end_iter == 4
    res = train(TINY / "dncnn_gray_blind.yml", root=tmp_path / "b", resume=True,
                overrides=[*common, "train.total_iter=8"])
    assert res.start_iter == 4 and res.end_iter == 8
    wa = torch.load(full.experiment / "models" / "net_g_8.pth", weights_only=True)["params"]
    wb = torch.load(res.experiment / "models" / "net_g_8.pth", weights_only=True)["params"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("run", ["span_x2", "imdn_x2", "cfsr_x2", "espcn_x2", "dncnn_gray_blind",
                                 "dncnn_weighted_rgb", "dsclora_x2"])
def test_channels_last_trains_the_same_network(run: str, tmp_path, one_thread, monkeypatch):
    """train.channels_last: NHWC network and batches, contiguous checkpoints, the same weights as NCHW up to
    float summation order after two steps."""
    from restore.train.loop import train

    make_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    common = ["num_gpu=0", "train.total_iter=2", "val.val_freq=100", "logger.save_checkpoint_freq=2"]
    if run == "dsclora_x2":
        common += ["path.pretrain_network_g=~", f"path.pretrain_network_t={_random_teacher(tmp_path)}"]
    seen: list[bool] = []
    monkeypatch.setattr(torch.nn.functional, "conv2d", _spy_conv(seen, torch.nn.functional.conv2d))
    a = train(TINY / f"{run}.yml", root=tmp_path / "a", overrides=common)
    nhwc_a, seen[:] = sum(seen), []  # (Conv3XC / weighted-conv weight algebra may see NHWC views either way)
    b = train(TINY / f"{run}.yml", root=tmp_path / "b", overrides=[*common, "train.channels_last=true"])
    assert sum(seen) > max(2 * nhwc_a, 4), "the convolutions did not run on NHWC inputs"
    assert "channels-last" in b.log_file.read_text()
    wa = torch.load(a.experiment / "models" / "net_g_2.pth", weights_only=True)["params"]
    wb = torch.load(b.experiment / "models" / "net_g_2.pth", weights_only=True)["params"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wb[k].is_contiguous(), k
        # Adam normalises each gradient, so summation-order noise in a near-zero one (LoRA B starts at zero) moves
        # its weight by a fraction of a step: 5e-5 is 1% of one step at dsclora_x2's lr 5e-3 (an AVX2-only CPU
        # differed by 1.1e-5 on one of 144 dsclora_x2 elements); a layout bug moves weights by whole steps
        torch.testing.assert_close(wb[k], wa[k], atol=5e-5, rtol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


def _spy_conv(seen: list[bool], orig):
    def conv2d(x, *args, **kwargs):
        if x.dim() == 4 and x.shape[1] > 1 and x.shape[2] * x.shape[3] > 1:
            seen.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        return orig(x, *args, **kwargs)

    return conv2d


def _random_teacher(tmp_path):
    from restore.archs.imdn import IMDN

    p = tmp_path / "teacher.pth"
    torch.save(IMDN(scale=2, nf=16, num_modules=2).state_dict(), p)
    return p


def test_kill_loses_at_most_one_checkpoint_interval(tmp_path, monkeypatch):
    """SIGKILL a real training process mid-run; --resume continues from its last checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from restore.train.checkpoint import latest_state
    from restore.train.loop import train
    from tests.conftest import REPO

    make_tiny_data(tmp_path)
    code = ("import torch, sys; torch.set_num_threads(1); from restore.train.loop import train; "
            f"train({str(TINY / 'espcn_x2.yml')!r}, root={str(tmp_path)!r}, overrides=['num_gpu=0', "
            "'train.total_iter=100000', 'logger.save_checkpoint_freq=10', 'val.val_freq=100000'])")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    states = tmp_path / "experiments" / "tiny_espcn_x2" / "training_states"
    try:
        deadline = time.time() + 120
        while not (states / "30.state").exists():
            assert proc.poll() is None and time.time() < deadline, "training did not reach iteration 30"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    last = latest_state(tmp_path / "experiments" / "tiny_espcn_x2")
    it = int(last.stem)
    assert it >= 30
    monkeypatch.chdir(tmp_path)
    res = train(TINY / "espcn_x2.yml", root=tmp_path, resume=True,
                overrides=["num_gpu=0", f"train.total_iter={it + 5}", "val.val_freq=100000"])
    assert res.start_iter == it and res.end_iter == it + 5


def test_warm_start_from_another_scale_resamples_the_tail(tmp_path, one_thread, monkeypatch):
    """x2 from an x4 checkpoint (path.resample_tail_g): the run starts from the x4 output box-averaged, and no
    path.* value other than the experiment folders becomes a directory."""
    from restore.archs.span import SPAN
    from restore.train.loop import train

    make_tiny_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    x4 = SPAN(feature_channels=8, upscale=4)
    torch.save({"params": x4.state_dict()}, tmp_path / "x4.pth")
    res = train(TINY / "span_x2.yml", root=tmp_path, overrides=[
        "train.total_iter=2", "num_gpu=0", "val.val_freq=100", "path.pretrain_network_g=x4.pth",
        "path.resample_tail_g=upsampler.0"])
    assert res.end_iter == 2
    assert "upsampler.0: the x4 sub-pixel tail of x4.pth resampled to x2" in res.log_file.read_text()
    assert not (tmp_path / "upsampler.0").exists()
