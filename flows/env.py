"""Process-wide Prefect set-up: telemetry off, no prompts, engine logs in Prefect's logs.

Called at the entry points (CLI commands, flows), never at import time.
"""

from __future__ import annotations

import logging
import os

# Loggers whose records Prefect should ship with the flow run's logs (the engine's own).
ENGINE_LOGGERS = ("pipeline", "models", "flows")

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_CLI_PROMPT": "false",
    "PREFECT_LOGGING_EXTRA_LOGGERS": ",".join(ENGINE_LOGGERS),
    # Flow-run processes send a heartbeat every 30 s; the zombie automation (flows.deploy)
    # marks a run Crashed when they stop.
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
    # Engine code also runs outside flow runs (``segpipe run``); its logs then stay local.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # The ephemeral server's default 20 s start-up timeout is too short on a busy machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def set_prefect_env() -> None:
    """Put segpipe's Prefect defaults into this process's environment (before prefect is imported).

    Values already set by the user win. Child processes (server, workers, flow runs) inherit them.
    """
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a process segpipe starts (server, worker)."""
    env = {**DEFAULTS, **os.environ}
    env.update(extra)
    return env


def attach_engine_logs(level: int = logging.INFO) -> None:
    """Send the engine's log records (``pipeline``, ``models``, ``flows``) to the flow run's logs.

    ``PREFECT_LOGGING_EXTRA_LOGGERS`` only works when set before prefect is imported; adding
    Prefect's API handler here works whatever the import order (and never twice).
    """
    from prefect.logging.handlers import APILogHandler

    for name in ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, APILogHandler) for h in logger.handlers):
            logger.addHandler(APILogHandler())
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)
