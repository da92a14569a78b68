from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from restore.engine.cpu_paths import bf16_convolutions

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = REPO / "tests" / "fixtures"
"""Small frozen test vectors (tests/fixtures/README.md says how each was made); never needs ../shared."""


# bf16 on the CPU: oneDNN needs AVX512-BW/VL/DQ or AVX-NE-CONVERT (an AVX2-only CI box has neither)
needs_bf16_cpu = pytest.mark.skipif(not bf16_convolutions(), reason="this CPU runs no bfloat16 convolutions "
                                    "(oneDNN needs AVX512-BW/VL/DQ or AVX-NE-CONVERT)")


def shared_path(*parts: str) -> Path:
    """Path inside ../shared; skip the calling test with a clear reason when absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"../shared fixture not present: {p}")
    return p


def restore_exe() -> str:
    """The installed ``restore`` console script (beside this Python first); skip when not installed."""
    exe = Path(sys.executable).parent / "restore"
    found = str(exe) if exe.exists() else shutil.which("restore")
    if found is None:
        pytest.skip("the restore console script is not installed (pip install -e .)")
    return found


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _tuning_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets an empty tuning cache (restore.engine.path_cache): no choice measured by another test, or
    by the user's runs, decides a test's path. Subprocesses inherit it through the environment."""
    monkeypatch.setenv("RESTORE_CACHE_DIR", str(tmp_path_factory.mktemp("restore-cache")))


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """Tests run tiny CPU forwards: one intra-op thread is fastest (two oversubscribe on a 2-core CI box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
