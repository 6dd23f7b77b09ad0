"""Turn a job's inputs (folders, globs, files, manifests) into one plan per scene.

The plan is checked as a whole before any work starts: a missing input, an unknown
manifest column or two inputs that would write into the same ``OUT/<name>/`` folder
fail the batch at once with one message, instead of one scene silently overwriting
another at night.
"""

from __future__ import annotations

import csv
import glob as globmod
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.options import RUN_OPTION_NAMES, RunOptions
from pipeline.readers import INPUT_SUFFIXES
from pipeline.readers.dicom import dicom_message, is_dicom
from pipeline.readers.vsi import InputPath, absolute, is_gdal_path
from pipeline.run.folder import scene_dir_for

from .config import JobConfig

MANIFEST_SUFFIXES = (".txt", ".csv", ".lst")
PATH_COLUMNS = ("path", "input", "file")  # accepted names of a CSV manifest's path column


@dataclass(frozen=True)
class ScenePlan:
    """One input of a batch: where it is, where it goes, and its (possibly overridden) options."""

    input: InputPath  # a local Path, or a GDAL virtual path (/vsis3/...) kept as given
    scene_dir: Path
    options: RunOptions
    overrides: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return self.scene_dir.name


def plan_batch(job: JobConfig) -> list[ScenePlan]:
    """Every scene of the job, in a stable order, with name clashes refused up front."""
    base = job.run_options()
    out = Path(job.out).expanduser()
    entries = collect_inputs(job)
    if not entries:
        raise ConfigError(f"no input found in {job.inputs + ([job.manifest] if job.manifest else [])}"
                          f"{f' matching {job.glob!r}' if job.glob else ''}")
    plans = [
        ScenePlan(path, scene_dir_for(path, out), base.with_overrides(ov, f"{path} (manifest row)"), ov)
        for path, ov in entries
    ]
    check_unique_names(plans)
    return plans


def collect_inputs(job: JobConfig) -> list[tuple[InputPath, dict[str, Any]]]:
    """(path, per-scene overrides) for every input, duplicates (same file) dropped, order kept."""
    raw: list[tuple[InputPath, dict[str, Any]]] = []
    for item in job.inputs:
        raw.extend(_expand(item, job.glob))
    if job.manifest:
        raw.extend(read_manifest(Path(job.manifest).expanduser()))
    seen: dict[InputPath, tuple[InputPath, dict[str, Any]]] = {}
    for path, ov in raw:
        key = path if isinstance(path, str) else _identity(path)  # a GDAL path as written
        if key not in seen or ov:  # a manifest row's overrides win over a plain listing
            seen[key] = (path, ov)
    return list(seen.values())


def _expand(item: str, pattern: str | None) -> list[tuple[InputPath, dict[str, Any]]]:
    if is_gdal_path(item):  # GDAL opens it (or says why not) when the scene runs
        return [(item, {})]
    path = Path(item).expanduser()
    if any(c in item for c in "*?["):
        matches = sorted(Path(p) for p in globmod.glob(str(path), recursive=True))
        return [(p, {}) for p in matches if p.is_file()]
    if path.is_dir():
        if is_dicom(path):
            raise ConfigError(dicom_message(path))
        return [(p, {}) for p in _folder_files(path, pattern)]
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return read_manifest(path)
    if not path.exists():
        raise ConfigError(f"{path}: input not found (expected a raster, volume, folder, glob or manifest)")
    return [(path, {})]


def _folder_files(folder: Path, pattern: str | None) -> list[Path]:
    """The folder's inputs. A broken or looping symbolic link among them is kept: its scene then
    fails with a line that says so, instead of the input silently missing from the night."""
    try:
        if pattern:
            return sorted(p for p in folder.glob(pattern) if p.is_file() or p.is_symlink())
        return sorted(p for p in folder.iterdir() if (p.is_file() or p.is_symlink()) and not p.is_dir()
                      and p.name.lower().endswith(INPUT_SUFFIXES) and not p.name.startswith("."))
    except OSError as exc:
        raise ConfigError(f"{folder}: input folder cannot be read ({exc.strerror or exc}); "
                          "expected a folder this user can list") from exc


def _identity(path: Path) -> Path:
    """The file a path names (two listings of one file are one input); a broken link is itself."""
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a symbolic link loop
        return path.absolute()


def read_manifest(path: Path) -> list[tuple[InputPath, dict[str, Any]]]:
    """A manifest: one path per line (``#`` comments), or a CSV with a path column and option columns.

    Relative paths are relative to the manifest's folder; GDAL virtual paths are kept as written.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read manifest ({exc.strerror or exc})") from exc
    rows = _csv_rows(text, path) if path.suffix.lower() == ".csv" else _line_rows(text)
    out = []
    for name, overrides in rows:
        if is_gdal_path(name):
            out.append((name, overrides))
            continue
        p = absolute(name, path.parent)
        if not p.exists():
            raise ConfigError(f"{path}: listed input {name!r} not found (looked at {p})")
        out.append((p, overrides))
    return out


def _line_rows(text: str) -> list[tuple[str, dict[str, Any]]]:
    lines = (line.strip() for line in text.splitlines())
    return [(line, {}) for line in lines if line and not line.startswith("#")]


def _csv_rows(text: str, path: Path) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    columns = [c.strip() for c in reader.fieldnames or []]
    path_col = next((c for c in columns if c.lower() in PATH_COLUMNS), None)
    if path_col is None:
        raise ConfigError(f"{path}: CSV manifest needs a column named one of {PATH_COLUMNS}; got {columns}")
    unknown = [c for c in columns if c != path_col and c not in RUN_OPTION_NAMES]
    if unknown:
        raise ConfigError(f"{path}: unknown manifest column(s) {unknown}; per-scene options are {RUN_OPTION_NAMES}")
    rows = []
    for row in reader:
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if not row.get(path_col):
            continue
        overrides = {k: _cell(v) for k, v in row.items() if k != path_col and v != ""}
        rows.append((row[path_col], overrides))
    return rows


def _cell(value: str) -> Any:
    """CSV cells are text; pydantic converts "512" and "true" itself, this only maps empty to None."""
    return None if value.lower() in ("none", "null") else value


def check_unique_names(plans: list[ScenePlan]) -> None:
    """Two different inputs may not share an output folder (``a/x.tif`` and ``b/x.tif``)."""
    by_dir: dict[Path, list[Path]] = defaultdict(list)
    for p in plans:
        by_dir[p.scene_dir].append(p.input)
    clashes = {d: paths for d, paths in by_dir.items() if len(paths) > 1}
    if clashes:
        lines = "; ".join(f"{d.name}/ <- {', '.join(map(str, ps))}" for d, ps in sorted(clashes.items()))
        raise ConfigError(
            f"{len(clashes)} output name clash(es): {lines}. Each input writes OUT/<name>/; rename the "
            "inputs or run them as separate jobs with different --out"
        )
