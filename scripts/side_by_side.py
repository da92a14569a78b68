"""Side by side: every reference checkpoint through the official code and through ``restore``.

For each checkpoint in ``<shared>/weights`` this builds the network with the *official* architecture code
(read at run time from a copy of the official repository that you fetched yourself), loads the checkpoint the
way the official test script does, and compares its output with ``restore.weights.load_model(path)`` on the
same seeded random input (1 x C x 37 x 41, rounded up to ``meta.size_multiple``, times ``meta.input_range``).
No official code is part of this project: the needed files are copied into a temporary directory outside the
repository, imported from there, and deleted at exit.

    python scripts/side_by_side.py [--imdn DIR] [--cfsr DIR] [--dscf DIR] [--ntire2024 DIR] [--ntire2025 DIR]
        [--kair DIR] [--saoyan DIR] [--shared ../shared] [--out docs/side_by_side.md] [--threads N]

Each DIR is a checkout of the repository or a bare git directory (files are then read from ``HEAD`` with
``git --git-dir=DIR show``); a directory holding a bare clone in ``repo/`` is accepted too. The repositories:
Zheng222/IMDN, Aitical/CFSR, Yaozzz666/DSCF-SR, Amazingren/NTIRE2024_ESR, Amazingren/NTIRE2025_ESR, cszn/KAIR,
SaoYan/DnCNN-PyTorch. Rows whose source is not given say so. ESPCN (TensorFlow graphs) is compared with OpenCV's
dnn_superres by ``scripts/conformance.py`` instead; the NTIRE baselines (EFDN, RLFN) are not families of this project.

Run-time patches (official code is otherwise unchanged): every official constructor runs with ``.cuda()`` as a
no-op, under ``torch.no_grad()`` and with stdout captured (SPAN-family constructors run a dummy forward on CUDA;
CFSR prints while merging); checkpoints are read with ``map_location="cpu"``; ``IMDN_RTE`` gets the name
``IMDModule_Large`` (its module uses it without the ``B.`` prefix); CFSR's ``basicsr.utils.registry`` import is
served by a stub registry and its constructor keyword arguments are read from the official test options file.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
import yaml
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from restore.weights import load_model  # noqa: E402

SOURCES = {
    "imdn": "Zheng222/IMDN", "cfsr": "Aitical/CFSR", "dscf": "Yaozzz666/DSCF-SR",
    "ntire2024": "Amazingren/NTIRE2024_ESR", "ntire2025": "Amazingren/NTIRE2025_ESR",
    "kair": "cszn/KAIR", "saoyan": "SaoYan/DnCNN-PyTorch",
}
SKIPPED = {"espcn/": "skipped: ESPCN is compared with OpenCV dnn_superres (scripts/conformance.py)",
           "team00_": "skipped: NTIRE baseline (EFDN/RLFN), not a family of this project"}
Build = Callable[[ModuleType, Path], nn.Module]


@dataclass(frozen=True)
class Case:
    ckpt: str  # relative to <shared>/weights
    source: str  # key of SOURCES
    files: tuple[str, ...]  # files to copy out of the official repo; the first is the arch module
    cls: str
    build: Build
    param_key: str | None = None  # checkpoint[param_key] as the official test does
    strict: bool = True  # strictness of the official test's load_state_dict
    strip_module: bool = False  # IMDN utils.load_state_dict: keys containing 'module' lose 7 chars
    data_parallel: bool = False  # SaoYan test loads into nn.DataParallel(net)
    noise_net: bool = False  # the net returns the noise; the official test restores x - net(x)
    patch: str = ""


def _imdn(name: str, **kw: int) -> Build:
    def build(mod: ModuleType, root: Path) -> nn.Module:
        vars(mod).setdefault("IMDModule_Large", mod.B.IMDModule_Large)  # IMDN_RTE's NameError as published
        return getattr(mod, name)(**kw)
    return build


def _cfsr(scale: int) -> Build:
    def build(mod: ModuleType, root: Path) -> nn.Module:
        opts = yaml.safe_load((root / f"options/test_CFSR_SRx{scale}.yml").read_text())["network_g"]
        accepted = inspect.signature(mod.CFSR).parameters
        return mod.CFSR(**{k: v for k, v in opts.items() if k in accepted})  # drops `type`, `small_kernel`
    return build


def _span(name: str, *args: int, **kw: object) -> Build:
    return lambda mod, root: getattr(mod, name)(*args, **kw)


IMDN_FILES = ("model/architecture.py", "model/block.py")
CUDA_PATCH = "`.cuda()` no-op in constructor"
CASES = [
    *(Case(f"imdn/IMDN_x{s}.pth", "imdn", IMDN_FILES, "IMDN", _imdn("IMDN", upscale=s), strip_module=True)
      for s in (2, 3, 4)),
    Case("imdn/IMDN_AS.pth", "imdn", IMDN_FILES, "IMDN_AS", _imdn("IMDN_AS"), strip_module=True),
    Case("imdn/model_RTC.pth", "imdn", IMDN_FILES, "IMDN_RTC", _imdn("IMDN_RTC"), strip_module=True),
    Case("imdn/model_RTE.pth", "imdn", IMDN_FILES, "IMDN_RTE", _imdn("IMDN_RTE"), strip_module=True,
         patch="inject `IMDModule_Large`"),
    *(Case(f"cfsr/CFSR_x{s}.pth", "cfsr", ("basicsr/archs/cfsr_arch.py", f"options/test_CFSR_SRx{s}.yml"), "CFSR",
           _cfsr(s), param_key="params", patch="stub `basicsr.utils.registry`; yml `small_kernel` dropped")
      for s in (2, 3, 4)),
    Case("dscf/team23_DSCF.pth", "dscf", ("models/team23_DSCF.py",), "DSCF",
         _span("DSCF", 3, 3, feature_channels=26, upscale=4), strict=False, patch=CUDA_PATCH),
    Case("ntire_esr/2024/team38_span_ch28_slim.pth", "ntire2024", ("models/team38_SPAN.py",), "SPAN30",
         _span("SPAN30", 3, 3, upscale=4, feature_channels=28), strict=False, patch=CUDA_PATCH),
    Case("ntire_esr/2024/team39_spantiny_ch26_slim.pth", "ntire2024", ("models/team39_SPANtiny.py",), "SPAN30",
         _span("SPAN30", 3, 3, upscale=4, feature_channels=26), strict=False, patch=CUDA_PATCH),
    Case("ntire_esr/2025/team24_spanf.pth", "ntire2025", ("models/team24_SPANF.py",), "SPANF",
         _span("SPANF", 3, 3, upscale=4, feature_channels=32), patch=CUDA_PATCH),
    Case("ntire_esr/2025/team36_espan.pth", "ntire2025", ("models/team36_espan.py",), "ESPAN",
         _span("ESPAN", num_in_ch=3, num_out_ch=3, feature_channels=32, mid_channels=32, upscale=4, bias=True,
               teacher_feature_channels=32, teacher_extra_depth=1, use_fast_op=False), patch=CUDA_PATCH),
    Case("ntire_esr/2025/team46_span.pth", "ntire2025", ("models/team46_SPAN.py",), "SPAN",
         _span("SPAN", 3, 3, upscale=4, feature_channels=28), param_key="params_ema"),
    Case("dncnn/kair/dncnn_25.pth", "kair", ("models/network_dncnn.py", "models/basicblock.py"), "DnCNN",
         _span("DnCNN", in_nc=1, out_nc=1, nc=64, nb=17, act_mode="R")),
    *(Case(f"dncnn/saoyan/{n}.pth", "saoyan", ("models.py",), "DnCNN",
           _span("DnCNN", channels=1, num_of_layers=20 if n == "DnCNN-B" else 17), data_parallel=True,
           noise_net=True) for n in ("DnCNN-S-15", "DnCNN-S-25", "DnCNN-S-50", "DnCNN-B")),
]


class Source:
    """An official repository given as a checkout or a bare git directory."""

    def __init__(self, path: Path) -> None:
        bare = next((p for p in (path, path / "repo") if (p / "HEAD").is_file() and (p / "objects").is_dir()), None)
        self.path, self.git_dir = path, bare

    def _git(self, *args: str) -> bytes:
        where = ["--git-dir", str(self.git_dir)] if self.git_dir else ["-C", str(self.path)]
        return subprocess.run(["git", *where, *args], check=True, capture_output=True).stdout

    def read(self, rel: str) -> bytes:
        return self._git("show", f"HEAD:{rel}") if self.git_dir else (self.path / rel).read_bytes()

    def commit(self) -> str:
        try:
            return self._git("rev-parse", "HEAD").decode().strip()[:12]
        except (subprocess.CalledProcessError, FileNotFoundError):
            return "working tree"


class _Registry:
    def register(self, obj: object | None = None) -> object:
        return obj if obj is not None else (lambda o: o)


def _stubs(root: Path) -> dict[str, ModuleType]:
    """Just enough of ``basicsr`` for ``from basicsr.utils.registry import ARCH_REGISTRY``."""
    pkg, utils, registry = ModuleType("basicsr"), ModuleType("basicsr.utils"), ModuleType("basicsr.utils.registry")
    pkg.__path__, utils.__path__ = [str(root / "basicsr")], []
    registry.ARCH_REGISTRY = _Registry()  # type: ignore[attr-defined]
    return {"basicsr": pkg, "basicsr.utils": utils, "basicsr.utils.registry": registry}


def _purge(top: str) -> None:
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def import_official(root: Path, rel: str) -> ModuleType:
    """Import ``rel`` (a .py path under ``root``) without leaving ``models``/``model``/``basicsr`` behind."""
    dotted = rel.removesuffix(".py").replace("/", ".")
    top = dotted.split(".")[0]
    _purge(top)
    if top == "basicsr":
        sys.modules.update(_stubs(root))
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        return importlib.import_module(dotted)
    finally:
        sys.path.remove(str(root))
        _purge(top)


@contextlib.contextmanager
def cpu_construction() -> Iterator[None]:
    """``.cuda()`` as identity, no autograd, stdout captured: official constructors then run on CPU."""
    saved = nn.Module.cuda, torch.Tensor.cuda
    nn.Module.cuda = lambda self, device=None: self  # type: ignore[method-assign,assignment]
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign,assignment]
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        nn.Module.cuda, torch.Tensor.cuda = saved  # type: ignore[method-assign]


def build_official(case: Case, mod: ModuleType, root: Path, ckpt: Path) -> tuple[nn.Module, str]:
    """The official network (eval mode) with ``ckpt`` loaded as the official test loads it, and how it loaded."""
    with cpu_construction():
        net = case.build(mod, root)
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    sd = raw[case.param_key] if case.param_key else raw
    if case.strip_module:
        sd = {(k[7:] if "module" in k else k): v for k, v in sd.items()}
    target = nn.DataParallel(net) if case.data_parallel else net
    res = target.load_state_dict(sd, strict=case.strict)
    keys = f" ({len(res.missing_keys)} missing, {len(res.unexpected_keys)} unexpected keys)"
    load = "strict" if case.strict else "strict=False" + keys
    return target.eval(), load


def official_module(case: Case, src: Source, root: Path) -> ModuleType:
    """Copy ``case.files`` out of ``src`` into ``root`` (outside the project) and import the arch module."""
    for f in case.files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(src.read(f))
    return import_official(root, case.files[0])


def compare(case: Case, mod: ModuleType, root: Path, ckpt: Path) -> dict[str, str]:
    target, load = build_official(case, mod, root, ckpt)
    ours = load_model(ckpt)
    meta = ours.meta
    m = meta.size_multiple
    h, w = -(-37 // m) * m, -(-41 // m) * m
    x = torch.rand(1, meta.in_channels, h, w, generator=torch.Generator().manual_seed(0)) * meta.input_range
    with torch.no_grad():
        a = ours(x.clone())
        b = x - target(x.clone()) if case.noise_net else target(x.clone())
    if a.shape != b.shape:
        return {"load": load, "diff": "shape mismatch", "shape": f"{tuple(a.shape)} vs {tuple(b.shape)}"}
    err = (a - b).abs().max().item()
    equal = "yes" if torch.equal(a, b) else "no" if err <= 1e-5 * meta.input_range else "no (over 1e-5)"
    return {"load": load, "diff": f"{err:.3g}", "equal": equal, "shape": f"{tuple(x.shape)} → {tuple(a.shape)}"}


KEYS = ("ckpt", "repo", "cls", "load", "diff", "equal", "shape", "patch")


def run(sources: dict[str, Path | None], weights: Path, tmp: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    extracted: dict[str, tuple[Source, Path]] = {}
    by_ckpt = {c.ckpt: c for c in CASES}
    files = sorted(p.relative_to(weights).as_posix() for p in weights.rglob("*") if p.suffix in (".pth", ".pb"))
    for rel in files:
        row = dict.fromkeys(KEYS, "") | {"ckpt": rel}
        rows.append(row)
        case = by_ckpt.get(rel)
        given = sources.get(case.source) if case else None
        if case is None:
            row["diff"] = next((v for k, v in SKIPPED.items() if k in rel), "no official comparison defined")
        else:
            row.update(repo=SOURCES[case.source], cls=f"`{case.files[0]}:{case.cls}`", patch=case.patch)
        if case is not None and given is None:
            row["diff"] = "source not given"
        elif case is not None and given is not None:
            try:
                if case.source not in extracted:
                    extracted[case.source] = (Source(given), tmp / case.source)
                src, root = extracted[case.source]
                row["repo"] += f"@{src.commit()}"
                row.update(compare(case, official_module(case, src, root), root, weights / rel))
            except Exception as e:  # report and go on with the other checkpoints
                msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
                row["diff"] = f"error: {type(e).__name__}: {msg}"
        print(f"{rel:46s} {row['repo']:38s} {row['cls']:38s} {row['load']:8s} {row['diff']:>8s} {row['shape']}")
    return rows


def markdown(rows: list[dict[str, str]], command: str) -> str:
    head = ["checkpoint", "official repo@commit", "official class", "official load", "max abs diff",
            "bit-identical", "input → output shape", "run-time patch"]
    lines = [
        "# Side by side with the official code",
        "",
        "Written by `scripts/side_by_side.py` (see its docstring); do not edit by hand. Command:",
        "",
        f"    {command}",
        "",
        "Each row: the official architecture built as the official test script builds it, the checkpoint loaded",
        "as that script loads it, versus `restore.weights.load_model(path)`; both in eval mode, float32, CPU, on",
        "`torch.rand` (seed 0) of 1 x C x 37 x 41 (rounded up to the model's size multiple) times its input",
        "range. For SaoYan DnCNN the official net returns the noise; its test restores `x - net(x)`, compared here",
        "(without the test's final clamp). Every official constructor runs with `.cuda()` as a no-op, under",
        "`torch.no_grad()`, stdout captured; checkpoints are read with `map_location='cpu'`.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(r[k] for k in KEYS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key, repo in SOURCES.items():
        ap.add_argument(f"--{key}", type=Path, help=f"checkout or bare git dir of {repo}")
    ap.add_argument("--shared", type=Path, default=REPO / "../shared")
    ap.add_argument("--out", type=Path, default=REPO / "docs/side_by_side.md")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = args.shared.resolve() / "weights"
    if not weights.is_dir():
        ap.error(f"{weights}: no such directory")
    with tempfile.TemporaryDirectory(prefix="side_by_side_") as tmp:
        if Path(tmp).resolve().is_relative_to(REPO):
            ap.error(f"temporary directory {tmp} is inside the project; set TMPDIR elsewhere")
        rows = run({k: getattr(args, k) for k in SOURCES}, weights, Path(tmp))
    command = "python scripts/side_by_side.py " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(rows, command.strip()))
    print(f"wrote {args.out}")
    bad = [r["ckpt"] for r in rows if r["diff"].startswith(("error", "shape")) or r["equal"] == "no (over 1e-5)"]
    if bad:
        print("FAILED:", ", ".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
