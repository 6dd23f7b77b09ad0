"""Processes a farm test starts (Prefect server, Dask scheduler, orchestrator, workers), all bound
to 127.0.0.1, each stopped by its own PID, and a check that none of them or their children is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from .conftest import child_env, segpipe_cmd


class Procs:
    """Every process started through :meth:`start`, and every child of theirs seen since."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: dict[str, subprocess.Popen[bytes]] = {}
        self.seen: set[int] = set()

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        self.started[name] = proc
        self.seen.add(proc.pid)
        return proc

    def adopt(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """A process started elsewhere (the Prefect server) that this set stops too."""
        self.started[name] = proc
        self.seen.add(proc.pid)

    def note_children(self) -> None:
        for proc in self.started.values():
            try:
                self.seen.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                pass

    def stop(self, name: str, timeout: float = 40) -> None:
        proc = self.started.get(name)
        if proc is None or proc.poll() is not None:
            return
        self.note_children()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> list[str]:
        """Stop everything (workers first, server last); returns ``pid command`` of each process
        still alive afterwards (each is then killed, so nothing outlives the test)."""
        for name in sorted(self.started, key=lambda n: ("server" in n, "scheduler" in n, n)):
            self.stop(name)
        deadline = time.monotonic() + 20
        alive = self._alive()
        while alive and time.monotonic() < deadline:
            time.sleep(0.5)
            alive = self._alive()
        report = []
        for pid in alive:
            try:
                report.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:200]}")
                os.kill(pid, signal.SIGKILL)
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
        return report

    def _alive(self) -> list[int]:
        out = []
        for pid in sorted(self.seen):
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        return out

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def batch_message(out: Path, counts: str) -> str:
    """The batch state's message a run over ``out`` must end with: the run report's own banner
    sentence (its verdicts, read back from ``run_summary.json``), then the counts."""
    from pipeline.qa.html_run import verdict_line
    from pipeline.qa.run_report import load_run_summary

    verdicts, _ = verdict_line(load_run_summary(out / "run_summary.json"))
    return f"{verdicts} ({counts})"


def farm_env(api_url: str, home: Path, **extra: str) -> dict[str, str]:
    """A child's environment: our server, our PREFECT_HOME, and none of segpipe's Prefect settings
    (the heartbeat must come from the deployment, as it would on a machine set up by hand)."""
    env = child_env(api_url, PREFECT_HOME=str(home), **extra)
    env.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", None)
    return env


def segpipe(*args: str) -> list[str]:
    return [*segpipe_cmd(), *args]


def prefect(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def wait_for(predicate, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
