"""restore.engine.allocator.keep_freed_memory: a large block freed and allocated again costs no new page
faults once it is on (glibc), and ``RESTORE_MALLOC=default`` leaves malloc alone. Each case runs in a fresh
interpreter: the setting is process-wide."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, resource, sys
import numpy as np
from restore.engine.allocator import keep_freed_memory

on = keep_freed_memory()
faults = []
for _ in range(4):  # 64 MiB, written in full, freed: the next round's block lands on the same pages or new ones
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(64 << 20, dtype=np.uint8)
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"on": on, "again": keep_freed_memory(), "faults": faults}))
"""

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                           reason="glibc's malloc only")


def _probe(env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout)


@glibc
def test_freed_block_is_reused_without_page_faults() -> None:
    r = _probe({"RESTORE_MALLOC": ""})
    assert r["on"] is True and r["again"] is True
    first = r["faults"][0]  # new memory: one fault per page (fewer where the kernel maps huge pages)
    assert first >= 16 and max(r["faults"][1:]) <= first // 10, r["faults"]  # later rounds reuse it


@glibc
def test_opt_out_keeps_glibc_default() -> None:
    r = _probe({"RESTORE_MALLOC": "default"})
    assert r["on"] is False
    first = r["faults"][0]
    assert first >= 16 and min(r["faults"][1:]) >= first // 2, r["faults"]  # default: mmap / munmap every round


def test_restorer_on_cpu_turns_it_on() -> None:
    from restore.archs.espcn import ESPCN
    from restore.engine import allocator
    from restore.engine.restorer import Restorer

    Restorer(ESPCN(scale=2), device="cpu")
    assert allocator._state is not None  # decided (True on glibc unless RESTORE_MALLOC opts out)
