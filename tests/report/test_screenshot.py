"""The report page opened in a real browser (headless Chromium): the figures render.

Skipped when no Chromium is installed (CI installs it with apt; see ``.ci/run``).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.colors import rgb_to_hsv
from matplotlib.image import imread

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def screenshot(page, out, tmp_path, size=(1400, 6000)):
    """Render ``page`` with headless Chromium into ``out`` (PNG); returns the image ``[H, W, C]``."""
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={out}", f"--window-size={size[0]},{size[1]}",
        page.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    return imread(out)


def coloured_fraction(img: np.ndarray) -> float:
    """Share of pixels with a saturated colour: plots have them, text and page chrome do not."""
    hsv = rgb_to_hsv(img[..., :3])
    return float(((hsv[..., 1] > 0.35) & (hsv[..., 2] > 0.25)).mean())


def test_table_study_report_renders_its_figures(table_report, tmp_path):
    img = screenshot(table_report, tmp_path / "report.png", tmp_path)
    assert img.shape[:2] == (6000, 1400)
    # The embedded PNGs decode and paint: a page of text alone is under 0.5 % coloured.
    assert coloured_fraction(img) > 0.05
    # The figures run down the page (the first band is mostly the summary tables).
    bands = [coloured_fraction(img[i : i + 1500]) for i in (1500, 3000)]
    assert min(bands) > 0.01, bands
