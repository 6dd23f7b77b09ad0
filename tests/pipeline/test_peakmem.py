"""Per-scene peak memory: the high-water mark since the scene started, not the process's."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import pipeline.peakmem as pm
from pipeline.peakmem import scene_facts, start_watch

MB = 2**20


def _touch(n_mb: int) -> np.ndarray:
    a = np.empty(n_mb * MB, dtype=np.uint8)
    a[::4096] = 1  # fault every page in: resident
    return a


def test_a_watch_ignores_what_the_process_peaked_at_before():
    big = _touch(400)
    del big  # large numpy buffers are unmapped on free: RSS falls, VmHWM stays
    before = pm._hwm_mb()
    w = start_watch("cpu")
    if w.scope != "scene":
        pytest.skip("this kernel does not let the process reset its VmHWM (clear_refs)")
    buf = _touch(60)
    facts = w.facts()
    del buf
    assert facts["peak_rss_scope"] == "scene"
    assert facts["peak_rss_mb"] >= facts["rss_start_mb"] + 55
    assert facts["peak_rss_mb"] < before - 250  # the 400 MB peak before the watch is not this scene's


def test_a_second_scene_starting_does_not_lose_the_first_ones_peak():
    first = start_watch("cpu")
    buf = _touch(200)
    del buf
    during = pm._hwm_mb()
    second = start_watch("cpu")  # resets the kernel's mark: the first watch keeps what it held
    assert first.peak_rss_mb() >= during - 1
    assert second.peak_rss_mb() < during - 150


def test_sampled_where_the_mark_cannot_be_reset(monkeypatch):
    monkeypatch.setattr(pm, "_reset_hwm", lambda: False)
    monkeypatch.setattr(pm, "_can_reset", None)
    w = start_watch("cpu")
    assert w.scope == "sampled"
    buf = _touch(120)
    time.sleep(10 * pm.SAMPLE_S)
    del buf
    time.sleep(3 * pm.SAMPLE_S)
    facts = w.facts()
    assert facts["peak_rss_scope"] == "sampled"
    assert facts["peak_rss_mb"] >= facts["rss_start_mb"] + 100


def test_facts_of_a_thread_that_started_no_watch_say_process():
    out = {}
    t = threading.Thread(target=lambda: out.update(scene_facts()))
    t.start()
    t.join()
    assert out["peak_rss_scope"] == "process" and out["peak_rss_mb"] == pytest.approx(pm._hwm_mb(), rel=0.2)


def test_segment_scene_records_the_scene_peak(tmp_path):
    import rasterio
    from affine import Affine

    from pipeline.run.geotiff import segment_scene
    from pipeline.options import RunOptions

    from .conftest import identity_handle

    path = tmp_path / "s.tif"
    data = np.random.default_rng(0).random((3, 96, 96)).astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=96, height=96, count=3, dtype="float32",
                       crs="EPSG:32633", transform=Affine(10, 0, 5e5, 0, -10, 6e6)) as ds:
        ds.write(data)
    big = _touch(400)
    del big
    before = pm._hwm_mb()
    res = segment_scene(path, identity_handle(), tmp_path / "out", RunOptions(device="cpu", workers=1))
    facts = res.record["facts"]
    if facts["peak_rss_scope"] != "scene":
        pytest.skip("this kernel does not let the process reset its VmHWM (clear_refs)")
    assert facts["peak_rss_mb"] < before - 250 and facts["rss_start_mb"] <= facts["peak_rss_mb"]
    qa = (res.scene_dir / "qa.html").read_text()
    assert "(this scene;" in qa
