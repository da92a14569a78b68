"""Mutation check: each realistic bug below must make its tests fail on a machine *without* ../shared.

Each mutant is a small textual patch (file, old snippet, new snippet). The script copies the project (restore/,
tests/, scripts/, options/, pyproject.toml, ...) into a temporary folder whose parent has no ``shared`` folder
(tests find ../shared as ``REPO.parent / "shared"``, tests/conftest.py, so every ../shared-gated test skips
there), checks that the copy's tests pass unmutated (baseline), then applies one mutant at a time to the copy,
runs the mutant's test files there and prints a table. The real tree is only read. Exit status 0 when every
mutant is killed; 1 when one survives, its snippet no longer matches the source (stale), or the baseline fails.

    .venv/bin/python scripts/mutants.py                 # all mutants (~2 min on 2 busy cores)
    .venv/bin/python scripts/mutants.py --list          # names and what each breaks
    .venv/bin/python scripts/mutants.py --only dncnn_fuse_no_eps --only resolve_takes_first
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ("restore", "tests", "scripts", "options", "docs", "web", "pyproject.toml", "README.md")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.part*")
TIMEOUT_S = 1200


@dataclass(frozen=True)
class Mutant:
    """One bug: replace ``old`` (which must occur exactly once in ``file``) by ``new``; ``tests`` must fail."""

    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


IMRESIZE = "restore/metrics/imresize.py"
PSNR = "restore/metrics/psnr_ssim.py"
FILES = "restore/io/files.py"
WEIGHTS = "restore/weights.py"
T_IMRESIZE = ("tests/metrics/test_imresize.py",)
T_PSNR = ("tests/metrics/test_psnr_ssim.py",)
T_FILES = ("tests/io/test_files.py",)
T_WEIGHTS = ("tests/test_weights.py",)

MUTANTS: tuple[Mutant, ...] = (
    Mutant("imresize_reflect", "imresize mirrors the border without repeating the edge sample (reflect)", IMRESIZE,
           "        period = 2 * in_len\n        m = np.mod(i0, period)\n"
           "        src = np.where(m < in_len, m, period - 1 - m)",
           "        period = 2 * in_len - 2\n        m = np.mod(i0, period)\n"
           "        src = np.where(m < in_len, m, period - m)", T_IMRESIZE),
    Mutant("imresize_rows_first", "imresize always resizes rows first (MATLAB: the smaller scale first)", IMRESIZE,
           "    return (0, 1) if sc[0] <= sc[1] else (1, 0)", "    return (0, 1)", T_IMRESIZE),
    Mutant("round_y_ignored", "calculate_psnr / calculate_ssim drop round_y (unrounded Y always)", PSNR,
           "        a = to_y_channel(a, channel_order, round_y)\n        b = to_y_channel(b, channel_order, round_y)",
           "        a = to_y_channel(a, channel_order)\n        b = to_y_channel(b, channel_order)", T_PSNR),
    Mutant("to_y_round_y_dropped", "to_y_channel ignores round_y=True", PSNR,
           "    if round_y:\n        u8 = ", "    if False:\n        u8 = ", T_PSNR),
    Mutant("ycbcr_floor", "uint8 rgb2ycbcr truncates (floor(x)) instead of rounding (floor(x + .5))", PSNR,
           "        r = np.floor(out + 0.5)", "        r = np.floor(out)", T_PSNR),
    Mutant("dncnn_fuse_no_eps", "DnCNN.fuse folds BatchNorm with 1/sqrt(var), without eps", "restore/archs/dncnn.py",
           "bn.weight / torch.sqrt(bn.running_var + bn.eps)", "bn.weight / torch.sqrt(bn.running_var)",
           ("tests/archs/test_dncnn.py",)),
    Mutant("publish_no_fsync", "publish renames the temporary file without fsync'ing it first", FILES,
           "        fd = os.open(tmp, os.O_RDONLY)\n        try:\n            os.fsync(fd)\n        finally:\n"
           "            os.close(fd)\n", "", T_FILES),
    Mutant("publish_tmp_in_system_temp", "publishing puts its temporary file in the system temp folder", FILES,
           'suffix=f".part{p.suffix}", dir=p.parent)', 'suffix=f".part{p.suffix}")', T_FILES),
    Mutant("publish_fallback_overwrites", "without hard links, overwrite=False replaces an existing file", FILES,
           "                if os.path.lexists(final):\n"
           '                    raise FileExistsError(17, "output exists", str(final)) from None\n', "", T_FILES),
    Mutant("resolve_takes_first", "resolve() takes the first of two matching families instead of refusing",
           WEIGHTS, "    if len(found) == 1:\n        det = found[0]", "    if found:\n        det = found[0]",
           T_WEIGHTS),
    Mutant("unwrap_any_tensor", "unwrap_state_dict accepts a dict with any tensor (non-tensor values kept)",
           WEIGHTS, "all(isinstance(v, torch.Tensor) for v in obj.values())",
           "any(isinstance(v, torch.Tensor) for v in obj.values())", T_WEIGHTS),
    Mutant("unwrap_unknown_wrapper", "unwrap_state_dict falls back to a wrapper under any other key", WEIGHTS,
           "k in obj and isinstance(obj[k], Mapping)), None)",
           "k in obj and isinstance(obj[k], Mapping)), None) or next(\n"
           "                (v for v in obj.values() if isinstance(v, Mapping)), None)", T_WEIGHTS),
)


def stale_reason(m: Mutant, root: Path = ROOT) -> str | None:
    """Why ``m`` cannot be applied to the tree at ``root`` (its snippet missing or not unique); None when it can."""
    path = root / m.file
    if not path.is_file():
        return f"{m.file} not found"
    n = path.read_text().count(m.old)
    return None if n == 1 else f"snippet found {n} times in {m.file} (expected once)"


def make_copy(dest: Path) -> Path:
    """Copy the project's code and tests to ``dest/repo`` (``dest`` has no ``shared`` folder); returns the copy."""
    repo = dest / "repo"
    repo.mkdir(parents=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=IGNORE)
        elif src.is_file():
            shutil.copy2(src, repo / name)
    return repo


