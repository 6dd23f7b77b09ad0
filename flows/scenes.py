"""One scene of a batch, without Prefect: skip-if-current, load the model once, segment.

Everything here is plain Python so it is tested without an orchestrator; the Prefect
task in :mod:`flows.tasks` is a few lines around :func:`process_scene`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.qa import QAThresholds
from pipeline.files import RECORD_NAME, file_sha256
from pipeline.options import RunOptions
from pipeline.readers.identity import identity_changed
from pipeline.readers.vsi import as_input
from pipeline.run.record import read_record

log = logging.getLogger(__name__)

Status = Literal["done", "skipped", "failed"]
# The state name of a scene task and of a batch whose outputs are complete but whose QA says
# fail: a Completed state by type (nothing is retried), named so that the UI, the CLI (exit
# code 4) and automations (the event ``prefect.flow-run.QA failed``) can tell it apart.
QA_FAILED = "QA failed"


@dataclass
class SceneOutcome:
    """What happened to one scene; small and JSON-friendly (it is a task's result).

    Decided where the scene ran, from the engine's own result (``worker``: ``host:pid`` of
    that process, empty in the batch's own process); fields may be added, never renamed.
    """

    name: str
    input: str
    scene_dir: str
    status: Status
    duration_s: float = 0.0
    error: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    worker: str = ""
    qa_verdict: str | None = None  # the scene's QA verdict (pass / warn / fail), from its record

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the model, once per process -----------------------------------------------------------
_MODELS: dict[tuple[str, str], Any] = {}
_SHA_BY_STAT: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()
_LOADS = [0]  # checkpoints loaded by this process (a warm worker: one per model)


def get_model(path: str | Path) -> Any:
    """The checkpoint at ``path``, loaded once per process and file content.

    Keyed by path and the file's sha256, so a checkpoint replaced in place between two
    batches served by the same long-lived process is loaded again. The hash is cached by
    (path, mtime, size) so it is not recomputed for every scene.
    """
    from models.checkpoint import load_checkpoint

    path = Path(path).expanduser().resolve()
    with _LOCK:
        sha = model_sha256(path)
        key = (str(path), sha)
        if key not in _MODELS:
            log.info("loading model %s (sha256 %s)", path, sha[:12])
            for old in [k for k in _MODELS if k[0] == str(path)]:
                del _MODELS[old]
            _MODELS[key] = load_checkpoint(path)
            _LOADS[0] += 1
        return _MODELS[key]


def model_loads() -> int:
    """How many checkpoints this process has loaded so far."""
    return _LOADS[0]


def model_sha256(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return ""  # load_checkpoint raises the proper "checkpoint file not found"
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _SHA_BY_STAT:
        _SHA_BY_STAT[key] = file_sha256(path)
    return _SHA_BY_STAT[key]


def clear_model_cache() -> None:
    with _LOCK:
        _MODELS.clear()
        _SHA_BY_STAT.clear()


# -- is the finished scene still current? ---------------------------------------------------
def stale_reason(input_path: Path, scene_dir: Path, model: Any, settings: RunOptions) -> str | None:
    """Why the scene must be (re)done, or None when its record matches input, model and settings.

    Cheap checks first (record present, model hash, settings, outputs present); the input's
    identity last (``pipeline.readers.identity``: a local file's size then its hash, a remote
    one's ETag from one HEAD request).
    """
    record = read_record(scene_dir)
    if record is None:
        return "no complete record"
    if record.get("model", {}).get("sha256") != model.sha256:
        return "model changed"
    if not settings.resolved(model.spec).same_outputs(record.get("fingerprint")):
        return "settings changed"
    if any(not (scene_dir / name).is_file() for name in record.get("outputs", {}).values()):
        return "an output is missing"
    return identity_changed(record.get("input", {}), input_path)


# -- one scene -----------------------------------------------------------------------------
def process_scene(input_path: str | Path, model_path: str | Path, out_root: str | Path,
                  settings: RunOptions, *, progress: Any = None,
                  qa_thresholds: QAThresholds | None = None, read_ahead: Any = None) -> SceneOutcome:
    """Skip the scene if its record is current, else segment it. Errors propagate (for retries).

    ``read_ahead``: the batch's ``pipeline.readers.nifti.ReadAhead`` (its next volume, decoding).
    """
    from pipeline.run import SceneBusy, SceneChanged, record_token, scene_dir_for, segment_file

    input_path, out_root = as_input(input_path), Path(out_root)
    scene_dir = scene_dir_for(input_path, out_root)
    name = scene_dir.name
    t0 = time.perf_counter()
    model = get_model(model_path)
    while True:  # again only when another run completed the scene after our look at it
        seen = record_token(scene_dir)  # before the look: any completion after it changes the token
        reason = stale_reason(input_path, scene_dir, model, settings)
        if reason is None:
            record = read_record(scene_dir) or {}
            log.info("%s: up to date, skipped", name)
            return SceneOutcome(name, str(input_path), str(scene_dir), "skipped", time.perf_counter() - t0,
                                outputs=output_paths(scene_dir, record), qa_verdict=qa_verdict(record))
        log.info("%s: segmenting (%s)", name, reason)
        try:
            result = segment_file(input_path, model, out_root, settings, progress=progress,
                                  qa_thresholds=qa_thresholds, read_ahead=read_ahead, expect_record=seen)
        except SceneChanged:
            log.info("%s: completed by another run meanwhile; looking again", name)
            continue
        except SceneBusy as exc:  # another live run is writing it: leave it to that run, say so
            log.warning("%s: skipped: %s", name, exc)
            return SceneOutcome(name, str(input_path), str(scene_dir), "skipped", time.perf_counter() - t0,
                                error=f"skipped: {exc}")
        return SceneOutcome(name, str(input_path), str(result.scene_dir), "done", time.perf_counter() - t0,
                            outputs=output_paths(result.scene_dir, result.record),
                            qa_verdict=qa_verdict(result.record))


def read_ahead_next(read_ahead: Any, input_path: str | Path, options: RunOptions) -> bool:
    """Start decoding the batch's next input on its ``read_ahead`` slot while this one runs, where
    it pays: a NIfTI volume on a GPU, whose model outruns inflating a ``.nii.gz`` on one core.
    On the CPU the model is the bottleneck and the decoder would only take cores from it.
    True when a read-ahead started; never raises (bad settings or files are the run's to report)."""
    from pipeline.engine import resolve_device
    from pipeline.readers import is_volume

    if not is_volume(input_path):
        return False
    try:
        if options.series_policy == "each" or resolve_device(options.device).type != "cuda":
            return False
        return read_ahead.start(input_path, slice_axis=options.slice_axis)
    except Exception:  # noqa: BLE001 - see docstring
        log.debug("no read-ahead for %s", input_path, exc_info=True)
        return False


def qa_verdict(record: dict[str, Any]) -> str | None:
    return (record.get("qa") or {}).get("verdict")


def output_paths(scene_dir: Path, record: dict[str, Any]) -> dict[str, str]:
    outs = {k: str(scene_dir / v) for k, v in record.get("outputs", {}).items()}
    outs["record"] = str(scene_dir / RECORD_NAME)
    return outs


@contextlib.contextmanager
def retry_batch_on_oom(settings: RunOptions) -> Iterator[None]:
    """A device out-of-memory error leaving this block carries ``retry_batch_size``: half the
    batch size it ran with, decided where it ran (a worker's device, not the batch's), and
    kept when the exception is pickled back to the batch flow."""
    from pipeline.errors import is_out_of_memory

    try:
        yield
    except BaseException as exc:
        if is_out_of_memory(exc):
            with contextlib.suppress(AttributeError, TypeError):
                exc.retry_batch_size = halved(settings).batch_size  # type: ignore[attr-defined]
        raise


def halved(settings: RunOptions) -> RunOptions:
    """The settings to retry with after a device out-of-memory error."""
    from pipeline.engine import resolve_device

    current = settings.batch_for(resolve_device(settings.device).type)
    return settings.model_copy(update={"batch_size": max(1, current // 2)})


def one_line(exc: BaseException) -> str:
    """An exception as one line for run summaries."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 400 else text[:397] + "..."
