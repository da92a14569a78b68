"""Packaging contract: light import, README <-> .ci/run, CLI errors without tracebacks."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_import_is_light():
    code = ("import sys, restore; heavy = [m for m in ('torch', 'gradio', 'basicsr', 'lpips', 'av', 'cv2') "
            "if m in sys.modules]; print(','.join(heavy))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = r.stdout.strip()
    assert out == "", f"import restore pulled in: {out}"


def test_readme_has_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    setup = [b.strip() for b in blocks if "pip install" in b]
    assert len(setup) == 2, "README must have exactly two set-up commands (main job, tests)"
    test_cmd = next(b for b in setup if "pytest" in b)
    assert test_cmd in (REPO / ".ci" / "run").read_text(), ".ci/run must run README's test command verbatim"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "restore.cli", *args], capture_output=True, text=True)


def test_cli_bad_weights_is_one_line_error(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"garbage")
    r = _cli("info", str(junk))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "not a readable PyTorch checkpoint" in r.stderr
    r = _cli("info", str(tmp_path / "nope.pth"))
    assert r.returncode == 2 and "no such weights file" in r.stderr


def test_help_of_every_verb_imports_no_torch():
    """``restore --help`` and ``restore VERB --help`` build the parser only: no torch, OpenCV, Gradio, BasicSR
    (what makes them start in a fraction of a second)."""
    from restore.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    code = ("import sys\nfrom restore.cli import main\n"
            "for argv in [['--help']] + [[v, '--help'] for v in sys.argv[1:]]:\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'cv2', 'gradio', 'basicsr', 'onnxruntime', 'av') if m in sys.modules]\n"
            "print('HEAVY', ','.join(heavy))")
    r = subprocess.run([sys.executable, "-c", code, *sub.choices], capture_output=True, text=True, check=True)
    assert r.stdout.strip().splitlines()[-1] == "HEAVY", r.stdout[-500:]
