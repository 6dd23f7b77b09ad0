"""Job configuration: what a batch segments, with which model, where to, and how.

A job is a YAML or JSON file (or the same fields on the ``segpipe batch`` command line,
which override the file). Every option of ``segpipe run`` is a field here, bounded, so a
bad job fails when it is loaded, naming the field, not at 02:00 on scene 300::

    # job.yaml
    inputs: [/data/scenes/]        # folders, globs, files, manifests (.txt/.csv/.lst)
    glob: "*.tif"                  # which files of a folder (default: rasters and volumes)
    model: /models/landcover.safetensors
    out: /results/landcover
    tile: 512
    tta: true

A CSV manifest may carry per-scene overrides: a ``path`` column plus any column named
after a field of :class:`pipeline.options.RunOptions` (empty cell = the job's value).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from pipeline.errors import ConfigError
from pipeline.options import RUN_OPTION_NAMES, RunOptions, validate
from pipeline.qa.schema import QAThresholds
from pipeline.readers.vsi import absolute

__all__ = ["RUN_OPTION_NAMES", "JobConfig", "RunOptions", "load_job", "read_job_file", "validate"]


class JobConfig(RunOptions):
    """A whole batch: inputs, model, output root, run options and how to spread the work."""

    name: str | None = Field(None, max_length=100, description="job name for reports and drift (default: out's name)")
    inputs: list[str] = Field(default_factory=list, description="folders, globs, files or manifests")
    manifest: str | None = Field(None, description="file with one path per line, or CSV with a path column")
    glob: str | None = Field(None, description="pattern for files in folder inputs (default: rasters and volumes)")
    model: str = Field(description="checkpoint (.safetensors) made by segpipe")
    out: str = Field(description="output root; each input gets OUT/<name>/")
    cluster: str | None = Field(None, pattern=r"^(local|(tcp|tls|ucx)://\S+)$",
                                description="Dask scheduler of warm workers (tcp://head:8786), or 'local'")
    max_wait_h: float = Field(20.0, gt=0, le=168, description="cluster: stop waiting for scenes after this")
    qa_fail_exit: bool = Field(True, description="every output complete but a QA verdict fail: the batch ends in "
                               "state 'QA failed' and segpipe batch exits 4 (false: Completed, exit 0)")
    timezone: str | None = Field(None, description="IANA zone of the run report's times and the run names "
                                 "(default: the schedule's, else this machine's)")

    @field_validator("inputs")
    @classmethod
    def _non_empty_strings(cls, v: list[str]) -> list[str]:
        if any(not s.strip() for s in v):
            raise ValueError("empty input path")
        return v

    qa: QAThresholds = Field(default_factory=QAThresholds, description="run report: drift and verdict limits")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r}; use an IANA name like Europe/Berlin") from None
        return v

    @property
    def job_name(self) -> str:
        return self.name or Path(self.out).name or "segpipe"

    def run_options(self) -> RunOptions:
        return RunOptions(**{k: getattr(self, k) for k in RUN_OPTION_NAMES})


def read_job_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML (.yaml/.yml) or JSON job file; relative paths stay as written."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read job config ({exc.strerror or exc})") from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as exc:  # json.JSONDecodeError and yaml.YAMLError (not a ValueError: below)
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError; yaml is imported lazily
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a job config is a mapping of field: value, got {type(data).__name__}")
    return _resolve_paths(data, path.parent)


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths in a job file are relative to the file, so a job folder can be moved as a whole."""
    base = base.absolute()
    out = dict(data)
    if isinstance(out.get("inputs"), str):
        out["inputs"] = [out["inputs"]]
    for key in ("model", "out", "manifest"):
        if isinstance(out.get(key), str) and not Path(out[key]).expanduser().is_absolute():
            out[key] = str(base / out[key])
    if isinstance(out.get("inputs"), list):  # GDAL virtual paths (/vsis3/...) are kept as written
        out["inputs"] = [str(absolute(s, base)) if isinstance(s, str) else s for s in out["inputs"]]
    return out


def load_job(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> JobConfig:
    """A job from a file (if any) with ``overrides`` (e.g. command-line values) on top.

    Paths become absolute here, at the entry point: the job may run later, on a worker
    whose working directory is not this one.
    """
    data = read_job_file(path) if path is not None else {}
    data.update(_resolve_paths({k: v for k, v in (overrides or {}).items() if v is not None}, Path.cwd()))
    return validate(JobConfig, data, str(path) if path is not None else "command line")