def env_for(repo: Path) -> dict[str, str]:
    """The copy first on the import path, one thread, no bytecode written (a restored file must be re-read)."""
    env = dict(os.environ)
    env.update(PYTHONPATH=str(repo), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
    return env


def check_isolation(repo: Path) -> None:
    """The copy's ``restore`` is the one imported there, and its tests see no ../shared."""
    code = "import restore, tests.conftest as c; print(restore.__file__); print(c.SHARED.exists())"
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env_for(repo), capture_output=True, text=True,
                         check=True).stdout.split()
    if not Path(out[0]).resolve().is_relative_to(repo.resolve()) or out[1] != "False":
        sys.exit(f"mutants: the copy is not isolated (restore from {out[0]}, ../shared visible: {out[1]})")


def run_tests(repo: Path, tests: tuple[str, ...], *, stop_first: bool) -> tuple[int, str, float]:
    """pytest on ``tests`` in the copy: (exit status, first failing test or error line, seconds)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *(["-x"] if stop_first else []),
           *tests]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=repo, env=env_for(repo), capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {TIMEOUT_S} s", time.perf_counter() - t0
    out = r.stdout + r.stderr
    failed = re.search(r"^FAILED (\S+)", out, re.M)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return r.returncode, (failed.group(1) if failed else last), time.perf_counter() - t0


def verdict(rc: int) -> str:
    """pytest's exit status as a mutant outcome: 1 (tests failed) kills, 0 survives, anything else is an error."""
    return {0: "SURVIVED", 1: "killed"}.get(rc, f"error (pytest exit {rc})")


def table(rows: list[tuple[str, str, str, str]]) -> str:
    """Markdown table: mutant | tests run | killed? | evidence."""
    lines = ["| mutant | tests run | killed? | evidence |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--only", action="append", metavar="NAME", help="run this mutant only (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    a = ap.parse_args(argv)
    if a.list:
        for m in MUTANTS:
            print(f"{m.name:28} {m.file:30} {m.what}")
        return 0
    known = {m.name for m in MUTANTS}
    unknown = sorted(set(a.only or ()) - known)
    if unknown:
        ap.error(f"unknown mutant(s) {', '.join(unknown)}; see --list")
    chosen = [m for m in MUTANTS if not a.only or m.name in a.only]
    tmp = Path(tempfile.mkdtemp(prefix="restore_mutants_"))
    rows: list[tuple[str, str, str, str]] = []
    ok = True
    try:
        repo = make_copy(tmp)
        check_isolation(repo)
        suites = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        rc, evidence, secs = run_tests(repo, suites, stop_first=False)
        rows.append(("(none: baseline)", ", ".join(suites), "passes" if rc == 0 else f"FAILS (exit {rc})",
                     f"{evidence} ({secs:.0f} s)"))
        ok = rc == 0
        for m in chosen:
            reason = stale_reason(m, repo)
            if reason is not None:
                rows.append((m.name, ", ".join(m.tests), "STALE", reason))
                ok = False
                continue
            path = repo / m.file
            original = path.read_text()
            path.write_text(original.replace(m.old, m.new, 1))
            try:
                rc, evidence, secs = run_tests(repo, m.tests, stop_first=True)
            finally:
                path.write_text(original)
            rows.append((m.name, ", ".join(m.tests), verdict(rc), f"{evidence} ({secs:.0f} s)"))
            ok = ok and rc == 1
            print(f"{m.name}: {verdict(rc)}", file=sys.stderr, flush=True)
    finally:
        if a.keep:
            print(f"copy kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(table(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
