"""The reports render in headless Chromium with no console output (errors included).

Skipped when no Chromium binary is installed (CI: ``apt-get install -y chromium``).
"""

import re
import shutil
import subprocess

import numpy as np
import pytest

from pipeline.qa import write_run_report

from .conftest import Scaled, handle

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0",
         "--window-size=1366,900"]


def _chromium(tmp_path, page, *args):
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    return out


def _render(tmp_path, page):
    """Screenshot ``page``; returns (png path, console lines, DOM after scripts ran)."""
    shot = tmp_path / f"{page.parent.name}-{page.stem}.png"
    out = _chromium(tmp_path, page, f"--screenshot={shot}")
    console = [ln for ln in out.stderr.splitlines() if re.search(r":CONSOLE[:(]|Uncaught", ln)]
    dom = _chromium(tmp_path, page, "--dump-dom").stdout
    return shot, console, dom


def _ink(png):
    """Fraction of non-white pixels of a screenshot (a blank page is ~0)."""
    image = pytest.importorskip("PIL.Image")
    a = np.asarray(image.open(png).convert("RGB")).astype(int)
    return float((a.sum(axis=2) < 740).mean())


def test_console_check_catches_errors(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body>x<script>notAFunction();</script></body></html>")
    _, console, _ = _render(tmp_path, page)
    assert any("notAFunction" in ln for ln in console)


def test_scene_and_run_reports_render(run_qa, tmp_path):
    rng = np.random.default_rng(7)
    res, qa = run_qa(rng.random((3, 160, 200)).astype(np.float32), handle(Scaled(2.0)))
    html, _ = write_run_report(res.scene_dir.parent, update_history=False)
    for page in (qa.html_path, html):
        shot, console, dom = _render(tmp_path, page)
        assert shot.is_file() and shot.stat().st_size > 10_000, page
        assert console == [], console
        assert _ink(shot) > 0.02, page
    assert 'data-ready="1"' in dom  # the sort script ran to its end
    assert 'class="sortable"' in dom
