"""Every report page renders in headless Chromium with no console output (errors included).

The pages: a scene's qa.html, a volume's qa.html, one volume of a 4D series (qa_t1.html) and
the run reports of both (with a failed scene, a QA fail and a warning). Skipped when no
Chromium binary is installed (CI: ``apt-get install -y chromium``). Set
``SEGPIPE_SCREENSHOTS=DIR`` to keep the screenshots there for a look.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.qa import QAThresholds, SceneEntry, write_run_report, write_scene_error
from pipeline.options import RunOptions
from pipeline.spec import ModelSpec, Normalization

from ..conftest import Handle
from .conftest import Scaled, handle, smooth_field

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0"]


def _chromium(tmp_path, page, *args):
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    return out


def _render(tmp_path, page, name, height=2600):
    """Screenshot ``page``; returns (png path, console lines, DOM after scripts ran)."""
    shot = tmp_path / f"{name}.png"
    out = _chromium(tmp_path, page, f"--window-size=1366,{height}", f"--screenshot={shot}")
    console = [ln for ln in out.stderr.splitlines() if re.search(r":CONSOLE[:(]|Uncaught", ln)]
    dom = _chromium(tmp_path, page, "--dump-dom").stdout
    keep = os.environ.get("SEGPIPE_SCREENSHOTS")
    if keep and shot.is_file():
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return shot, console, dom


def _ink(png):
    """Fraction of non-white pixels of a screenshot (a blank page is ~0)."""
    image = pytest.importorskip("PIL.Image")
    a = np.asarray(image.open(png).convert("RGB")).astype(int)
    return float((a.sum(axis=2) < 740).mean())


def _check(tmp_path, page, name):
    shot, console, dom = _render(tmp_path, page, name)
    assert shot.is_file() and shot.stat().st_size > 10_000, page
    assert console == [], console
    assert _ink(shot) > 0.02, page
    return dom


def test_console_check_catches_errors(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body>x<script>notAFunction();</script></body></html>")
    _, console, _ = _render(tmp_path, page, "bad", height=300)
    assert any("notAFunction" in ln for ln in console)


def test_scene_pages_and_run_report_render(run_qa, tmp_path):
    field = smooth_field(160, 200, 3)
    data = np.stack([field, 1 - field, np.full_like(field, 0.45)])  # unsure where the two classes meet
    res, qa = run_qa(data, handle(Scaled(6.0), names=("background", "water", "built")), name="calm.tif")
    _, fail = run_qa(np.zeros((3, 80, 90), np.uint16), handle(Scaled(2.0), names=("background", "water", "built")),
                     name="empty.tif", nodata=0)  # all nodata: QA fail
    root = res.scene_dir.parent
    write_scene_error(root / "broken", "InputError: /in/broken.tif: not a raster")
    entries = [SceneEntry("broken", root / "broken", "failed", "InputError: /in/broken.tif: not a raster"),
               SceneEntry("calm", res.scene_dir), SceneEntry("empty", fail.html_path.parent)]
    run_page, _ = write_run_report(root, entries, update_history=False, tz="Europe/Berlin")
    dom = _check(tmp_path, qa.html_path, "scene-qa")
    assert "where the model is unsure" in dom and 'class="chart"' in dom and "(log scale)" in dom
    dom = _check(tmp_path, run_page, "run-report")
    assert 'data-ready="1"' in dom and 'class="sortable"' in dom  # the sort script ran to its end
    assert "1 scene failed, 1 QA fail" in dom
    assert dom.index(">broken<") < dom.index(">empty<") < dom.index(">calm<")  # what needs a look first
    assert dom.count('class="thumb"') == 2  # a mask picture for each scene with a report


class Soft(torch.nn.Module):
    """A 2.5D volume model, unsure near its threshold: class 1 ("bright") above 60 HU, soft edges."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fg = (x[:, x.shape[1] // 2: x.shape[1] // 2 + 1] - 0.52) * 25.0
        return torch.cat([-fg, fg], dim=1)


def test_volume_and_series_pages_render(tmp_path):
    from data.synthetic import write_volume
    from pipeline.run.nifti import segment_volume

    spec = ModelSpec(1, (1,), ("background", "bright"), tile=96, overlap=16,  # one tile a slice: no seams
                     normalization=Normalization(kind="ct_window", window_low=-200, window_high=300))
    src = tmp_path / "ct.nii.gz"
    write_volume(src, (72, 64, 18), spacing=(0.8, 0.8, 2.5), orientation="LPS", seed=4)
    out = tmp_path / "out"
    s = RunOptions(device="cpu", batch_size=4)
    res = segment_volume(src, Handle(Soft(), spec), out, s)
    series = tmp_path / "dyn.nii.gz"
    write_volume(series, (48, 40, 12), spacing=(1.0, 1.0, 3.0), seed=5, extra_dims=(2,))
    segment_volume(series, Handle(Soft(), spec), out, RunOptions(device="cpu", batch_size=4, series="each"),
                   qa_thresholds=QAThresholds(no_foreground="warn"))
    run_page, _ = write_run_report(out, update_history=False)
    dom = _check(tmp_path, res.scene_dir / "qa.html", "volume-qa")
    for letter in "RLAPSI":
        assert f'<span class="mk ' in dom and f">{letter}</span>" in dom
    assert "axial: confidence" in dom and "sagittal: confidence" in dom
    assert "qform_code / sform_code</td>" in dom and ">1 / 1</td>" in dom
    assert "border disagreement rate</td><td data-v=\"n/a (no pixel pairs across tile borders)\">" in dom
    dom = _check(tmp_path, out / "dyn" / "qa_t1.html", "series-qa-t1")
    assert "dyn t1" in dom
    dom = _check(tmp_path, run_page, "volume-run-report")
    body = dom[dom.index('id="scenes"'):]
    main = [re.findall(r"<td[^>]*>(.*?)</td>", tr)[5] for tr in re.findall(r"<tr>(.*?)</tr>", body)[1:3]]
    assert any(" mL" in m for m in main) and not any("background" in m for m in main), main
