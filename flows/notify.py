"""``segpipe notify``: the night's summary sent when a job's batch ends Failed, Crashed or QA failed.

Prefect does the sending: a notification block (a webhook that receives JSON, or any Apprise
URL: mail, Slack, Teams, ntfy...) and an automation of the server that fires on the job's
flow-run events (``prefect.flow-run.Failed``, ``.Crashed``, ``.QA failed``), matched by the
job's tag (``job:<name>``, on deployment runs and ad-hoc batches alike). The message is the
run's state message: for a batch, the run report's sentence, the counts, one line per
failed scene. Nothing runs in segpipe's processes: a dead orchestrator still gets its
Crashed run reported, by the server.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pipeline.errors import ConfigError

from .config import JobConfig

log = logging.getLogger(__name__)

# The events a reviewer must hear about; the state names come from Prefect and flows.scenes.QA_FAILED.
NOTIFY_ON = ("Failed", "Crashed", "QA failed")
SUBJECT = "segpipe {job}: {{{{ flow_run.name }}}} {{{{ flow_run.state.name }}}}"
BODY = ("{{{{ flow_run.name }}}} ended {{{{ flow_run.state.name }}}}:\n{{{{ flow_run.state.message }}}}\n\n"
        "Run: {{{{ flow_run|ui_url }}}}\nRun report: {out}/run_report.html")


def automation_name(job: JobConfig) -> str:
    return f"segpipe: notify {job_slug(job)}"


def job_slug(job: JobConfig) -> str:
    from .batch_flow import job_slug as slug

    return slug(job)


def notify_on(job: JobConfig, *, webhook: str | None = None, apprise: str | None = None) -> str:
    """Create or update the job's notification block and automation; returns the automation's name."""
    if (webhook is None) == (apprise is None):
        raise ConfigError("segpipe notify needs exactly one of --webhook URL or --apprise URL")
    block_id = _save_block(job, webhook, apprise)
    spec = automation_spec(job, block_id)
    _upsert(spec)
    return spec["name"]


def automation_spec(job: JobConfig, block_id: Any) -> dict[str, Any]:
    """The automation: a reactive trigger on the job's flow runs ending badly, a notification action."""
    from .batch_flow import job_tags

    tag = job_tags(job)[1]
    return {
        "name": automation_name(job),
        "description": f"Send the night's summary of segpipe job {job.job_name} when a run ends "
                       + ", ".join(NOTIFY_ON),
        "trigger": {
            "type": "event", "posture": "Reactive",
            "expect": [f"prefect.flow-run.{state}" for state in NOTIFY_ON],
            "match": {"prefect.resource.id": "prefect.flow-run.*"},
            "match_related": {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"},
            "threshold": 1, "within": 0,
        },
        "actions": [{"type": "send-notification", "block_document_id": str(block_id),
                     "subject": SUBJECT.format(job=job.job_name), "body": BODY.format(out=job.out)}],
    }


def _save_block(job: JobConfig, webhook: str | None, apprise: str | None) -> Any:
    """A notification block named after the job, saved on the server (overwritten when it exists)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    name = re.sub(r"[^a-z0-9-]+", "-", f"segpipe-{job_slug(job)}".lower()).strip("-")
    if webhook is not None:
        block = CustomWebhookNotificationBlock(
            name=name, url=webhook,
            json_data={"text": "{{subject}}\n{{body}}", "subject": "{{subject}}", "body": "{{body}}"})
    else:  # Prefect's Apprise-backed block takes any Apprise URL (mailto://, slack://, msteams://, ntfy://...)
        block = SlackWebhook(url=apprise)
    return block.save(name, overwrite=True)


def _upsert(spec: dict[str, Any]) -> None:
    from prefect.automations import Automation

    wanted = Automation.model_validate(spec)
    try:
        have = Automation.read(name=spec["name"])
    except ValueError:  # Prefect raises ValueError("Automation ... not found")
        wanted.create()
        log.info("created automation %r", spec["name"])
        return
    wanted.id = have.id
    wanted.update()
    log.info("updated automation %r", spec["name"])
