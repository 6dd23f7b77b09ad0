"""A COG served over HTTP on 127.0.0.1, read through /vsicurl/: requests counted.

The server is a process of this test's own (``range_server.py``), stopped by its handle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from pipeline.options import RunOptions
from pipeline.readers.identity import identity_changed
from pipeline.run import segment_file

from .conftest import identity_handle

SIDE, BLOCK = 1024, 128


@pytest.fixture
def served(tmp_path):
    """(base URL, root folder, requests()) of a range-capable HTTP server run for this test."""
    root, log = tmp_path / "www", tmp_path / "requests.jsonl"
    root.mkdir()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("range_server.py")), str(root), str(log)],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())

        def requests() -> list[dict]:
            return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

        yield f"http://127.0.0.1:{port}", root, requests
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _write_cog(path: Path, offset: int = 0) -> None:
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    data = np.stack([(x + y + offset) % 997, (3 * x) % 991, (2 * y) % 983]).astype(np.float32) / 1000.0
    with rasterio.open(path, "w", driver="COG", width=SIDE, height=SIDE, count=3, dtype="float32",
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 6000000), blocksize=BLOCK,
                       compress="deflate") as ds:
        ds.write(data)


def test_a_cloud_cog_is_read_in_few_requests_and_a_rerun_checks_only_headers(served, tmp_path, monkeypatch):
    for key in ("GDAL_DISABLE_READDIR_ON_OPEN", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS"):
        monkeypatch.delenv(key, raising=False)
    base, root, requests = served
    _write_cog(root / "scene.tif")
    url = f"/vsicurl/{base}/scene.tif?token=s3cr3t"  # a presigned-URL-like query: kept out of the record
    res = segment_file(url, identity_handle(tile=256, overlap=32), tmp_path / "out",
                       RunOptions(device="cpu", workers=2, tile=256, overlap=32))
    with rasterio.open(res.outputs["mask"]) as ds:
        assert (ds.width, ds.height) == (SIDE, SIDE) and ds.read(1).max() < 3
    seen = requests()
    paths = {r["path"].split("?")[0] for r in seen}
    assert paths == {"/scene.tif"}  # no directory listing, no sidecar probes (.aux.xml, .msk, .ovr...)
    blocks = (SIDE // BLOCK) ** 2
    gets = [r for r in seen if r["method"] == "GET"]
    assert all(r["range"] for r in gets)  # only byte ranges, never the whole file
    print(f"{len(seen)} requests ({len(gets)} GET) for {blocks} blocks")
    assert len(seen) <= blocks // 2, f"{len(seen)} requests for {blocks} blocks"
    inp = res.record["input"]
    assert inp["identity"]["method"] == "http-etag" and "s3cr3t" not in json.dumps(res.record)
    assert inp["path"] == f"/vsicurl/{base}/scene.tif?token=..."

    before = len(seen)
    assert identity_changed(inp, url) is None  # the skip decision of a re-run
    rerun = requests()[before:]
    assert rerun and all(r["method"] == "HEAD" for r in rerun) and len(rerun) <= 2

    os.utime(root / "scene.tif", ns=(1, 1))  # same bytes, but the object was written again: a new ETag
    _write_cog(root / "scene.tif", offset=5)
    assert identity_changed(inp, url) == "input changed (content)"


def test_a_missing_remote_scene_is_a_clear_permanent_error(served, tmp_path):
    from pipeline.errors import InputError

    base, _, _ = served
    with pytest.raises(InputError, match=r"/vsicurl/http://127\.0\.0\.1:\d+/nope\.tif: not a readable raster"):
        segment_file(f"/vsicurl/{base}/nope.tif", identity_handle(), tmp_path / "out", RunOptions(device="cpu"))


def test_a_presigned_urls_signature_stays_out_of_errors(served, tmp_path):
    from pipeline.errors import InputError

    base, _, _ = served
    with pytest.raises(InputError) as err:
        segment_file(f"/vsicurl/{base}/nope.tif?X-Amz-Signature=s3cr3t", identity_handle(), tmp_path / "out",
                     RunOptions(device="cpu"))
    assert "s3cr3t" not in str(err.value) and "X-Amz-Signature=..." in str(err.value)
