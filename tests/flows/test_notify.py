"""Notifications: a job's runs ending Failed, Crashed or QA failed are sent, by the server, once each."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from flows.config import JobConfig

pytestmark = pytest.mark.cluster  # a real Prefect server (its automations run there)


class _Receiver(BaseHTTPRequestHandler):
    got: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).got.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_failed_crashed_and_qa_failed_runs_of_the_job_are_notified(tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Completed, Crashed, Failed, Running

    from flows.batch_flow import job_tags
    from flows.deploy import LocalServer
    from flows.notify import automation_name, notify_on

    receiver = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    job = JobConfig(inputs=["/x"], model="/m.safetensors", out=str(tmp_path / "out"), name="coast")
    other = JobConfig(inputs=["/x"], model="/m.safetensors", out=str(tmp_path / "o2"), name="ct")
    try:
        with LocalServer(home=tmp_path / "home", log_path=tmp_path / "server.log") as server, \
                temporary_settings({PREFECT_API_URL: server.api_url}):
            assert notify_on(job, webhook=url) == automation_name(job) == "segpipe: notify coast"
            assert notify_on(job, webhook=url) == "segpipe: notify coast"  # again: updated, not duplicated
            endings = {"Failed": Failed(message="1 of 2 scene(s) failed: 1 scene failed (1 done, 0 skipped, "
                                              "1 failed of 2):\n  b: truncated file"),
                       "QA failed": Completed(name="QA failed", message="1 QA fail (2 done, 0 skipped, 0 failed "
                                              "of 2):\n  b: QA fail"),
                       "Crashed": Crashed(message="No heartbeat for 90 s"),
                       "Completed": Completed(message="All 2 scenes passed QA (2 done)")}
            time.sleep(5)  # the automation reaches the triggers service
            with get_client(sync_client=True) as client:
                flow_id = client.create_flow(_flow())
                for name, state in endings.items():
                    for j in (job, other):
                        fr = client.create_flow_run(_flow(), name=f"{j.name}-{name}", tags=job_tags(j))
                        client.set_flow_run_state(fr.id, Running(), force=True)
                        client.set_flow_run_state(fr.id, state, force=True)
            deadline = time.monotonic() + 120
            while len(_Receiver.got) < 3 and time.monotonic() < deadline:
                time.sleep(1)
            time.sleep(5)  # nothing more arrives
    finally:
        receiver.shutdown()
    got = sorted(_Receiver.got, key=lambda m: m["subject"])
    assert [m["subject"] for m in got] == ["segpipe coast: coast-Crashed Crashed", "segpipe coast: coast-Failed Failed",
                                           "segpipe coast: coast-QA failed QA failed"], got
    by = {m["subject"].split()[-1]: m["body"] for m in got}
    assert "b: truncated file" in by["Failed"] and "b: QA fail" in by["failed"] and "No heartbeat" in by["Crashed"]
    assert all(f"{tmp_path / 'out'}/run_report.html" in m["body"] for m in got)
    assert flow_id is not None


def _flow():
    from prefect import flow

    @flow(name="segment-batch")
    def segment_batch():  # a stand-in: only its runs' states matter here
        pass

    return segment_batch
