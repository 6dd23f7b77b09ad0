"""A QA verdict of fail is loud: exit code 4, a 'QA failed' state for the scene task and the
batch, the run report's own words; run names and tags tell jobs apart."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import rasterio
from affine import Affine

from flows.batch_flow import segment_batch
from flows.config import JobConfig
from flows.scenes import QA_FAILED

from .conftest import segpipe_cmd


def _nodata_scene(path):
    """A scene without one valid pixel: complete outputs, QA verdict fail (empty mask)."""
    with rasterio.open(path, "w", driver="GTiff", width=96, height=96, count=1, dtype="uint16", nodata=0,
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 6000000)) as ds:
        ds.write(np.zeros((1, 96, 96), np.uint16))
    return path


def _inputs(tmp_path):
    from data.synthetic import write_scene

    folder = tmp_path / "in"
    folder.mkdir()
    write_scene(folder / "good.tif", 96, 96, bands=1, seed=1)
    _nodata_scene(folder / "empty.tif")
    return folder


def test_batch_with_a_qa_fail_ends_qa_failed_in_the_run_report_s_words(prefect_server, make_checkpoint, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    inputs = _inputs(tmp_path)
    job = JobConfig(inputs=[str(inputs)], model=str(make_checkpoint(0)), out=str(tmp_path / "out"), name="night",
                    timezone="Europe/Berlin")
    state = segment_batch(job, return_state=True)
    assert state.is_completed() and state.name == QA_FAILED  # complete outputs, nothing to retry, but loud
    words = state.message.split(" (")[0]  # "1 QA fail, 1 QA warn": the run report banner's sentence
    assert words.startswith("1 QA fail") and "(2 done, 0 skipped, 0 failed of 2):" in state.message
    assert "empty: QA fail" in state.message
    report = (tmp_path / "out" / "run_report.html").read_text()
    assert words in report  # the same words in the run report's banner
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        tasks = {t.name: t.state.name for t in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))}
    from zoneinfo import ZoneInfo

    assert run.name == f"night-{datetime.now(ZoneInfo('Europe/Berlin')):%Y-%m-%d}"
    assert tasks == {"empty": QA_FAILED, "good": "Completed"}
    quiet = segment_batch(job.model_copy(update={"qa_fail_exit": False, "out": str(tmp_path / "out2")}),
                          return_state=True)
    assert quiet.name == "Completed" and quiet.message.startswith("1 QA fail")


def test_segpipe_batch_and_run_exit_4_on_a_qa_fail(prefect_server, make_checkpoint, tmp_path):
    import subprocess

    from .conftest import child_env

    inputs, model = _inputs(tmp_path), make_checkpoint(0)
    batch = subprocess.run([*segpipe_cmd(), "batch", str(inputs), "--model", str(model), "--out",
                            str(tmp_path / "b"), "--quiet"], env=child_env(prefect_server), capture_output=True,
                           text=True, timeout=600)
    assert batch.returncode == 4, batch.stderr[-2000:]
    assert "QA failed" in batch.stderr
    run = subprocess.run([*segpipe_cmd(), "run", str(inputs / "empty.tif"), "--model", str(model), "--out",
                          str(tmp_path / "r"), "--quiet"], env=child_env(prefect_server), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 4 and "QA fail" in run.stdout, run.stdout + run.stderr[-2000:]
    good = subprocess.run([*segpipe_cmd(), "run", str(inputs / "good.tif"), "--model", str(model), "--out",
                           str(tmp_path / "r"), "--quiet"], env=child_env(prefect_server), capture_output=True,
                          text=True, timeout=600)
    assert good.returncode == 0, good.stderr[-2000:]


def test_ad_hoc_batches_carry_the_job_tag(prefect_server, make_checkpoint, tmp_path):
    from prefect import tags
    from prefect.client.orchestration import get_client

    from flows.batch_flow import job_tags

    from data.synthetic import write_scene

    folder = tmp_path / "in"
    folder.mkdir()
    write_scene(folder / "a.tif", 64, 64, bands=1, seed=3)
    job = JobConfig(inputs=[str(folder)], model=str(make_checkpoint(0)), out=str(tmp_path / "o"), name="Coast line")
    with tags(*job_tags(job)):
        state = segment_batch(job, return_state=True)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert set(run.tags) >= {"segpipe", "job:Coast-line"}
    assert run.name.startswith("Coast-line-")
