"""scripts/sigma_bands.py without models or ../shared: the band read from a grid, and the table it writes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.scripts_module import load_script


@pytest.fixture(scope="module")
def sb():  # noqa: ANN201
    return load_script("sigma_bands")


def _rows(gains: dict[float, float], *, file: bool = False) -> list[dict]:
    return [{"sigma": s, "own": 30 + g, "blind": 30.0, "gain": g, "estimate": s + 0.5, "estimate_min": s,
             "estimate_max": s + 1, **({"file": True} if file else {})} for s, g in gains.items()]


def test_band_is_the_winning_run_around_the_level(sb) -> None:  # noqa: ANN001
    rows = _rows({10.5: -0.1, 12: 0.2, 13.5: 0.5, 15: 0.8, 16.5: 0.4, 18: -0.2, 19.5: 0.1})
    assert sb.band(rows, 15) == (12, 16.5)  # the later win at 19.5 is not joined across the loss at 18
    assert sb.band(_rows({15: -0.1, 16.5: 0.3}), 15) is None
    assert sb.band(_rows({12: 0.3}), 15) is None  # the level itself not on the grid


def test_table_lists_every_colour_and_the_shipped_bands(sb) -> None:  # noqa: ANN001
    from restore.weights import SIGMA_BANDS

    results = {c: {0: [{"sigma": 0, "estimate": 1.0, "estimate_min": 0.5, "estimate_max": 2.0}],
                   25: _rows({20: -0.1, 25: 0.6, 30: -0.3}) + _rows({25: 0.5}, file=True)} for c in ("rgb", "gray")}
    text = sb.table(results, [("a", np.zeros((8, 8, 3), np.uint8))], 8)
    assert "rgb: the clean crops read 1.0 (0.5-2.0)." in text and "| 25 (8-bit file) | 30.50 |" in text
    assert "gray, sigma 25:" in text and "wins from sigma 25 to 25" in text
    for color, bands in SIGMA_BANDS.items():
        assert f"{color}: " + ", ".join(f"{lo:g}-{hi:g} -> sigma {lv}" for lv, (lo, hi) in bands.items()) in text
