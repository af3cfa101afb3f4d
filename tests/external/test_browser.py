"""A real browser opens the HTML report: Debian's Chromium, headless, takes a screenshot.

The screenshot must show a page (not blank, not one colour, long enough to hold the report) and
Chromium must log no console message about the page (the report runs no script, so any
"Uncaught ..." error or Content-Security-Policy violation means something is wrong). CI installs
Chromium (.ci/run); without it the test skips with a reason naming Chromium and how to install it.

Set FAIRAUDIT_UPDATE_SCREENSHOT=1 to also rewrite examples/report_screenshot.png (the top 1600 px
of the Quickstart report at 1280 px width).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from PIL import Image

import fairaudit

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "synthetic" / "eval_log.csv.gz"
EMBEDDINGS = ROOT / "examples" / "synthetic" / "eval_log.embeddings.parquet"
CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 4000


def screenshot(page: Path, out: Path, profile: Path, height: int = HEIGHT) -> list[str]:
    """Load ``page`` in headless Chromium, save a screenshot, return the console lines it logged."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"needs Chromium at {CHROMIUM}: install it with `apt-get update && apt-get install -y "
            "--no-install-recommends chromium` (CI's .ci/run does this, so CI runs this test)"
        )
    args = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={out}",
        f"--window-size={WIDTH},{height}",
        "--enable-logging=stderr",
        "--v=0",
        page.resolve().as_uri(),
    ]
    run = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and out.exists(), f"chromium failed ({run.returncode}):\n{run.stderr[-3000:]}"
    return [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    result = fairaudit.audit(EXAMPLE, embeddings=EMBEDDINGS, by=["accent"], bootstrap=200, permutations=50, seed=0)
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(result.to_html(), encoding="utf-8")
    return path


def test_chromium_renders_the_report_without_console_errors(report, tmp_path, monkeypatch):
    console = screenshot(report, tmp_path / "shot.png", tmp_path / "profile")
    assert console == [], "console messages while loading the report:\n" + "\n".join(console)
    image = Image.open(tmp_path / "shot.png").convert("L")
    assert image.size == (WIDTH, HEIGHT)
    pixels = image.load()
    histogram = image.histogram()
    assert max(histogram) < image.width * image.height, "the screenshot is a single colour"
    ink = sum(histogram[:235]) / (image.width * image.height)
    assert ink > 0.04, f"only {ink:.1%} of the screenshot is not white"
    # The report is long: it still has content near the bottom of a 4000 px window.
    lowest = max(y for y in range(0, HEIGHT, 10) if any(pixels[x, y] < 200 for x in range(0, WIDTH, 4)))
    assert lowest > 3000, f"content ends at y={lowest}"
    # The top of the page holds the heading and the summary (not an error page).
    top = image.crop((0, 0, WIDTH, 800))
    assert sum(top.histogram()[:200]) / (WIDTH * 800) > 0.02
    if os.environ.get("FAIRAUDIT_UPDATE_SCREENSHOT"):
        monkeypatch.chdir(ROOT)  # the report names the log as the Quickstart does: a relative path
        update_example_screenshot(tmp_path)


def update_example_screenshot(tmp_path: Path) -> None:
    """examples/report_screenshot.png: the Quickstart report (default settings), top 1600 px."""
    result = fairaudit.audit(
        str(EXAMPLE.relative_to(ROOT)), embeddings=str(EMBEDDINGS.relative_to(ROOT)), by=["accent"]
    )
    page = tmp_path / "quickstart.html"
    page.write_text(result.to_html(), encoding="utf-8")
    out = tmp_path / "quickstart.png"
    assert screenshot(page, out, tmp_path / "profile-example", height=1600) == []
    image = (
        Image.open(out).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    )
    image.save(ROOT / "examples" / "report_screenshot.png", optimize=True)


def test_console_errors_are_detected(tmp_path):
    """The check above can fail: a page with a failing script logs an 'Uncaught' console line."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><h1>broken</h1><script>undefinedFunction();</script></body></html>")
    console = screenshot(page, tmp_path / "broken.png", tmp_path / "profile", height=300)
    assert any("Uncaught" in line for line in console), console
