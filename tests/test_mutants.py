"""scripts/mutants.py stays applicable: every mutant's snippet occurs exactly once in the current source, and the
tests it names exist (the mutants themselves are run by the script, not here: ~2 min)."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import mutants  # noqa: E402


@pytest.mark.parametrize("m", mutants.MUTANTS, ids=[m.name for m in mutants.MUTANTS])
def test_mutant_applies_to_the_current_source(m: mutants.Mutant) -> None:
    assert mutants.stale_reason(m) is None, f"{m.name}: {mutants.stale_reason(m)}; update scripts/mutants.py"
    assert m.old != m.new and all((REPO / t).is_file() for t in m.tests)
    patched = (REPO / m.file).read_text().replace(m.old, m.new, 1)
    compile(patched, m.file, "exec")  # a mutant must be valid Python: it is killed by tests, not by a SyntaxError


def test_mutant_names_are_unique() -> None:
    names = [m.name for m in mutants.MUTANTS]
    assert len(names) == len(set(names))
