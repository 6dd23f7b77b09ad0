"""Process-wide Prefect set-up: telemetry off, no prompts, engine logs in Prefect's logs.

Called at the entry points (CLI commands, flows), never at import time.
"""

from __future__ import annotations

import logging
import os

# Loggers whose records Prefect should ship with the flow run's logs (the engine's own).
ENGINE_LOGGERS = ("pipeline", "models", "flows")

# Flow-run processes send a heartbeat every HEARTBEAT_S seconds (Prefect's minimum is 30);
# the zombie automation (flows.deploy) marks a run Crashed after ZOMBIE_HEARTBEATS of them
# are missed in a row: the 1:3 ratio of Prefect's own defaults (180 s / 540 s), shorter so a
# dead orchestrator frees its job's slot within minutes. Both come from here, so they agree.
HEARTBEAT_S = 30
ZOMBIE_HEARTBEATS = 3
ZOMBIE_AFTER_S = ZOMBIE_HEARTBEATS * HEARTBEAT_S

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_CLI_PROMPT": "false",
    "PREFECT_LOGGING_EXTRA_LOGGERS": ",".join(ENGINE_LOGGERS),
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
    # Engine code also runs outside flow runs (``segpipe run``); its logs then stay local.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # The ephemeral server's default 20 s start-up timeout is too short on a busy machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def set_prefect_env() -> None:
    """Put segpipe's Prefect defaults into this process's environment (before prefect is imported).

    Values already set by the user win, except the heartbeat rate (see ``HEARTBEAT_S``). Child
    processes (server, workers, flow runs) inherit them.
    """
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    # Except the heartbeat: the zombie automation's window is built on segpipe's value.
    os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_S)


def flow_run_env() -> dict[str, str]:
    """What a deployed batch run's process must have, whoever starts it (a work-pool deployment's
    ``env`` job variable): segpipe's heartbeat rate above all, else Prefect's 180 s default
    would outlast the zombie window."""
    keys = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_LOGGING_EXTRA_LOGGERS", "PREFECT_SERVER_ANALYTICS_ENABLED",
            "DO_NOT_TRACK", "PREFECT_CLI_PROMPT", "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW")
    return {k: DEFAULTS[k] for k in keys}


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
