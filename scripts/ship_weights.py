"""Export the weights trained by ``scripts/train_release.py`` into ``restore/weights/`` with a manifest.

For each shipped model: the newest training state of its last stage names the checkpoint; ``restore export
--fuse`` turns it into the deploy-form network (EMA weights where the EMA has settled, else the raw weights
at the end of the cosine schedule; ConvLoRA merged, Conv3XC / BatchNorm / weighted
conv folded), stored as float16 to keep the package small (loaded back as float32; the results table is
measured on exactly these files). ``restore/weights/manifest.json`` records, per model: task, scale, sigma,
colour, parameters, sha256, and how it was trained -- every stage's option file, ``--set`` overrides,
iterations reached, wall-clock seconds and the training data -- so the command that made it can be re-run.
PSNR figures are added by ``scripts/make_results.py``, which evaluates the shipped files.

    python scripts/ship_weights.py            # ship every model whose stages all finished
    python scripts/ship_weights.py --partial  # also ship in-progress models at their latest checkpoint
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from train_release import SHIPPED_7, STAGES  # noqa: E402

WEIGHTS = ROOT / "restore" / "weights"
MANIFEST = WEIGHTS / "manifest.json"
EMA_SETTLED = 1e-3  # ship the EMA only once decay**iterations (the initial weights' share in it) is below this
TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ INFO: ")


def from_shipped_7(cycle: str) -> str:
    """Session 8 continued ESPCN from the float16 files shipped in session 7, whose experiment folders were lost."""
    return f" (the {cycle} warm-started from the float16 file shipped in {SHIPPED_7})"


@dataclass(frozen=True)
class Ship:
    name: str
    stages: tuple[str, ...]  # training stages, first to last (the last one's checkpoint is shipped)
    task: str
    color: str  # y | rgb | gray
    scale: int = 1
    sigma: str | None = None
    default: bool = False
    summary: str = ""


X4_CHAIN = ("span_tiny_x4", "span_tiny_x4_2", "span_tiny_x4_3")  # 9900 iterations: what x2 / x3 warm-start from
X4_CHAIN_4 = X4_CHAIN + ("span_tiny_x4_4",)  # session 5: a fourth cycle (+ the extra photos), 15900 iterations
X4_CHAIN_5 = X4_CHAIN_4 + ("span_tiny_x4_5",)  # session 6: a fifth (+ the Debian photos), 22900 iterations
# the gray sigma-25 model's first four cycles (8100 iterations; the fourth in bf16 autocast, mostly NHWC):
# the sigma-15 / 50 / blind models are fine-tuned from the fourth
DN_CHAIN_4 = ("dncnn_s25", "dncnn_s25_2", "dncnn_s25_3", "dncnn_s25_4")
SHIPS: list[Ship | Composite] = [
    Ship("span_tiny_x4_distilled", X4_CHAIN_5 + ("dsclora_span_tiny_x4_5_noaff",), "sr", "rgb", 4, default=True,
         summary="span_tiny_x4 + 300 iterations of ConvLoRA (DSCLoRA's layers) with output distillation from CFSR "
                 "x4, no spatial-affinity term (the same stage on span_tiny_x4_3, Set5: affinity weight 0.5 30.73, "
                 "0.05 30.99, none 31.05 dB)"),
    Ship("span_tiny_x4", X4_CHAIN_5, "sr", "rgb", 4,
         summary="SPAN-tiny (26 ch): L1 from scratch, five cosine cycles (the distilled model's student)"),
    Ship("span_tiny_x4_dsclora", ("span_tiny_x4", "dsclora_span_tiny_x4"), "sr", "rgb", 4,
         summary="span_tiny_x4 + a 200-iteration DSCLoRA stage (ConvLoRA rank 8/2 + output and spatial-affinity "
                 "distillation from CFSR x4); not the default: it scored below span_tiny_x4"),
    Ship("span_tiny_x3_distilled", X4_CHAIN + ("span_tiny_x3_2", "dsclora_span_tiny_x3_2_noaff"), "sr", "rgb", 3,
         default=True, summary="span_tiny_x3 + 300 iterations of ConvLoRA with output distillation from CFSR x3, "
                               "no spatial-affinity term (+ the Debian wallpaper photos)"),
    Ship("span_tiny_x2_distilled", X4_CHAIN + ("span_tiny_x2_2", "dsclora_span_tiny_x2_2_noaff"), "sr", "rgb", 2,
         default=True, summary="span_tiny_x2 + 300 iterations of ConvLoRA with output distillation from CFSR x2, "
                               "no spatial-affinity term (+ the Debian wallpaper photos)"),
    Ship("span_tiny_x3", X4_CHAIN + ("span_tiny_x3_2",), "sr", "rgb", 3,
         summary="SPAN-tiny (26 ch) x3: span_tiny_x4_3's body, its tail resampled to x3, "
                 "one cosine cycle (+ skimage photos)"),
    Ship("span_tiny_x2", X4_CHAIN + ("span_tiny_x2_2",), "sr", "rgb", 2,
         summary="SPAN-tiny (26 ch) x2: span_tiny_x4_3's body, its tail resampled to x2, "
                 "one cosine cycle (+ skimage photos)"),
    Ship("espcn_x4", ("espcn_x4", "espcn_x4_2", "espcn_x4_3", "espcn_x4_4r"), "sr", "y", 4,
         summary="ESPCN on full-range Y (real time), MSE, four cosine cycles" + from_shipped_7("fourth")),
    Ship("espcn_x3", ("espcn_x3", "espcn_x3_2", "espcn_x3_3"), "sr", "y", 3,
         summary="ESPCN on full-range Y (real time), MSE, three cosine cycles" + from_shipped_7("second")),
    Ship("espcn_x2", ("espcn_x2", "espcn_x2_2", "espcn_x2_3"), "sr", "y", 2,
         summary="ESPCN on full-range Y (real time), MSE, three cosine cycles" + from_shipped_7("second")),
    Ship("dncnn_s25", DN_CHAIN_4 + ("dncnn_s25_5", "dncnn_s25_6", "dncnn_s25_7", "dncnn_s25_8"), "denoise", "gray",
         sigma="25", default=True, summary="DnCNN-S gray, sigma 25, eight cosine cycles (the last five in bf16 "
         "autocast; the eighth adds the SR training photographs in gray)"),
    Ship("dncnn_s25_weighted", ("dncnn_s25_weighted",), "denoise", "gray", sigma="25",
         summary="DnCNN-S gray, sigma 25, optimal weighted convolution (budget of dncnn_s25's first cycle)"),
    Ship("dncnn_s15", DN_CHAIN_4 + ("dncnn_s15_2",), "denoise", "gray", sigma="15", default=True,
         summary="DnCNN-S gray, sigma 15 (fine-tuned from dncnn_s25's fourth cycle)"),
    Ship("dncnn_s50", DN_CHAIN_4 + ("dncnn_s50_2",), "denoise", "gray", sigma="50", default=True,
         summary="DnCNN-S gray, sigma 50 (fine-tuned from dncnn_s25's fourth cycle)"),
    Ship("dncnn_blind", DN_CHAIN_4 + ("dncnn_b_2",), "denoise", "gray", sigma="blind", default=True,
         summary="DnCNN gray, blind sigma in [0, 55] (depth 17, fine-tuned from dncnn_s25's fourth cycle)"),
    # colour DnCNN, trained from scratch (session 2's cdncnn_b, inner layers from dncnn_s25_2 and new first / last
    # convs, stalled at 22.28 dB on Set5 sigma 25 and was not shipped)
    # the 3-channel colour models are not the defaults: the opponent-colour models below (cdncnn_opp_*) score higher
    Ship("cdncnn_s25", ("cdncnn_s25",), "denoise", "rgb", sigma="25",
         summary="DnCNN-S colour, sigma 25 (from scratch); not the default: the opponent-colour models score "
                 "higher"),
    Ship("cdncnn_s15", ("cdncnn_s25", "cdncnn_s15"), "denoise", "rgb", sigma="15",
         summary="DnCNN-S colour, sigma 15 (fine-tuned from cdncnn_s25); not the default: the "
                 "opponent-colour models score higher"),
    Ship("cdncnn_s50", ("cdncnn_s25", "cdncnn_s50"), "denoise", "rgb", sigma="50",
         summary="DnCNN-S colour, sigma 50 (fine-tuned from cdncnn_s25); not the default: the "
                 "opponent-colour models score higher"),
    Ship("cdncnn_blind", ("cdncnn_s25", "cdncnn_b", "cdncnn_b_2"), "denoise", "rgb", sigma="blind",
         summary="DnCNN colour, blind sigma in [0, 55] (depth 17, fine-tuned from cdncnn_s25, two cycles); not the "
                 "default since session 10: the opponent-colour models (cdncnn_opp_*) score higher (docs/results.md)"),
]


@dataclass(frozen=True)
class Composite:
    """An :class:`restore.archs.dncnn.OpponentDnCNN` shipped as one file: its luminance and chrominance parts are
    the last checkpoints of two gray training chains (``luma`` / ``chroma``: stages, first to last; a stage whose
    experiment folder is gone is taken from the manifest's records)."""

    name: str
    luma: tuple[str, ...]
    chroma: tuple[str, ...]
    sigma: str
    default: bool = False
    summary: str = ""
    task: str = "denoise"
    color: str = "rgb"
    scale: int = 1

    @property
    def stages(self) -> tuple[str, ...]:
        return self.luma + self.chroma


def chain(name: str) -> tuple[str, ...]:
    """The training stages of the shipped model ``name``."""
    return next(s.stages for s in SHIPS if s.name == name)


# session 10 (issue 20): the colour defaults are OpponentDnCNNs, two gray DnCNNs in an orthonormal luminance /
# chrominance basis; each part is a shipped gray model, fine-tuned on its planes where this session's CPU-hours
# reached (sigma 15 and 25; sigma 50 and blind in session 11; second luminance cycles in session 12; a third for sigma
# 15 in session 13; for sigma 50 a third and a fourth, on 96x96 patches drawn by image area, in session 14; second
# chrominance cycles for sigma 50, 15 and 25 in session 15, continued from the shipped parts on a new machine)
SHIPS += [
    Composite("cdncnn_opp_s15", chain("dncnn_blind") + ("opp_luma_s15", "opp_luma_s15_2", "opp_luma_s15_3"),
              chain("dncnn_s15") + ("opp_chroma_s15", "opp_chroma_s15_2"),
              "15", default=True, summary="DnCNN colour, sigma 15, opponent colour: luminance by dncnn_blind "
              "fine-tuned at 15/sqrt3, chrominance by dncnn_s15 fine-tuned on chrominance planes"),
    Composite("cdncnn_opp_s25", chain("dncnn_s15") + ("opp_luma_s25",),
              chain("dncnn_s25") + ("opp_chroma_s25", "opp_chroma_s25_2"),
              "25", default=True, summary="DnCNN colour, sigma 25, opponent colour: luminance by dncnn_s15 "
              "fine-tuned at 25/sqrt3, chrominance by dncnn_s25 fine-tuned on chrominance planes"),
    Composite("cdncnn_opp_s50", chain("dncnn_s25") + ("opp_luma_s50", "opp_luma_s50_2", "opp_luma_s50_3",
                                                      "opp_luma_s50_4a"),
              chain("dncnn_s50") + ("opp_chroma_s50", "opp_chroma_s50_2"),
              "50", default=True, summary="DnCNN colour, sigma 50, opponent colour: luminance by dncnn_s25 "
              "fine-tuned at 50/sqrt3, chrominance by dncnn_s50 fine-tuned on chrominance planes"),
    Composite("cdncnn_opp_blind", chain("dncnn_blind") + ("opp_luma_b",), chain("dncnn_blind") + ("opp_chroma_b",),
              "blind", default=True, summary="DnCNN colour, blind sigma in [0, 55], opponent colour: luminance and "
              "chrominance each by dncnn_blind fine-tuned on its planes (sigma drawn from [0, 55])"),
]


def shipped_gray(stages: tuple[str, ...]) -> Path | None:
    """The shipped file of the gray model whose training chain is exactly ``stages`` (a composite part used as it
    ships, without fine-tuning), or None."""
    for ship in SHIPS:
        if isinstance(ship, Ship) and ship.stages == stages and (WEIGHTS / f"{ship.name}.pth").is_file():
            return WEIGHTS / f"{ship.name}.pth"
    return None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_record(name: str, exp_root: Path) -> dict[str, object] | None:
    """What one training stage reached: iteration, checkpoint, wall-clock seconds, data; None if not started."""
    from restore.train import checkpoint
    from restore.train.options import load_options

    stage = STAGES[name]
    exp = exp_root / "experiments" / name
    state_path = checkpoint.latest_state(exp)
    if state_path is None:
        return None
    state = checkpoint.load(state_path)
    seconds = 0.0
    for log in sorted(exp.glob("train_*.log")):
        stamps = [TIME_RE.match(line) for line in log.read_text(errors="replace").splitlines()]
        times = [dt.datetime.fromisoformat(m.group(1)) for m in stamps if m]
        if len(times) > 1:
            seconds += (times[-1] - times[0]).total_seconds()
    opts = load_options(ROOT / stage.option_file, stage.sets, check_classes=False)
    decay = float(opts.train.ema_decay or 0)
    key = "params_ema" if decay > 0 and decay ** int(state["iter"]) < EMA_SETTLED else "params"
    roots = opts.datasets["train"].dataroot_gt
    data = {str(r): sum(1 for f in (ROOT / r).iterdir() if f.is_file()) if (ROOT / r).is_dir() else 0
            for r in ([roots] if isinstance(roots, str) else roots)}
    return {"stage": name, "option_file": stage.option_file, "overrides": stage.sets, "note": stage.note,
            "iterations": int(state["iter"]), "total_iter": stage.total_iter,
            "finished": int(state["iter"]) >= stage.total_iter, "wall_seconds": round(seconds),
            "train_data": data, "weights": key, "checkpoint": str(exp / "models" / str(state["model_file"]))}


def ship_one(ship: Ship, exp_root: Path, *, partial: bool,
             recorded: dict[str, dict[str, object]] | None = None) -> dict[str, object] | None:
    """Export ``ship``'s last stage and describe its chain. ``recorded``: stage records from the manifest already
    shipped, used for the earlier stages whose experiment folders are gone (the last one must be on disk)."""
    from restore.engine.cpu_paths import cpu_info
    from restore.export import export
    from restore.weights import load_model

    recorded = recorded or {}
    records = [stage_record(s, exp_root) or (recorded.get(s) if i < len(ship.stages) - 1 else None)
               for i, s in enumerate(ship.stages)]
    if any(r is None for r in records) or (not partial and not all(r["finished"] for r in records)):
        return None
    out = WEIGHTS / f"{ship.name}.pth"
    with tempfile.TemporaryDirectory() as tmp:
        res = export(records[-1]["checkpoint"], Path(tmp) / "fp32.pth", fuse=True, key=str(records[-1]["weights"]))
        sd = torch.load(Path(tmp) / "fp32.pth", map_location="cpu", weights_only=True)
        half = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
        from restore.train.checkpoint import atomic_save

        atomic_save(half, out)
    model = load_model(out)
    meta = model.meta
    cpu = cpu_info()[0]
    return {
        "name": ship.name, "task": ship.task, "scale": ship.scale, "sigma": ship.sigma, "color": ship.color,
        "default": ship.default, "summary": ship.summary,
        "family": meta.family, "variant": meta.variant, "params": meta.params,
        "file": out.name, "bytes": out.stat().st_size, "sha256": sha256(out), "stored": "float16 (loaded as float32)",
        "export": res.description, "iterations": sum(int(r["iterations"]) for r in records),
        "finished": all(r["finished"] for r in records),
        "hardware": f"CPU only: {cpu}, 1 torch thread per queue, two queues sharing 2 cores (scripts/train_release.py)",
        "stages": [{k: v for k, v in r.items() if k != "checkpoint"} for r in records],
        "psnr": {},
    }


def ship_composite(c: Composite, exp_root: Path, *, partial: bool,
                   recorded: dict[str, dict[str, object]] | None = None,
                   shipped: dict[str, object] | None = None) -> dict[str, object] | None:
    """Export both parts of ``c`` (fused, deploy form) into one float16 ``luma.* / chroma.*`` file. A part whose
    last stage's experiment folder is gone (a new machine) but which ``shipped`` (``c``'s manifest entry) records
    with the same stages is kept from the shipped file, tensor for tensor."""
    from restore.archs.dncnn import OpponentDnCNN, opponent_part
    from restore.engine.cpu_paths import cpu_info
    from restore.export import export
    from restore.train.checkpoint import atomic_save
    from restore.weights import load_model

    recorded = recorded or {}
    parts: dict[str, list[dict[str, object]]] = {}
    as_shipped: dict[str, Path] = {}  # parts that are a shipped gray model unchanged (training-free)
    current = WEIGHTS / f"{c.name}.pth"
    kept: set[str] = set()  # parts taken unchanged from the shipped composite
    for part, stages in (("luma", c.luma), ("chroma", c.chroma)):
        gray = shipped_gray(stages)
        before = [r.get("stage") for r in (shipped or {}).get("stages", []) if r.get("part") == part]
        last = stage_record(stages[-1], exp_root)
        if last is None and gray is not None:
            recs = [recorded.get(s) for s in stages]
            as_shipped[part] = gray
        elif last is None and before == list(stages) and current.is_file():
            recs = [recorded.get(s) for s in stages]
            kept.add(part)
        else:
            recs = [stage_record(s, exp_root) or recorded.get(s) for s in stages[:-1]] + [last]
        if any(r is None for r in recs) or (not partial and not all(r["finished"] for r in recs)):
            return None
        parts[part] = recs  # type: ignore[assignment]
    out = WEIGHTS / f"{c.name}.pth"
    sd: dict[str, torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for part, recs in parts.items():
            if part in as_shipped:
                sub = torch.load(as_shipped[part], map_location="cpu", weights_only=True)
            elif part in kept:
                sub = opponent_part(torch.load(current, map_location="cpu", weights_only=True), part)
            else:
                export(recs[-1]["checkpoint"], Path(tmp) / f"{part}.pth", fuse=True, key=str(recs[-1]["weights"]))
                sub = torch.load(Path(tmp) / f"{part}.pth", map_location="cpu", weights_only=True)
            sd.update({f"{part}.{k}": v.half() if v.is_floating_point() else v for k, v in sub.items()})
    atomic_save(sd, out)
    model = load_model(out)
    assert isinstance(model, OpponentDnCNN)
    meta = model.meta
    return {
        "name": c.name, "task": c.task, "scale": c.scale, "sigma": c.sigma, "color": c.color, "default": c.default,
        "summary": c.summary, "family": meta.family, "variant": meta.variant, "params": meta.params,
        "file": out.name, "bytes": out.stat().st_size, "sha256": sha256(out), "stored": "float16 (loaded as float32)",
        "export": "OpponentDnCNN: " + ", ".join(
            f"{label} {stages[-1]}" + (f" (the shipped {as_shipped[part].stem} unchanged)" if part in as_shipped
                                       else " (fused, deploy form)")
            for part, label, stages in (("luma", "luminance", c.luma), ("chroma", "chrominance", c.chroma))),
        "iterations": sum(int(r["iterations"]) for recs in parts.values() for r in recs),
        "finished": all(r["finished"] for recs in parts.values() for r in recs),
        "hardware": f"CPU only: {cpu_info()[0]}, 1 torch thread per queue, two queues sharing 2 cores "
                    "(scripts/train_release.py)",
        "stages": [{**{k: v for k, v in r.items() if k != "checkpoint"}, "part": part}
                   for part, recs in parts.items() for r in recs],
        "psnr": {},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partial", action="store_true", help="also ship models whose last stage is still running")
    ap.add_argument("--root", type=Path, default=ROOT, help="where experiments/ is (default: project)")
    ap.add_argument("--only", nargs="+", choices=[s.name for s in SHIPS], help="ship just these")
    a = ap.parse_args(argv)
    old = {m["name"]: m for m in json.loads(MANIFEST.read_text())["models"]} if MANIFEST.is_file() else {}
    models = dict(old)
    recorded = {str(r["stage"]): r for m in old.values() for r in m.get("stages", [])}
    for ship in SHIPS:
        if a.only and ship.name not in a.only:
            continue
        entry = (ship_composite(ship, a.root, partial=a.partial, recorded=recorded, shipped=old.get(ship.name))
                 if isinstance(ship, Composite)
                 else ship_one(ship, a.root, partial=a.partial, recorded=recorded))
        if entry is None:
            print(f"{ship.name}: not trained yet (or unfinished; --partial ships it anyway)")
            continue
        prev = old.get(ship.name)
        if prev and prev.get("sha256") == entry["sha256"]:
            entry["psnr"] = prev.get("psnr", {})  # same file: keep its measured figures
        models[ship.name] = entry
        print(f"{ship.name}: {entry['file']} {entry['bytes']:,} bytes, {entry['iterations']} iterations"
              f"{'' if entry['finished'] else ' (unfinished)'}")
    for ship in SHIPS:  # entries not re-exported this run still follow the release plan's default and summary
        if ship.name in models:
            models[ship.name] |= {"default": ship.default, "summary": ship.summary}
    order = [s.name for s in SHIPS]
    for gone in [n for n in models if n not in order]:  # no longer in the release: drop entry and file
        (WEIGHTS / str(models.pop(gone)["file"])).unlink(missing_ok=True)
        print(f"{gone}: removed (not in this release)")
    WEIGHTS.mkdir(exist_ok=True)
    doc = {"about": "Weights trained by this project (scripts/train_release.py); never third-party weights. "
                    "Figures: scripts/make_results.py -> docs/results.md.",
           "models": sorted(models.values(), key=lambda m: order.index(m["name"]) if m["name"] in order else 99)}
    tmp = MANIFEST.with_suffix(".json.part")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(MANIFEST)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
